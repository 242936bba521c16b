package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/machinetop/machinetop/guest/client"
	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/vm"
)

// runOptions are `machine run`'s flags.
type runOptions struct {
	name        string
	root        bool
	user        string
	env         []string
	envFiles    []string
	workdir     string
	interactive bool
	tty         bool
}

func newRunCmd() *cobra.Command {
	var o runOptions
	c := &cobra.Command{
		Use:   "run [flags] [NAME --] [CMD ARGS...]",
		Short: "Run a command in a machine as your user (booting it if needed), or open a login shell",
		Long: "Run CMD in the machine and exit with its status; without CMD, open your login shell.\n" +
			"The machine is -n NAME, or NAME followed by --, or the default machine. Flags go before\n" +
			"CMD: everything from CMD on is the command's own (`run ls -la`).\n\n" +
			"It runs as your user (the one machinetop mapped into the machine) unless --root or -u is given,\n" +
			"in the same directory as here when this directory is shared with the machine, else in the\n" +
			"user's home directory.\n\n" +
			"Without -i and -t, stdin is passed through and a PTY is used when stdin and stdout are both\n" +
			"terminals. -i and -t work as in `docker exec`: -i passes stdin through, -t allocates a PTY.\n\n" +
			"The exit status is CMD's; 126 when it cannot be executed, 127 when it is not found, 128+N\n" +
			"when signal N killed it, 125 when machinetop itself failed, and 255 when the connection to\n" +
			"the machine was lost while CMD ran (CMD may still be running there).",
		Example: "  machinetop machine run ls -la\n" +
			"  machinetop machine run dev -- uname -a\n" +
			"  machinetop m run -n dev --root -- apt-get update\n" +
			"  machinetop m run dev --",
		Args: wantArgs(0, -1),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if len(args) == 0 && !cmd.Flags().Changed("name") {
				return machineNames(toComplete, nil), cobra.ShellCompDirectiveNoFileComp
			}
			return nil, cobra.ShellCompDirectiveDefault
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			// Flags stop at the first argument (SetInterspersed below), so a
			// "--" after NAME is still in args.
			if cmd.ArgsLenAtDash() < 0 && len(args) >= 2 && args[1] == "--" {
				if cmd.Flags().Changed("name") {
					return usagef(cmd, "the machine is given twice (-n %s and %s --): give one", o.name, args[0])
				}
				o.name, args = args[0], args[2:]
			}
			return runInMachine(cmd, args, &o)
		},
	}
	f := c.Flags()
	f.SetInterspersed(false)
	f.StringVarP(&o.name, "name", "n", "", "machine `NAME` (default: the default machine)")
	f.BoolVar(&o.root, "root", false, "run as root")
	f.StringVarP(&o.user, "user", "u", "", "run as `USER` (a name in the machine, UID or UID:GID)")
	f.StringArrayVarP(&o.env, "env", "e", nil, "set `KEY=VALUE` in the environment (KEY alone passes this host's value; repeatable)")
	f.StringArrayVar(&o.envFiles, "env-file", nil, "read KEY=VALUE lines from `FILE` (# comments and blank lines skipped; repeatable)")
	f.StringVarP(&o.workdir, "workdir", "w", "", "working directory `DIR` in the machine (absolute)")
	f.BoolVarP(&o.interactive, "interactive", "i", false, "pass stdin through")
	f.BoolVarP(&o.tty, "tty", "t", false, "allocate a PTY")
	c.RegisterFlagCompletionFunc("name", completeMachineFlag)
	c.RegisterFlagCompletionFunc("user", completeNothing)
	c.RegisterFlagCompletionFunc("env", completeEnvNames)
	c.RegisterFlagCompletionFunc("env-file", completeFiles)
	c.RegisterFlagCompletionFunc("workdir", completeNothing)
	return c
}

// completeEnvNames completes -e with this host's variable names (a bare
// KEY passes the host's value).
func completeEnvNames(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	var out []cobra.Completion
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "" && strings.HasPrefix(k, toComplete) {
			out = append(out, k)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

func runInMachine(cmd *cobra.Command, args []string, o *runOptions) error {
	if o.root && o.user != "" {
		return usagef(cmd, "--root and -u both choose the user: give one")
	}
	if o.workdir != "" && !filepath.IsAbs(o.workdir) {
		return fmt.Errorf("-w %q: give an absolute path in the machine", o.workdir)
	}
	env, err := buildEnv(o.envFiles, o.env)
	if err != nil {
		return err
	}
	stdinTTY := term.IsTerminal(int(os.Stdin.Fd()))
	auto := !cmd.Flags().Changed("interactive") && !cmd.Flags().Changed("tty")
	useTTY, attachStdin := o.tty, o.interactive
	if auto {
		useTTY = stdinTTY && term.IsTerminal(int(os.Stdout.Fd()))
		attachStdin = true
	} else if o.tty && o.interactive && !stdinTTY {
		return fmt.Errorf("-t: the input device is not a TTY; drop -t to use pipes")
	}

	m, cfg, err := managerFor(cmd, o.name)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	if err := prepareBoot(cmd); err != nil {
		return err
	}
	if err := startShowing(ctx, cmd, m, cfg); err != nil {
		return err
	}
	mc := m.Get(ctx, cfg)
	req := &proto.ExecRequest{Argv: args, Env: env, Dir: o.workdir}
	switch {
	case o.root:
	case o.user != "":
		req.User = o.user
	default:
		req.UID, req.GID = uint32(mc.User.UID), uint32(mc.User.GID)
	}
	if req.Dir == "" {
		if wd, err := os.Getwd(); err == nil {
			req.Dir = guestWorkdir(mc.ActiveMounts, wd)
		}
	}
	cl := m.Agent(cfg)
	var stdin io.Reader
	if attachStdin {
		stdin = os.Stdin
	}
	var st proto.ExitStatus
	if useTTY {
		st, err = runTTY(ctx, cl, req, stdin)
	} else {
		st, err = runPiped(ctx, cl, req, stdin)
	}
	if errors.Is(err, client.ErrLost) {
		fmt.Fprintf(os.Stderr, "machinetop: lost the connection to machine %s while the command ran (%v); "+
			"the command may still be running there\n", cfg.Name, err)
		return &ExitError{Code: ExitLost}
	}
	if err != nil {
		return err
	}
	if st.Error != "" {
		fmt.Fprintf(os.Stderr, "machinetop: %s\n", st.Error)
	}
	if st.Code == 127 && o.name == "" && cmd.ArgsLenAtDash() < 0 && len(args) > 1 {
		// `run dev ls` ran "dev" in the default machine.
		if _, err := m.Load(args[0]); err == nil {
			fmt.Fprintf(os.Stderr, "machinetop: %s is the name of a machine: to run a command there, %s\n", args[0], nameHint(cmd.Flags(), args[0], args[1:]))
		}
	}
	if st.Code != 0 {
		return &ExitError{Code: st.Code}
	}
	return nil
}

// nameHint words the fix for `run NAME REST...` that ran NAME as the
// command: "--" after the name, and run's own flags (REST's leading
// dashed words, up to a "--") before it.
func nameHint(fs *pflag.FlagSet, name string, rest []string) string {
	i := 0
	for i < len(rest) && strings.HasPrefix(rest[i], "-") && rest[i] != "--" {
		if takesValue(fs, rest[i]) {
			i++ // its value
		}
		i++
	}
	i = min(i, len(rest))
	flags, cmd := rest[:i], rest[i:]
	if len(cmd) > 0 && cmd[0] == "--" {
		cmd = cmd[1:]
	}
	fix := "machinetop machine run "
	if len(flags) > 0 {
		fix += strings.Join(flags, " ") + " "
	}
	fix += name + " -- " + strings.Join(cmd, " ")
	if len(flags) > 0 {
		return "give run's flags before its name and -- after it: " + fix
	}
	return "put -- after its name: " + fix
}

// takesValue reports whether arg ("-w", "--env", not "-e=X") names a flag
// of fs whose value is the next argument.
func takesValue(fs *pflag.FlagSet, arg string) bool {
	if strings.Contains(arg, "=") {
		return false
	}
	var f *pflag.Flag
	if n, ok := strings.CutPrefix(arg, "--"); ok {
		f = fs.Lookup(n)
	} else if len(arg) == 2 {
		f = fs.ShorthandLookup(arg[1:])
	}
	return f != nil && f.NoOptDefVal == ""
}

// guestWorkdir maps the host directory wd to the machine: the same path
// under a shared directory, or "" (the user's home) when no share holds
// it. Symlinks in wd are resolved as the shares' host paths were.
func guestWorkdir(mounts []vm.ActiveMount, wd string) string {
	shares := make([]vm.Mount, len(mounts))
	for i, am := range mounts {
		shares[i] = am.Mount
	}
	if g, ok := vm.GuestDir(shares, wd); ok {
		return g
	}
	if real, err := filepath.EvalSymlinks(wd); err == nil {
		if g, ok := vm.GuestDir(shares, real); ok {
			return g
		}
	}
	return ""
}

// buildEnv reads the --env-file files, then the -e values, into KEY=VALUE
// entries; a later entry for a key wins in the guest. A bare KEY takes
// this host's value and is skipped when the host has none (as `docker
// exec`).
func buildEnv(files, vals []string) ([]string, error) {
	var out []string
	add := func(kv, where string) error {
		k, _, ok := strings.Cut(kv, "=")
		if k == "" || strings.ContainsAny(k, " \t") {
			return fmt.Errorf("%s: %q is not KEY=VALUE", where, kv)
		}
		if !ok {
			v, set := os.LookupEnv(k)
			if !set {
				return nil
			}
			kv = k + "=" + v
		}
		out = append(out, kv)
		return nil
	}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, fmt.Errorf("--env-file: %w", err)
		}
		sc := bufio.NewScanner(fh)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if err := add(line, f+":"+strconv.Itoa(n)); err != nil {
				fh.Close()
				return nil, err
			}
		}
		err = sc.Err()
		fh.Close()
		if err != nil {
			return nil, fmt.Errorf("--env-file %s: %w", f, err)
		}
	}
	for _, v := range vals {
		if err := add(v, "-e"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// runPiped runs req with plain pipes, forwarding SIGINT, SIGTERM and
// SIGHUP to the guest process.
func runPiped(ctx context.Context, cl *client.Client, req *proto.ExecRequest, stdin io.Reader) (proto.ExitStatus, error) {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	p, err := cl.Start(ctx, req, stdin, os.Stdout, os.Stderr)
	if err != nil {
		var se *client.StartError
		if errors.As(err, &se) {
			return se.Status, nil
		}
		return proto.ExitStatus{}, err
	}
	for {
		select {
		case s := <-sigs:
			p.Signal(int(s.(syscall.Signal)))
		case <-p.Done():
			return p.Wait()
		}
	}
}

// runTTY runs req on a PTY in the guest with the local terminal in raw
// mode (when stdin is one), forwarding window size changes (SIGWINCH).
func runTTY(ctx context.Context, cl *client.Client, req *proto.ExecRequest, stdin io.Reader) (proto.ExitStatus, error) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		fd = int(os.Stdout.Fd())
	}
	req.TTY = true
	req.Term = os.Getenv("TERM")
	if w, h, err := term.GetSize(fd); err == nil {
		req.Cols, req.Rows = uint16(w), uint16(h)
	}
	if stdin != nil && term.IsTerminal(int(os.Stdin.Fd())) {
		old, err := term.MakeRaw(int(os.Stdin.Fd()))
		if err != nil {
			return proto.ExitStatus{}, fmt.Errorf("setting the terminal to raw mode: %w", err)
		}
		defer term.Restore(int(os.Stdin.Fd()), old)
	}
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	resize := make(chan proto.WindowSize, 1)
	go func() {
		for range winch {
			if w, h, err := term.GetSize(fd); err == nil {
				select {
				case resize <- proto.WindowSize{Rows: uint16(h), Cols: uint16(w)}:
				default:
				}
			}
		}
	}()
	return cl.Exec(ctx, req, stdin, os.Stdout, nil, resize)
}
