package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/machinetop/machinetop/guest/client"
	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/vm"
)

// cpOptions are `machine cp`'s flags.
type cpOptions struct {
	root  bool
	user  string
	quiet bool
}

func newCpCmd() *cobra.Command {
	var o cpOptions
	c := &cobra.Command{
		Use:   "cp [flags] SRC DST",
		Short: "Copy files or directories between this host and a running machine",
		Long: "Copy a file, symlink or directory tree (recursively) between the host and a running machine,\n" +
			"as `docker cp` does. Exactly one of SRC and DST is in a machine, written NAME:PATH with an\n" +
			"absolute PATH, or :PATH for the default machine; a host path may be relative. The copy goes\n" +
			"over the agent channel (no shared directory needed).\n\n" +
			"When DST is an existing directory the copy lands inside it; otherwise it is created as DST,\n" +
			"whose parent directory must exist. Modes and modification times are kept and symlinks are\n" +
			"copied as symlinks, never followed. In the machine, files are read and written as your user\n" +
			"(the one machinetop mapped), or as root with --root (which also keeps the owners), or as\n" +
			"-u USER. On the host nothing is written outside DST, whatever symlinks the copy holds.\n\n" +
			"Progress shows on a terminal; otherwise one line says what was copied; -q prints nothing.",
		Example: "  machinetop machine cp ./project dev:/home/me/\n" +
			"  machinetop machine cp dev:/var/log/syslog .\n" +
			"  machinetop m cp --root config.toml :/etc/app/config.toml",
		Args: wantArgs(2, 2),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if strings.Contains(toComplete, ":") || len(args) >= 2 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			names := machineNames(toComplete, nil)
			for i := range names {
				names[i] += ":"
			}
			return names, cobra.ShellCompDirectiveNoSpace | cobra.ShellCompDirectiveDefault
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return copyFiles(cmd, args[0], args[1], &o)
		},
	}
	f := c.Flags()
	f.BoolVar(&o.root, "root", false, "read and write in the machine as root, keeping owners")
	f.StringVarP(&o.user, "user", "u", "", "read and write in the machine as `USER` (a name in the machine, UID or UID:GID)")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "print no progress")
	c.RegisterFlagCompletionFunc("user", completeNothing)
	return c
}

// machinePath is one `cp` operand: a machine side (name may be "": the
// default machine) or a host path.
type machinePath struct {
	inMachine bool
	name      string
	path      string
}

// parseCopyArg splits NAME:PATH. A host path with a colon is written with
// a slash before it (./a:b, /x/a:b), as for `docker cp`.
func parseCopyArg(s string) machinePath {
	if strings.HasPrefix(s, "/") || strings.HasPrefix(s, ".") {
		return machinePath{path: s}
	}
	if name, p, ok := strings.Cut(s, ":"); ok && !strings.Contains(name, "/") {
		return machinePath{inMachine: true, name: name, path: p}
	}
	return machinePath{path: s}
}

func (p machinePath) String() string {
	if p.inMachine {
		return p.name + ":" + p.path
	}
	return p.path
}

func copyFiles(cmd *cobra.Command, srcArg, dstArg string, o *cpOptions) error {
	if o.root && o.user != "" {
		return usagef(cmd, "--root and -u both choose the user: give one")
	}
	src, dst := parseCopyArg(srcArg), parseCopyArg(dstArg)
	switch {
	case src.inMachine && dst.inMachine:
		return usagef(cmd, "both %s and %s are in a machine: one side must be a host path (copy through the host in two steps)", srcArg, dstArg)
	case !src.inMachine && !dst.inMachine:
		return usagef(cmd, "neither %s nor %s is in a machine: write the machine side as NAME:PATH (or :PATH for the default machine)", srcArg, dstArg)
	}
	guest := src
	if dst.inMachine {
		guest = dst
	}
	if !path.IsAbs(guest.path) {
		return usagef(cmd, "%s: give an absolute path in the machine, as NAME:/path", guest)
	}
	m, cfg, err := managerFor(cmd, guest.name)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	mc := m.Get(ctx, cfg)
	if mc.State != vm.StateRunning {
		return fmt.Errorf("machine %s is %s: start it with `machinetop machine start %s`", cfg.Name, mc.State, cfg.Name)
	}
	req := proto.CopyRequest{Path: guest.path}
	switch {
	case o.root:
	case o.user != "":
		req.User = o.user
	default:
		req.UID, req.GID = uint32(mc.User.UID), uint32(mc.User.GID)
	}
	guestSide := cfg.Name + ":" + guest.path
	pr := newCopyProgress(os.Stderr, o.quiet)
	cl := m.Agent(cfg)
	if dst.inMachine {
		err = cl.CopyIn(ctx, src.path, req, pr.start, pr.update)
	} else {
		err = cl.CopyOut(ctx, req, dst.path, pr.start, pr.update)
	}
	pr.done(err == nil, srcArg, dstArg)
	if err != nil {
		var ge *client.GuestError
		if errors.As(err, &ge) {
			return fmt.Errorf("in machine %s: %s", guestSide, ge.Msg)
		}
		return fmt.Errorf("on the host: %w", err)
	}
	return nil
}

// copyProgress shows a copy's bytes: redrawn in place on a terminal,
// one summary line otherwise, nothing when quiet.
type copyProgress struct {
	w     io.Writer
	tty   bool
	quiet bool
	total int64
	n     int64
	began time.Time
}

// bigCopy is the size from which a terminal shows progress while copying.
const bigCopy = 8 << 20

func newCopyProgress(w *os.File, quiet bool) *copyProgress {
	return &copyProgress{w: w, quiet: quiet, tty: term.IsTerminal(int(w.Fd())) && os.Getenv("TERM") != "dumb"}
}

func (p *copyProgress) start(total int64) { p.total, p.began = total, time.Now() }

func (p *copyProgress) update(n int64) {
	p.n = n
	if p.quiet || !p.tty || p.total < bigCopy {
		return
	}
	shown := min(n, p.total)
	fmt.Fprintf(p.w, "\r\x1b[Kcopying %s / %s (%d%%)", vm.FormatSize(uint64(shown)), vm.FormatSize(uint64(p.total)), shown*100/max(p.total, 1))
}

func (p *copyProgress) done(ok bool, src, dst string) {
	if p.quiet || p.began.IsZero() {
		return
	}
	if p.tty && p.total >= bigCopy {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
	if !ok {
		return
	}
	secs := time.Since(p.began).Seconds()
	rate := ""
	if secs > 0.05 {
		rate = fmt.Sprintf(", %.1f MiB/s", float64(p.total)/secs/(1<<20))
	}
	fmt.Fprintf(p.w, "copied %s to %s: %s in %.1fs%s\n", src, dst, vm.FormatSize(uint64(p.total)), secs, rate)
}
