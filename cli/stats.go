package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/machinetop/machinetop/vm"
)

// statsInterval is how often `machine stats` refreshes on a terminal.
const statsInterval = 2 * time.Second

// MachineStats is one row of `machine stats`: what --format templates and
// JSON see. Sizes are bytes; CPUPercent is 0..100×CPUs.
type MachineStats struct {
	Name string `json:"name"`
	// CPUPercent is the guest's CPU use since the agent's previous sample.
	CPUPercent float64 `json:"cpuPercent"`
	CPUs       int     `json:"cpus"`
	// MemUsed is memory in use in the guest (total less available),
	// MemTotal the guest's total and MemCache its page cache (the part
	// reclaim can give back: `machine reclaim`); HostRSS is the memory the
	// machine holds on the host (vm.HostHeld: the VM process's resident
	// memory; 0 where the host does not say).
	MemUsed  uint64 `json:"memUsed"`
	MemTotal uint64 `json:"memTotal"`
	MemCache uint64 `json:"memCache"`
	HostRSS  uint64 `json:"hostRss"`
	// DiskUsed is used space on the guest's root filesystem, DiskSize its
	// size, and DiskAllocated the host blocks the sparse disk file holds.
	DiskUsed      uint64 `json:"diskUsed"`
	DiskSize      uint64 `json:"diskSize"`
	DiskAllocated uint64 `json:"diskAllocated"`
	// NetRx and NetTx are bytes received and sent since boot over the
	// guest's non-loopback interfaces.
	NetRx uint64 `json:"netRx"`
	NetTx uint64 `json:"netTx"`
	// Error is why the guest could not be sampled ("" when it was).
	Error string `json:"error,omitempty"`
}

func newStatsCmd() *cobra.Command {
	var (
		format   string
		noStream bool
	)
	c := &cobra.Command{
		Use:   "stats [flags] [NAME...]",
		Short: "Show running machines' CPU, memory, disk and network use",
		Long: "Show the resource use of the named machines, or of every running machine, as `docker stats`\n" +
			"does: CPU % (100% is one CPU), memory used in the guest / its total, its page cache (what\n" +
			"`machine reclaim` can give back) and the memory the VM holds on the host, the guest's root filesystem used / the host space its disk file\n" +
			"takes, and network bytes received / sent since boot. On a terminal it refreshes every 2s until\n" +
			"Ctrl-C; with --no-stream, or when the output is not a terminal, it prints one sample.\n" +
			"Templates (--format) see the fields of MachineStats: Name, CPUPercent, CPUs, MemUsed,\n" +
			"MemTotal, MemCache, HostRSS, DiskUsed, DiskSize, DiskAllocated, NetRx, NetTx, Error.",
		Example: "  machinetop machine stats\n" +
			"  machinetop machine stats --no-stream dev\n" +
			"  machinetop machine stats --no-stream --format '{{.Name}} {{.CPUPercent}} {{.HostRSS | size}}'",
		Args:              wantArgs(0, -1),
		ValidArgsFunction: completeMachines,
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := parseFormat("--format", format, true)
			if err != nil {
				return err
			}
			return showStats(cmd, args, f, noStream)
		},
	}
	c.Flags().StringVar(&format, "format", "table", formatHelp)
	c.Flags().BoolVar(&noStream, "no-stream", false, "print one sample and exit")
	c.RegisterFlagCompletionFunc("format", completeFormat(true))
	return c
}

func showStats(cmd *cobra.Command, names []string, f *outputFormat, noStream bool) error {
	m, err := newManager()
	if err != nil {
		return err
	}
	var cfgs []*vm.Config
	for _, n := range names {
		cfg, err := m.Resolve(n)
		if err != nil {
			return err
		}
		cfgs = append(cfgs, cfg)
	}
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	stream := !noStream
	if file, ok := out.(*os.File); !ok || !term.IsTerminal(int(file.Fd())) {
		stream = false
	}
	for {
		rows, err := sampleStats(ctx, m, cfgs)
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := writeList(&buf, f, rows, writeStatsTable); err != nil {
			return err
		}
		if stream {
			// Home and clear, then the table: a redraw in place.
			io.WriteString(out, "\x1b[H\x1b[2J")
		}
		out.Write(buf.Bytes())
		if !stream {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(statsInterval):
		}
	}
}

// sampleStats samples cfgs (every running machine when empty) at once.
// A named machine that is not running is an error.
func sampleStats(ctx context.Context, m *vm.Manager, cfgs []*vm.Config) ([]MachineStats, error) {
	var ms []vm.Machine
	if len(cfgs) == 0 {
		all, err := m.List(ctx)
		if err != nil {
			return nil, err
		}
		for _, mc := range all {
			if mc.State == vm.StateRunning {
				ms = append(ms, mc)
			}
		}
	} else {
		for _, cfg := range cfgs {
			mc := m.Get(ctx, cfg)
			if mc.State != vm.StateRunning {
				return nil, fmt.Errorf("machine %s is %s: start it with `machinetop machine start %s`", cfg.Name, mc.State, cfg.Name)
			}
			ms = append(ms, *mc)
		}
	}
	rows := make([]MachineStats, len(ms))
	var wg sync.WaitGroup
	for i := range ms {
		wg.Go(func() {
			mc := &ms[i]
			r := MachineStats{Name: mc.Name, DiskAllocated: mc.DiskAllocated}
			r.HostRSS = vm.HostHeld(mc.HeldPID())
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			met, err := m.Agent(&mc.Config).Metrics(cctx)
			if err != nil {
				r.Error = err.Error()
			} else {
				r.CPUPercent, r.CPUs = met.CPUPercent, met.NumCPU
				r.MemUsed, r.MemTotal, r.MemCache = met.MemUsed, met.MemTotal, met.MemCache
				r.DiskUsed, r.DiskSize = met.DiskUsed, met.DiskTotal
				r.NetRx, r.NetTx = met.NetRxBytes, met.NetTxBytes
			}
			rows[i] = r
		})
	}
	wg.Wait()
	return rows, nil
}

func writeStatsTable(w io.Writer, rows []MachineStats) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCPU %\tMEM USED / TOTAL\tCACHE\tHOST HELD\tDISK USED / ALLOCATED\tNET RX / TX")
	dash := func(n uint64) string {
		if n == 0 {
			return "-"
		}
		return vm.FormatSize(n)
	}
	for _, r := range rows {
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t%s\t- / %s\t-\t(%s)\n", r.Name, dash(r.HostRSS), dash(r.DiskAllocated), r.Error)
			continue
		}
		fmt.Fprintf(tw, "%s\t%.1f%%\t%s / %s\t%s\t%s\t%s / %s\t%s / %s\n", r.Name, r.CPUPercent,
			vm.FormatSize(r.MemUsed), vm.FormatSize(r.MemTotal), vm.FormatSize(r.MemCache), dash(r.HostRSS),
			vm.FormatSize(r.DiskUsed), vm.FormatSize(r.DiskAllocated),
			vm.FormatSize(r.NetRx), vm.FormatSize(r.NetTx))
	}
	tw.Flush()
}
