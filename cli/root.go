// Package cli holds machinetop's command-line interface (cobra commands).
// Commands are thin: they parse flags, call vm.Manager or images.Store, and
// print results.
package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// ExitError carries a process exit status out of a command (for example the
// status of a command run inside a machine) without printing anything.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// Main runs the CLI with args (without the program name) and returns the
// process exit status: 0 on success, the command's own status for
// `machine run`, 1 for other errors (printed to stderr as "machinetop: …").
func Main(args []string) int {
	if code, ok := helper(args); ok {
		return code
	}
	root := NewRootCmd()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	fmt.Fprintf(os.Stderr, "machinetop: %v\n", err)
	return 1
}

// NewRootCmd builds the command tree: `machinetop` alone opens the
// dashboard; `machine` (alias `m`), `image` and the hidden supervisor
// command hang below it.
func NewRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "machinetop",
		Short:         "Persistent Linux machines from OCI images, and a dashboard to drive them",
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDashboard(cmd)
		},
	}
	root.AddCommand(newImageCmd())
	root.AddCommand(newBuildCmd())
	root.AddCommand(newMachineCmd())
	root.AddCommand(newSuperviseCmd())
	return root
}
