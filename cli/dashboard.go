package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

// runDashboard opens the dashboard. Until it exists (issue: the machinetop
// dashboard) it prints the machine list and where to go next.
func runDashboard(cmd *cobra.Command) error {
	m, err := newManager()
	if err != nil {
		return err
	}
	ms, err := m.List(cmd.Context())
	if err != nil {
		return err
	}
	writeMachineTable(cmd.OutOrStdout(), ms)
	fmt.Fprintln(cmd.ErrOrStderr(), "\nThe live dashboard is not built yet; use `machinetop machine --help`.")
	return nil
}
