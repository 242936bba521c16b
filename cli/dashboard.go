package cli

import (
	"os"
	"runtime"
	"runtime/pprof"

	tea "charm.land/bubbletea/v2"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/machinetop/machinetop/config"
	"github.com/machinetop/machinetop/theme"
	"github.com/machinetop/machinetop/tui"
	"github.com/machinetop/machinetop/tui/source"
)

// runDashboard opens the live dashboard. When stdin or stdout is not a
// terminal it prints the machine table instead, so scripts keep working.
func runDashboard(cmd *cobra.Command) error {
	cf, err := config.Load()
	if err != nil {
		return err
	}
	a, err := openApp()
	if err != nil {
		return err
	}
	if !term.IsTerminal(int(os.Stdin.Fd())) || !term.IsTerminal(int(os.Stdout.Fd())) {
		ms, err := a.Machines.List(cmd.Context())
		if err != nil {
			return err
		}
		writeMachineTable(cmd.OutOrStdout(), ms)
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	// MACHINETOP_CPUPROFILE=FILE writes a CPU profile of the dashboard
	// (for tests/bench-dashboard.sh investigations).
	if p := os.Getenv("MACHINETOP_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	o := tui.Options{Src: &source.Live{App: a, Exe: exe}}
	o.Theme, o.ThemeFixed = theme.Choose(string(cf.Dashboard.Theme))
	if cf.Dashboard.Refresh != nil {
		o.Refresh = cf.Dashboard.Refresh.Duration
	}
	model := tui.New(o)
	defer model.Close()
	// One thread runs Go code: the dashboard waits on the terminal, its
	// renderer's ticks and sockets, and with more its idle wake-ups hand
	// work between threads (a quarter of its idle CPU, measured with
	// tests/bench-dashboard.sh). $GOMAXPROCS still overrides.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	// The renderer's frame rate is its idle wake-up rate too (see tui.FPS).
	_, err = tea.NewProgram(model, tea.WithFPS(tui.FPS)).Run()
	return err
}
