//go:build !linux && !darwin

package cli

import (
	"fmt"
	"runtime"

	"github.com/machinetop/machinetop/vm"
)

func hostBackend() (vm.Backend, error) {
	return nil, fmt.Errorf("no machine backend for %s yet", runtime.GOOS)
}
