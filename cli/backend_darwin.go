//go:build darwin

package cli

import (
	"github.com/machinetop/machinetop/vm"
	"github.com/machinetop/machinetop/vm/vz"
)

// hostBackend returns the macOS backend (Apple's Virtualization framework).
func hostBackend() (vm.Backend, error) {
	return &vz.Backend{}, nil
}
