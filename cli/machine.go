package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/machinetop/machinetop/config"
	"github.com/machinetop/machinetop/guest/reclaim"
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
		Long: "Create, run and manage machines. Every command taking an optional NAME acts on the\n" +
			"default machine without one; the first machine created becomes the default.",
	}
	c.AddCommand(newCreateCmd(), newRunCmd(), newListCmd(), newInspectCmd(),
		newStartCmd(), newStopCmd(), newRestartCmd(), newDeleteCmd(),
		newLogsCmd(), newSetCmd(), newSetDefaultCmd(), newSSHConfigCmd(),
		newCpCmd(), newStatsCmd(), newReclaimCmd())
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
		Long: "Create a machine from IMAGE (NAME[:TAG] or a digest prefix from `image ls`; an image\n" +
			"not stored yet is pulled), boot it unless --no-boot, and print its name.\n\n" +
			fmt.Sprintf("Defaults on this host: %d CPUs and %s of memory (half the host's), a 64G sparse disk.",
				vm.DefaultCPUs(), vm.FormatSize(vm.DefaultMemory())),
		Example: "  machinetop machine create debian:bookworm -n dev --cpus 2 --memory 4G --set-default\n" +
			"  machinetop machine create ubuntu:24.04 --home-mount ro --mount ~/src:/src\n" +
			"  machinetop machine create debian:bookworm -n web --publish 127.0.0.1:18080:80",
		Args:              wantArgs(1, 1),
		ValidArgsFunction: completeImage,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Image = args[0]
			cf, err := config.Load()
			if err != nil {
				return err
			}
			applyCreateDefaults(cmd.Flags(), cf.Create, &o, &memory, &disk)
			if memory != "" {
				if o.MemoryBytes, err = vm.ParseMemory(memory); err != nil {
					from := "--memory"
					if !cmd.Flags().Changed("memory") {
						from = cf.Path + ": create.memory"
					}
					return fmt.Errorf("%s: %w", from, err)
				}
			}
			if disk != "" {
				if o.DiskBytes, err = vm.ParseSize(disk); err != nil {
					return fmt.Errorf("--disk: %w", err)
				}
			}
			if cmd.Flags().Changed("cpus") || o.CPUs != 0 {
				// 0 means "the default" to vm.Create; given (by the flag
				// or the config file), it is checked against this host.
				if err := vm.ValidateCPUs(o.CPUs); err != nil {
					return err
				}
			}
			if o.Arch, err = createArch(o.Arch, platform); err != nil {
				return err
			}
			a, err := openApp()
			if err != nil {
				return err
			}
			if !noBoot {
				if err := prepareBoot(cmd); err != nil {
					return err
				}
			}
			// A pull of a missing image shows its progress (and is
			// journalled for the dashboard).
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
				if err := startShowing(cmd.Context(), cmd, a.Machines, cfg); err != nil {
					return fmt.Errorf("created %s but it did not boot: %w", cfg.Name, err)
				}
			}
			fmt.Fprintln(cmd.OutOrStdout(), cfg.Name)
			return nil
		},
	}
	f := c.Flags()
	f.StringVarP(&o.Name, "name", "n", "", "machine `NAME` (default: <image>-<tag>)")
	f.BoolVar(&o.SetDefault, "set-default", false, "make it the default machine")
	f.BoolVar(&noBoot, "no-boot", false, "create without booting")
	f.IntVar(&o.CPUs, "cpus", 0, "`N` virtual CPUs (default: half the host's)")
	f.StringVar(&memory, "memory", "", "memory `SIZE`, e.g. 4G (default: half the host's, whole GiB)")
	f.StringVar(&disk, "disk", "", "root disk capacity `SIZE`, sparse (default 64G)")
	f.StringVarP(&o.Arch, "arch", "a", "", fmt.Sprintf("guest `ARCH`itecture: arm64 or amd64 (default %s, the host's; another runs emulated, slowly)", vm.HostArch()))
	f.StringVar(&platform, "platform", "", "the guest's `PLATFORM`, linux/arm64 or linux/amd64, as images name theirs (instead of --arch)")
	f.StringVar(&o.Kernel, "kernel", "", "kernel .deb or vmlinuz `FILE` to boot instead of the distribution's kernel")
	f.StringVar(&o.HomeMount, "home-mount", vm.HomeMountRW, "how to share your home directory at the same path, a `MODE`: rw, ro or none")
	f.StringArrayVar(&o.Mounts, "mount", nil, "share a host directory: `HOST[:GUEST][:ro]` (repeatable; GUEST defaults to HOST)")
	f.StringArrayVarP(&o.Publish, "publish", "p", nil, "forward a host port to a machine port: `[HOST_IP:]HOST_PORT:GUEST_PORT` (repeatable; HOST_IP defaults to loopback)")
	f.StringVar(&o.PortForwarding, "port-forwarding", vm.PortForwardingOn, "`on|off`: forward every port the machine listens on to this host's loopback")
	c.RegisterFlagCompletionFunc("name", completeNothing)
	c.RegisterFlagCompletionFunc("cpus", completeNothing)
	c.RegisterFlagCompletionFunc("memory", completeNothing)
	c.RegisterFlagCompletionFunc("disk", completeNothing)
	c.RegisterFlagCompletionFunc("arch", completeArch)
	c.RegisterFlagCompletionFunc("platform", completePlatform)
	c.RegisterFlagCompletionFunc("kernel", completeFiles)
	c.RegisterFlagCompletionFunc("home-mount", completeHomeMount)
	c.RegisterFlagCompletionFunc("mount", completeDirs)
	c.RegisterFlagCompletionFunc("publish", completeNothing)
	c.RegisterFlagCompletionFunc("port-forwarding", func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return []cobra.Completion{vm.PortForwardingOn, vm.PortForwardingOff}, cobra.ShellCompDirectiveNoFileComp
	})
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
		Long: "List machines. Templates (--format) see the fields of `machine inspect`'s Go value:\n" +
			"Name, Image, State, IP, CPUs, MemoryBytes, DiskBytes, DiskAllocated, Created, Default, …",
		Example: "  machinetop machine ls --format '{{.Name}}'\n" +
			"  machinetop machine ls --format 'table {{.Name}}\\t{{.State}}\\t{{.MemoryBytes | size}}'\n" +
			"  machinetop machine ls --format json",
		Args: wantArgs(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := parseFormat("--format", format, true)
			if err != nil {
				return err
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
			if quiet {
				for _, mc := range ms {
					fmt.Fprintln(out, mc.Name)
				}
				return nil
			}
			return writeList(out, f, ms, writeMachineTable)
		},
	}
	c.Flags().StringVar(&format, "format", "table", formatHelp)
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "print names only")
	c.RegisterFlagCompletionFunc("format", completeFormat(true))
	return c
}

// writeMachineTable prints the `machine ls` table.
func writeMachineTable(w io.Writer, ms []vm.Machine) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tIMAGE\tARCH\tCREATED\tIP\tCPUS\tMEMORY\tDISK\tSTATE\tDEFAULT\tPORTS")
	for _, mc := range ms {
		ip := mc.IP
		if ip == "" || mc.State != vm.StateRunning {
			ip = "-"
		}
		def := ""
		if mc.Default {
			def = "*"
		}
		ports := vm.PortsSummary(mc.Ports)
		if ports == "" {
			ports = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", mc.Name, mc.Image, mc.GuestArch(),
			mc.Created.Local().Format("2006-01-02 15:04:05"), ip, mc.CPUsShown(),
			mc.MemoryShown(vm.FormatSize), vm.FormatSize(mc.DiskAllocated), mc.State, def, ports)
	}
	tw.Flush()
}

func newInspectCmd() *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:   "inspect [NAME]",
		Short: "Show a machine's configuration and state as JSON, or through a template",
		Example: "  machinetop machine inspect dev\n" +
			"  machinetop machine inspect -f '{{.State}} {{.SSHPort}}' dev",
		Args:              wantArgs(0, 1),
		ValidArgsFunction: completeMachine,
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := parseFormat("--format", format, false)
			if err != nil {
				return err
			}
			m, cfg, err := managerFor(cmd, optionalName(args))
			if err != nil {
				return err
			}
			return f.writeOne(cmd.OutOrStdout(), m.Get(cmd.Context(), cfg))
		},
	}
	c.Flags().StringVarP(&format, "format", "f", "json", "`FORMAT`: json, or a Go template such as '{{.State}}' over the fields of machine ls --format")
	c.RegisterFlagCompletionFunc("format", completeFormat(false))
	return c
}

// simpleCmd builds a command acting on one optional machine name.
func simpleCmd(use, short string, act func(cmd *cobra.Command, m *vm.Manager, cfg *vm.Config) error) *cobra.Command {
	return &cobra.Command{
		Use:               use + " [NAME]",
		Short:             short,
		Args:              wantArgs(0, 1),
		ValidArgsFunction: completeMachine,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, cfg, err := managerFor(cmd, optionalName(args))
			if err != nil {
				return err
			}
			if err := act(cmd, m, cfg); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), cfg.Name)
			return nil
		},
	}
}

func newStartCmd() *cobra.Command {
	var timeout time.Duration
	c := simpleCmd("start", "Boot a machine and wait for its agent (stages shown after a second)", func(cmd *cobra.Command, m *vm.Manager, cfg *vm.Config) error {
		if err := prepareBoot(cmd); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
		defer cancel()
		return startShowing(ctx, cmd, m, cfg)
	})
	c.Flags().DurationVar(&timeout, "timeout", vm.DefaultStartTimeout, "give up when the machine is not ready after this `DURATION` (a first boot unpacks the image)")
	c.RegisterFlagCompletionFunc("timeout", completeNothing)
	return c
}

func newStopCmd() *cobra.Command {
	var timeout time.Duration
	c := simpleCmd("stop", "Shut a machine down (killed after --timeout)", func(cmd *cobra.Command, m *vm.Manager, cfg *vm.Config) error {
		return stopSaying(cmd, m, cfg, timeout)
	})
	c.Flags().DurationVarP(&timeout, "timeout", "t", vm.DefaultStopTimeout, "how long (a `DURATION`) to wait for the guest to power off before killing it")
	c.RegisterFlagCompletionFunc("timeout", completeNothing)
	return c
}

// stopSaying stops cfg's machine and says on stderr when it had to be
// killed, which a user would otherwise not learn.
func stopSaying(cmd *cobra.Command, m *vm.Manager, cfg *vm.Config, timeout time.Duration) error {
	killed, err := m.StopReporting(cmd.Context(), cfg, timeout)
	if killed {
		fmt.Fprintf(cmd.ErrOrStderr(), "machinetop: %s did not power off within %v and was killed; its disk is checked at the next start (-t gives it longer)\n", cfg.Name, timeout)
	}
	return err
}

func newRestartCmd() *cobra.Command {
	var timeout time.Duration
	c := simpleCmd("restart", "Stop and start a machine", func(cmd *cobra.Command, m *vm.Manager, cfg *vm.Config) error {
		if err := prepareBoot(cmd); err != nil {
			return err
		}
		if err := stopSaying(cmd, m, cfg, timeout); err != nil {
			return err
		}
		return startShowing(cmd.Context(), cmd, m, cfg)
	})
	c.Flags().DurationVarP(&timeout, "timeout", "t", vm.DefaultStopTimeout, "how long (a `DURATION`) to wait for the guest to power off before killing it")
	c.RegisterFlagCompletionFunc("timeout", completeNothing)
	return c
}

func newDeleteCmd() *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:     "delete NAME...",
		Aliases: []string{"rm"},
		Short:   "Delete machines, disks included (a running one only with --force, or when you confirm)",
		Long: "Delete each machine with its disk. A stopped machine is deleted at once. A running\n" +
			"machine is refused unless --force stops it first; on a terminal you are asked instead.",
		Args:              wantArgs(1, -1),
		ValidArgsFunction: completeMachines,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := newManager()
			if err != nil {
				return err
			}
			ask := asker(cmd)
			// Carry on past a failure so one typo does not block the rest.
			var errs []error
			for _, n := range args {
				cfg, err := m.Load(n)
				if errors.Is(err, vm.ErrBroken) {
					// Its state cannot be read, so nothing can run it.
					if _, err := m.RemoveBroken(n); err != nil {
						errs = append(errs, err)
						continue
					}
					fmt.Fprintln(cmd.OutOrStdout(), n)
					continue
				}
				if err != nil {
					errs = append(errs, err)
					continue
				}
				mc := m.Get(cmd.Context(), cfg)
				if mc.State != vm.StateStopped && !force {
					if ask == nil {
						errs = append(errs, fmt.Errorf("%s is %s: stop it first (`machinetop machine stop %s`), or pass --force to stop and delete it", n, mc.State, n))
						continue
					}
					ok, err := ask(fmt.Sprintf("%s is %s. Stop it and delete it with its %s disk (%s used)? [y/N] ",
						n, mc.State, vm.FormatSize(mc.DiskBytes), vm.FormatSize(mc.DiskAllocated)))
					if err != nil {
						errs = append(errs, err)
						continue
					}
					if !ok {
						fmt.Fprintf(cmd.ErrOrStderr(), "kept %s\n", n)
						continue
					}
				}
				wasDefault, err := m.Delete(cmd.Context(), cfg)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), n)
				if wasDefault {
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s was the default machine; there is no default now (set one with `machinetop machine set-default NAME`)\n", n)
				}
			}
			return errors.Join(errs...)
		},
	}
	c.Flags().BoolVarP(&force, "force", "f", false, "stop a running machine and delete it without asking")
	return c
}

// asker returns a function that asks a yes/no question on stderr and
// reads the answer from stdin, or nil when stdin or stderr is not a
// terminal (nobody to ask). Only "y" and "yes" mean yes.
func asker(cmd *cobra.Command) func(question string) (bool, error) {
	if !term.IsTerminal(int(os.Stdin.Fd())) || !term.IsTerminal(int(os.Stderr.Fd())) {
		return nil
	}
	in := bufio.NewReader(os.Stdin)
	return func(q string) (bool, error) {
		fmt.Fprint(cmd.ErrOrStderr(), q)
		line, err := in.ReadString('\n')
		if err != nil && line == "" {
			fmt.Fprintln(cmd.ErrOrStderr())
			return false, nil // end of input: no
		}
		a := strings.ToLower(strings.TrimSpace(line))
		return a == "y" || a == "yes", nil
	}
}

func newSetCmd() *cobra.Command {
	var name string
	c := &cobra.Command{
		Use:   "set [NAME] KEY=VALUE...",
		Short: "Change a machine's CPUs, memory, disk size, kernel, shared directories, file events, ports or memory reclaim",
		Long: "Change settings, applied at the next boot:\n" +
			"  cpus=N            virtual CPUs\n" +
			"  memory=SIZE       memory, e.g. 4G\n" +
			"  disk=SIZE         a larger root disk, e.g. 128G (grows only; the filesystem follows at the next boot)\n" +
			"  kernel=PATH       kernel .deb or vmlinuz (empty for the default)\n" +
			"  home-mount=MODE   share your home directory: rw, ro or none\n" +
			"  mounts=LIST       shared directories, comma separated HOST[:GUEST][:ro]; replaces the list (empty for none)\n" +
			"  file-events=on|off  host edits in shared directories wake inotify watchers in the machine (default on)\n" +
			"  publish=LIST      published ports, comma separated [HOST_IP:]HOST_PORT:GUEST_PORT; replaces the list (empty for none)\n" +
			"  port-forwarding=on|off  forward the ports the machine listens on to this host's loopback automatically\n" +
			"and, applied to a running machine at once:\n" +
			"  memory-reclaim=MODE  give idle page cache back to the host: off, gradual (the default) or aggressive\n" +
			"The machine is NAME, or -n NAME, or the default machine.",
		Example: "  machinetop machine set dev cpus=4 memory=8G\n" +
			"  machinetop machine set home-mount=ro mounts=~/src,~/data:/data:ro\n" +
			"  machinetop machine set dev publish=127.0.0.1:18080:80 port-forwarding=off\n" +
			"  machinetop machine set dev memory-reclaim=aggressive",
		Args: wantArgs(1, -1),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			var out []cobra.Completion
			if k, _, ok := strings.Cut(toComplete, "="); ok {
				switch k {
				case "home-mount":
					for _, v := range []string{vm.HomeMountRW, vm.HomeMountRO, vm.HomeMountNone} {
						out = append(out, k+"="+v)
					}
				case "port-forwarding":
					out = append(out, k+"="+vm.PortForwardingOn, k+"="+vm.PortForwardingOff)
				case "memory-reclaim":
					for _, v := range reclaim.Modes {
						out = append(out, k+"="+string(v))
					}
				case "file-events":
					out = append(out, k+"="+vm.FileEventsOn, k+"="+vm.FileEventsOff)
				}
				return out, cobra.ShellCompDirectiveNoFileComp
			}
			if len(args) == 0 && !cmd.Flags().Changed("name") {
				out = machineNames(toComplete, nil)
			}
			for _, k := range vm.SetKeys {
				if strings.HasPrefix(k, toComplete) {
					out = append(out, k+"=")
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if first := args[0]; !strings.Contains(first, "=") {
				for _, k := range vm.SetKeys {
					if first == k {
						return usagef(cmd, "%q is not KEY=VALUE (e.g. cpus=2, memory=4G)", first)
					}
				}
				if cmd.Flags().Changed("name") {
					return usagef(cmd, "the machine is given twice (-n %s and %s): give one", name, first)
				}
				name, args = first, args[1:]
				if len(args) == 0 {
					return usagef(cmd, "missing KEY=VALUE after %s: usage: %s", first, cmd.UseLine())
				}
			}
			kv := map[string]string{}
			for _, a := range args {
				k, v, ok := strings.Cut(a, "=")
				if !ok || k == "" {
					return usagef(cmd, "%q is not KEY=VALUE (e.g. cpus=2, memory=4G)", a)
				}
				kv[k] = v
			}
			m, cfg, err := managerFor(cmd, name)
			if err != nil {
				return err
			}
			name := cfg.Name
			if err := m.Set(cfg, kv); err != nil {
				return err
			}
			mc := m.Get(cmd.Context(), cfg)
			if mc.State == vm.StateStopped {
				return nil
			}
			others := len(kv)
			if _, ok := kv["memory-reclaim"]; ok {
				others--
				if err := m.ApplyReclaim(cmd.Context(), cfg); err != nil {
					return fmt.Errorf("memory-reclaim=%s is saved, but the running machine did not take it (it will at its next boot): %w", cfg.MemoryReclaim, err)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "memory-reclaim=%s applies to the running machine %s now\n", cfg.MemoryReclaim, name)
			}
			if others > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "note: %s is running; the change applies after `machinetop machine restart %s`\n", name, name)
			}
			return nil
		},
	}
	c.Flags().StringVarP(&name, "name", "n", "", "machine `NAME` (default: the default machine)")
	c.RegisterFlagCompletionFunc("name", completeMachineFlag)
	return c
}

func newSetDefaultCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "set-default NAME",
		Short:             "Make NAME the default machine",
		Args:              wantArgs(1, 1),
		ValidArgsFunction: completeMachine,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, cfg, err := managerFor(cmd, args[0])
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
		Args:              wantArgs(0, 1),
		ValidArgsFunction: completeMachine,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, cfg, err := managerFor(cmd, optionalName(args))
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
