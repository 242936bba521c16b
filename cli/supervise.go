package cli

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/machinetop/machinetop/vm"
	"github.com/machinetop/machinetop/vm/supervisor"
)

func newSuperviseCmd() *cobra.Command {
	return &cobra.Command{
		Use:    vm.SuperviseCommand + " NAME",
		Hidden: true,
		Args:   wantArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// The supervisor outlives terminals: hangups and Ctrl-C of
			// whoever started it must not stop the machine.
			signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
			m, err := newManager()
			if err != nil {
				return err
			}
			cfg, err := m.Load(args[0])
			if err != nil {
				return err
			}
			os.Stdin.Close()
			// The dashboard and builds start supervisors too; a binary
			// from `go install` builds its guest agent here (the log is
			// the supervisor's).
			if err := ensureGuest(cmd.Context(), m.Data, cmd.ErrOrStderr()); err != nil {
				return err
			}
			return supervisor.Run(cmd.Context(), cfg, supervisor.Options{Manager: m})
		},
	}
}
