//go:build !linux && !darwin

package cli

import (
	"fmt"
	"runtime"

	"github.com/machinetop/machinetop/vm/driver"
)

func hostBackend() (driver.Backend, error) {
	return nil, fmt.Errorf("no machine backend for %s yet", runtime.GOOS)
}
