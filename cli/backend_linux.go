package cli

import (
	"github.com/machinetop/machinetop/vm/driver"
	"github.com/machinetop/machinetop/vm/layout"
	"github.com/machinetop/machinetop/vm/qemu"
)

func hostBackend() (driver.Backend, error) {
	rt, err := layout.RuntimeDir()
	if err != nil {
		return nil, err
	}
	return &qemu.Backend{ProbeCacheDir: rt}, nil
}
