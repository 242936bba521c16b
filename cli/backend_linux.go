package cli

import (
	"github.com/machinetop/machinetop/vm"
	"github.com/machinetop/machinetop/vm/qemu"
)

func hostBackend() (vm.Backend, error) {
	rt, err := vm.RuntimeDir()
	if err != nil {
		return nil, err
	}
	return &qemu.Backend{ProbeCacheDir: rt}, nil
}
