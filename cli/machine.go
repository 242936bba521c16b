package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/machinetop/machinetop/images/progress"
	"github.com/machinetop/machinetop/vm"
)

// newMachineCmd builds `machinetop machine` (alias `m`), mirroring Apple's
// `container machine` plus start and restart.
func newMachineCmd() *cobra.Command {
	c := &cobra.Command{
		Use:     "machine",
		Aliases: []string{"m"},
		Short:   "Create, run and manage machines",
	}
	c.AddCommand(newCreateCmd(), newRunCmd(), newListCmd(), newInspectCmd(),
		newStartCmd(), newStopCmd(), newRestartCmd(), newDeleteCmd(),
		newLogsCmd(), newSetCmd(), newSetDefaultCmd(), newSSHConfigCmd())
	return c
}

// optionalName returns args[0] or "" (the default machine).
func optionalName(args []string) string {
	if len(args) > 0 {
		return args[0]
	}
	return ""
}

func newCreateCmd() *cobra.Command {
	var o vm.CreateOptions
	var memory, disk, platform string
	var noBoot bool
	c := &cobra.Command{
		Use:   "create IMAGE",
		Short: "Create a machine from an image and boot it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Image = args[0]
			var err error
			if memory != "" {
				if o.MemoryBytes, err = vm.ParseMemory(memory); err != nil {
					return fmt.Errorf("--memory: %w", err)
				}
			}
			if disk != "" {
				if o.DiskBytes, err = vm.ParseSize(disk); err != nil {
					return fmt.Errorf("--disk: %w", err)
				}
			}
			if cmd.Flags().Changed("cpus") && o.CPUs < 1 {
				return fmt.Errorf("--cpus %d: must be at least 1", o.CPUs)
			}
			if o.Arch, err = createArch(o.Arch, platform); err != nil {
				return err
			}
			a, err := openApp()
			if err != nil {
				return err
			}
			var view progressView
			cfg, err := a.Create(cmd.Context(), o, func(e progress.Event) {
				if view == nil {
					view, _ = newProgressView(cmd.ErrOrStderr(), "auto")
				}
				view.event(e)
			})
			if view != nil {
				view.close()
			}
			if err != nil {
				return err
			}
			if !noBoot {
				if err := a.Machines.Start(cmd.Context(), cfg); err != nil {
					return fmt.Errorf("created %s but it did not boot: %w", cfg.Name, err)
				}
			}
			fmt.Fprintln(cmd.OutOrStdout(), cfg.Name)
			return nil
		},
	}
	f := c.Flags()
	f.StringVarP(&o.Name, "name", "n", "", "machine name (default: <image>-<tag>)")
	f.BoolVar(&o.SetDefault, "set-default", false, "make it the default machine")
	f.BoolVar(&noBoot, "no-boot", false, "create without booting")
	f.IntVar(&o.CPUs, "cpus", 0, fmt.Sprintf("virtual CPUs (default %d, half the host's)", vm.DefaultCPUs()))
	f.StringVar(&memory, "memory", "", fmt.Sprintf("memory, e.g. 4G (default %s, half the host's)", vm.FormatSize(vm.DefaultMemory())))
	f.StringVar(&disk, "disk", "", "root disk capacity, sparse (default 64G)")
	f.StringVarP(&o.Arch, "arch", "a", "", fmt.Sprintf("guest architecture: arm64 or amd64 (default %s, the host's; another runs emulated, slowly)", vm.HostArch()))
	f.StringVar(&platform, "platform", "", "the guest's platform, linux/arm64 or linux/amd64, as images name theirs (instead of --arch)")
	f.StringVar(&o.Kernel, "kernel", "", "kernel .deb or vmlinuz to boot instead of the distribution's kernel")
	f.StringVar(&o.HomeMount, "home-mount", vm.HomeMountRW, "share your home directory at the same path: rw, ro or none")
	f.StringArrayVar(&o.Mounts, "mount", nil, "share a host directory: HOST[:GUEST][:ro] (repeatable; GUEST defaults to HOST)")
	return c
}

// createArch is the machine architecture `create` was given by --arch
// and --platform (either, or both when they agree); "" for neither.
func createArch(arch, platform string) (string, error) {
	if platform == "" {
		if arch == "" {
			return "", nil
		}
		a, err := vm.ParseArch(arch)
		if err != nil {
			return "", fmt.Errorf("--arch: %w", err)
		}
		return a, nil
	}
	p, err := vm.ArchFromPlatform(platform)
	if err != nil {
		return "", fmt.Errorf("--platform: %w", err)
	}
	if arch != "" {
		a, err := vm.ParseArch(arch)
		if err != nil {
			return "", fmt.Errorf("--arch: %w", err)
		}
		if a != p {
			return "", fmt.Errorf("--arch %s and --platform %s name different architectures: give one of them", arch, platform)
		}
	}
	return p, nil
}

func newListCmd() *cobra.Command {
	var format string
	var quiet bool
	c := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List machines",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "table" && format != "json" {
				return fmt.Errorf("--format %q: use table or json", format)
			}
			m, err := newManager()
			if err != nil {
				return err
			}
			ms, err := m.List(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch {
			case quiet:
				for _, mc := range ms {
					fmt.Fprintln(out, mc.Name)
				}
			case format == "json":
				if ms == nil {
					ms = []vm.Machine{}
				}
				return writeJSON(out, ms)
			default:
				writeMachineTable(out, ms)
			}
			return nil
		},
	}
	c.Flags().StringVar(&format, "format", "table", "table or json")
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "print names only")
	return c
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeMachineTable prints the `machine ls` table.
func writeMachineTable(w io.Writer, ms []vm.Machine) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tIMAGE\tARCH\tCREATED\tIP\tCPUS\tMEMORY\tDISK\tSTATE\tDEFAULT")
	for _, mc := range ms {
		ip := mc.IP
		if ip == "" || mc.State != vm.StateRunning {
			ip = "-"
		}
		def := ""
		if mc.Default {
			def = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", mc.Name, mc.Image, mc.GuestArch(),
			mc.Created.Local().Format("2006-01-02 15:04:05"), ip, mc.CPUs,
			vm.FormatSize(mc.MemoryBytes), vm.FormatSize(mc.DiskAllocated), mc.State, def)
	}
	tw.Flush()
}

func newInspectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect [NAME]",
		Short: "Show a machine's configuration and state as JSON",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, cfg, err := managerFor(optionalName(args))
			if err != nil {
				return err
			}
			return writeJSON(cmd.OutOrStdout(), m.Get(cmd.Context(), cfg))
		},
	}
}

// simpleCmd builds a command acting on one optional machine name.
func simpleCmd(use, short string, act func(ctx context.Context, m *vm.Manager, cfg *vm.Config) error) *cobra.Command {
	return &cobra.Command{
		Use:   use + " [NAME]",
		Short: short,
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, cfg, err := managerFor(optionalName(args))
			if err != nil {
				return err
			}
			if err := act(cmd.Context(), m, cfg); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), cfg.Name)
			return nil
		},
	}
}

func newStartCmd() *cobra.Command {
	return simpleCmd("start", "Boot a machine and wait for its agent", func(ctx context.Context, m *vm.Manager, cfg *vm.Config) error {
		return m.Start(ctx, cfg)
	})
}

func newStopCmd() *cobra.Command {
	var timeout time.Duration
	c := simpleCmd("stop", "Shut a machine down (killed after --timeout)", func(ctx context.Context, m *vm.Manager, cfg *vm.Config) error {
		return m.Stop(ctx, cfg, timeout)
	})
	c.Flags().DurationVarP(&timeout, "timeout", "t", vm.DefaultStopTimeout, "how long to wait for the guest to power off before killing it")
	return c
}

func newRestartCmd() *cobra.Command {
	var timeout time.Duration
	c := simpleCmd("restart", "Stop and start a machine", func(ctx context.Context, m *vm.Manager, cfg *vm.Config) error {
		return m.Restart(ctx, cfg, timeout)
	})
	c.Flags().DurationVarP(&timeout, "timeout", "t", vm.DefaultStopTimeout, "how long to wait for the guest to power off before killing it")
	return c
}

func newDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "delete NAME...",
		Aliases: []string{"rm"},
		Short:   "Stop and delete machines, disks included",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := newManager()
			if err != nil {
				return err
			}
			var failed []string
			for _, n := range args {
				cfg, err := m.Load(n)
				var wasDefault bool
				if err == nil {
					wasDefault, err = m.Delete(cmd.Context(), cfg)
				}
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "machinetop: %v\n", err)
					failed = append(failed, n)
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), n)
				if wasDefault {
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s was the default machine; there is no default now (set one with `machinetop machine set-default NAME`)\n", n)
				}
			}
			if len(failed) > 0 {
				return fmt.Errorf("could not delete %s", strings.Join(failed, ", "))
			}
			return nil
		},
	}
}

func newSetCmd() *cobra.Command {
	var name string
	c := &cobra.Command{
		Use:   "set [-n NAME] KEY=VALUE...",
		Short: "Change settings for the next boot: cpus=N, memory=SIZE, kernel=PATH, home-mount=rw|ro|none, mounts=HOST[:GUEST][:ro],...",
		Long: "Change settings, applied at the next boot:\n" +
			"  cpus=N            virtual CPUs\n" +
			"  memory=SIZE       memory, e.g. 4G\n" +
			"  kernel=PATH       kernel .deb or vmlinuz (empty for the default)\n" +
			"  home-mount=MODE   share your home directory: rw, ro or none\n" +
			"  mounts=LIST       shared directories, comma separated HOST[:GUEST][:ro]; replaces the list (empty for none)",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, cfg, err := managerFor(name)
			if err != nil {
				return err
			}
			name := cfg.Name
			kv := map[string]string{}
			for _, a := range args {
				k, v, ok := strings.Cut(a, "=")
				if !ok || k == "" {
					return fmt.Errorf("%q is not KEY=VALUE (e.g. cpus=2, memory=4G)", a)
				}
				kv[k] = v
			}
			if err := m.Set(cfg, kv); err != nil {
				return err
			}
			if mc := m.Get(cmd.Context(), cfg); mc.State != vm.StateStopped {
				fmt.Fprintf(cmd.ErrOrStderr(), "note: %s is running; the change applies after `machinetop machine restart %s`\n", name, name)
			}
			return nil
		},
	}
	c.Flags().StringVarP(&name, "name", "n", "", "machine (default: the default machine)")
	return c
}

func newSetDefaultCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "set-default NAME",
		Short: "Make NAME the default machine",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, cfg, err := managerFor(args[0])
			if err != nil {
				return err
			}
			return m.SetDefault(cfg)
		},
	}
}

func newSSHConfigCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ssh-config [NAME]",
		Short: "Print an OpenSSH Host block for a running machine (for ssh, scp, editors' remote SSH)",
		Long: "Print an ssh_config(5) Host block that logs in to the machine as your user with a key\n" +
			"machinetop made for you, over a port forwarded from 127.0.0.1. Add it to ~/.ssh/config,\n" +
			"or use it directly: ssh -F <(machinetop machine ssh-config NAME) NAME",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, cfg, err := managerFor(optionalName(args))
			if err != nil {
				return err
			}
			s, err := m.SSHConfig(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), s)
			return nil
		},
	}
}
