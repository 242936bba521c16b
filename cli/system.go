package cli

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/machinetop/machinetop/app/space"
	"github.com/machinetop/machinetop/vm"
)

func newSystemCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "system",
		Short: "Show and reclaim the data directory's disk space",
	}
	c.AddCommand(newDFCmd(), newPruneCmd())
	return c
}

func size(n int64) string { return vm.FormatSize(uint64(max(n, 0))) }

func newDFCmd() *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:   "df",
		Short: "Show where the data directory's disk space goes",
		Long: "Show the space each machine (its disk, allocated of its capacity, and files), the\n" +
			"images, the rootfs cache, the build cache (blobs no tagged image uses), the guest\n" +
			"kits, the build and pull journals and scratch files take. Allocated space counts a\n" +
			"file hard-linked in two places twice. Templates (--format) see Category, Name,\n" +
			"Bytes (allocated) and Size (apparent).",
		Example: "  machinetop system df\n  machinetop system df --format '{{.Category}}\\t{{.Bytes | size}}'",
		Args:    wantArgs(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := parseFormat("--format", format, true)
			if err != nil {
				return err
			}
			a, err := openApp()
			if err != nil {
				return err
			}
			rows, err := space.Usage(a.Data, a.Images)
			if err != nil {
				return err
			}
			return writeList(cmd.OutOrStdout(), f, rows, writeDFTable)
		},
	}
	c.Flags().StringVar(&format, "format", "table", formatHelp)
	c.RegisterFlagCompletionFunc("format", completeNothing)
	return c
}

func writeDFTable(w io.Writer, rows []space.Row) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CATEGORY\tNAME\tALLOCATED\tSIZE")
	var total int64
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Category, r.Name, size(r.Bytes), size(r.Size))
		total += r.Bytes
	}
	fmt.Fprintf(tw, "total\t\t%s\t\n", size(total))
	tw.Flush()
}

func newPruneCmd() *cobra.Command {
	var force, dryRun bool
	c := &cobra.Command{
		Use:   "prune",
		Short: "Remove caches, old journals and leftovers that nothing needs",
		Long: "Remove what no machine and no tagged image needs, and print what went and the space\n" +
			"freed per category and in total:\n\n" +
			"  rootfs cache       flattened image tars no machine links to (made again on create)\n" +
			"  build cache        every build step's cached result, and the blobs no tagged image uses\n" +
			fmt.Sprintf("  journals           build and pull journals beyond the newest %d that are older than %s\n", space.KeepJournals, "a week") +
			"  kits               guest kits other than the newest per kernel (rebuilt on the next boot)\n" +
			"  partial downloads  interrupted pulls, kit builds and package downloads\n" +
			fmt.Sprintf("  tmp                entries of the data directory's tmp/ older than %s\n\n", space.TmpMinAge) +
			"On a terminal it asks first, unless --force; without a terminal it needs --force.",
		Example: "  machinetop system prune --dry-run\n  machinetop system prune -f",
		Args:    wantArgs(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := openApp()
			if err != nil {
				return err
			}
			items, err := space.Plan(a.Data, a.Images, time.Now())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(items) == 0 {
				fmt.Fprintln(out, "nothing to prune")
				return nil
			}
			if dryRun {
				writePruneReport(out, items, "would free")
				return nil
			}
			if !force {
				ask := asker(cmd)
				if ask == nil {
					return fmt.Errorf("prune removes files and stdin is not a terminal to ask on: pass --force (see --dry-run for what would go)")
				}
				writePruneReport(cmd.ErrOrStderr(), items, "would free")
				ok, err := ask("Remove these? [y/N] ")
				if err != nil || !ok {
					fmt.Fprintln(cmd.ErrOrStderr(), "nothing removed")
					return err
				}
			}
			done, err := space.Prune(a.Data, a.Images, items)
			writePruneReport(out, done, "freed")
			return err
		},
	}
	c.Flags().BoolVarP(&force, "force", "f", false, "remove without asking")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be removed, remove nothing")
	return c
}

// writePruneReport prints each item, then the bytes per category and the
// total ("freed" or "would free").
func writePruneReport(w io.Writer, items []space.Item, verb string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	var order []string
	per := map[string]int64{}
	var total int64
	for _, it := range items {
		p := it.Path
		if p == "" {
			p = "(all entries)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", it.Category, p, size(it.Bytes))
		if _, ok := per[it.Category]; !ok {
			order = append(order, it.Category)
		}
		per[it.Category] += it.Bytes
		total += it.Bytes
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, c := range order {
		fmt.Fprintf(tw, "%s\t%s %s\n", c, verb, size(per[c]))
	}
	fmt.Fprintf(tw, "total\t%s %s\n", verb, size(total))
	tw.Flush()
}
