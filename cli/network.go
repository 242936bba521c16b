package cli

import (
	"errors"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/machinetop/machinetop/vm"
	"github.com/machinetop/machinetop/vm/layout"
	"github.com/machinetop/machinetop/vm/netd"
)

// newNetworkCmd is `machinetop __network`: the data directory's machine
// network (vm/netd), started by the first supervisor that needs it. It
// exits at once when the network already runs.
func newNetworkCmd() *cobra.Command {
	return &cobra.Command{
		Use:    vm.NetworkCommand,
		Hidden: true,
		Args:   wantArgs(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
			d, err := layout.DataDir()
			if err != nil {
				return err
			}
			nd, err := d.Net()
			if err != nil {
				return err
			}
			os.Stdin.Close()
			err = netd.Serve(cmd.Context(), netd.Options{Socket: nd.Socket(), Lock: nd.Lock(), Log: cmd.ErrOrStderr()})
			if errors.Is(err, netd.ErrRunning) {
				return nil
			}
			return err
		},
	}
}
