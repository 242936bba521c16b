//go:build darwin

package cli

import (
	"github.com/machinetop/machinetop/vm/driver"
	"github.com/machinetop/machinetop/vm/vz"
)

// hostBackend returns the macOS backend (Apple's Virtualization framework).
func hostBackend() (driver.Backend, error) {
	return &vz.Backend{}, nil
}
