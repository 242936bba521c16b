package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/machinetop/machinetop/app"
	"github.com/machinetop/machinetop/images"
	"github.com/machinetop/machinetop/vm"
)

// openApp opens the data directory with this host's backend.
func openApp() (*app.App, error) {
	be, err := hostBackend()
	if err != nil {
		return nil, err
	}
	return app.Open(be)
}

// newManager returns the machine Manager of the data directory.
func newManager() (*vm.Manager, error) {
	a, err := openApp()
	if err != nil {
		return nil, err
	}
	return a.Machines, nil
}

// managerFor builds the Manager and loads the machine named by cmd's name
// argument, "" meaning the default machine. Without a name and a default
// it says how to give one (see vm.Manager.Resolve for the other errors).
func managerFor(cmd *cobra.Command, name string) (*vm.Manager, *vm.Config, error) {
	m, err := newManager()
	if err != nil {
		return nil, nil, err
	}
	if name == "" {
		d, err := m.Default()
		if err != nil {
			return nil, nil, err
		}
		if d == "" {
			return nil, nil, fmt.Errorf("no machine named and there is no default machine: give a NAME (see `%s --help`), or create one with `machinetop machine create IMAGE`", cmd.CommandPath())
		}
		name = d
	}
	cfg, err := m.Resolve(name)
	if err != nil {
		return nil, nil, err
	}
	return m, cfg, nil
}

// openStore returns the image store of the data directory.
func openStore() (*images.Store, error) {
	a, err := openApp()
	if err != nil {
		return nil, err
	}
	return a.Images, nil
}
