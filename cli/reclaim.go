package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/machinetop/machinetop/vm"
)

func newReclaimCmd() *cobra.Command {
	var (
		format string
		settle time.Duration
	)
	c := &cobra.Command{
		Use:   "reclaim [flags] [NAME]",
		Short: "Give a running machine's idle page cache back to the host now",
		Long: "Ask the machine to drop its page cache above a floor (128M or 3% of its memory) and compact\n" +
			"its memory, wait until the memory its VM holds on the host stops shrinking (at most --settle),\n" +
			"and print that host-held memory before and after, with the guest's used memory and page cache.\n" +
			"Machines also do this by themselves once idle (machine set memory-reclaim=); a restart returns\n" +
			"everything. On QEMU the pages go back through free page reporting; the Virtualization\n" +
			"framework (macOS) has none, so there the guest frees its cache but the host may keep the memory.\n" +
			"--format json prints the figures (bytes) as JSON.",
		Example: "  machinetop machine reclaim dev\n" +
			"  machinetop machine reclaim --format json",
		Args:              wantArgs(0, 1),
		ValidArgsFunction: completeMachine,
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "" && format != "json" {
				return usagef(cmd, "--format %q: use json (or leave it out for one line)", format)
			}
			m, cfg, err := managerFor(cmd, optionalName(args))
			if err != nil {
				return err
			}
			rep, err := m.Reclaim(cmd.Context(), cfg, settle)
			if err != nil {
				return err
			}
			if format == "json" {
				return writeJSON(cmd.OutOrStdout(), rep)
			}
			fmt.Fprintln(cmd.OutOrStdout(), vm.ReclaimSummary(cfg.Name, rep))
			return nil
		},
	}
	c.Flags().StringVar(&format, "format", "", "`FORMAT`: json")
	c.Flags().DurationVar(&settle, "settle", 10*time.Second, "longest wait (a `DURATION`) for the host memory to stop shrinking")
	c.RegisterFlagCompletionFunc("format", completeWords("json\tthe figures as JSON"))
	c.RegisterFlagCompletionFunc("settle", completeNothing)
	return c
}
