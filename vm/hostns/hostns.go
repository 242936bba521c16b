//go:build linux

// Package hostns starts a host process — the file server of a machine's
// shared directories (virtiofsd, or QEMU for 9p) — in a mount namespace of
// its own in which machinetop's own directories are covered by an empty
// read-only tmpfs, so that a machine cannot see them through a share even
// as root: the guest can only ask that process for files, and that
// process cannot see them. Nothing in the guest can undo it.
//
// Namespaces must be made before the process starts, so Start re-executes
// the running binary (/proc/self/exe) as a small helper, `machinetop
// __hide-exec` (Command; the binary's main must hand it to Main), in new
// namespaces made by clone(2): a mount namespace for root, a user and a
// mount namespace for an ordinary user (unprivileged user namespaces, with
// the user's own uid and gid mapped to themselves, so the file server sees
// the same owners as the host). The helper mounts, drops every
// capability it had, and executes the real program in the same process
// (same pid, same open files). The caller's own namespaces are untouched.
package hostns

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/machinetop/machinetop/vm/layout"
)

// Command is the hidden subcommand that runs the helper: `machinetop
// __hide-exec [--status-fd N] [--pin DIR]... [--hide DIR]... [--ro DIR]...
// -- PROGRAM ARG...`.
const Command = "__hide-exec"

// Share is a directory the started process serves to a machine.
type Share struct {
	Path     string // absolute host path
	ReadOnly bool   // made read-only in the namespace (virtiofsd has no read-only mode)
}

// Plan is what the helper mounts, in this order, before it executes the
// program.
type Plan struct {
	// Pin are directories bind-mounted onto themselves: a mount point
	// cannot be renamed or removed (EBUSY), so a guest cannot move a
	// hidden directory's parents away and put its own in their place.
	Pin []string
	// Hide are directories covered by an empty read-only tmpfs.
	Hide []string
	// ReadOnly are directories made read-only, with everything mounted
	// below them (a recursive read-only bind mount).
	ReadOnly []string
	// Root runs the program as uid and gid 0 of its user namespace, with
	// every capability there, for a file server that creates files as
	// the guest's users (virtiofsd): the user's own uid and gid are
	// mapped to themselves and every other id below 65536 to the user's
	// subordinate ids (/etc/subuid and /etc/subgid, mapped by newuidmap
	// and newgidmap), so a file the guest's user makes is the host
	// user's, and one guest root makes belongs to the user's first
	// subordinate uid, as with rootless containers. CanRunAsRoot says
	// whether it can be done. Ignored when machinetop runs as root.
	Root bool
}

// Empty reports whether p asks for nothing (Start then starts the program
// as it is).
func (p Plan) Empty() bool {
	return len(p.Pin)+len(p.Hide)+len(p.ReadOnly) == 0 && (!p.Root || os.Geteuid() == 0)
}

// PlanFor returns the plan for a process serving shares: every hidden
// directory (layout.Data.Hidden) that lies inside a share is covered, the
// directories between that share and it are pinned, and read-only shares
// are made read-only. Paths are compared with symbolic links resolved. It
// returns an error for a share that is, or lies inside, a hidden
// directory: covering it would leave nothing to share.
func PlanFor(shares []Share, hidden []string) (Plan, error) {
	var p Plan
	seen := map[string]bool{}
	add := func(list *[]string, d string) {
		if !seen[d] {
			seen[d] = true
			*list = append(*list, d)
		}
	}
	for _, s := range shares {
		sp, err := filepath.EvalSymlinks(s.Path)
		if err != nil {
			return Plan{}, fmt.Errorf("shared directory %s: %w", s.Path, err)
		}
		for _, h := range hidden {
			if layout.Contains(h, sp) {
				return Plan{}, fmt.Errorf("shared directory %s is machinetop's own %s: share another directory", s.Path, h)
			}
			if !layout.Contains(sp, h) {
				continue
			}
			rel, _ := filepath.Rel(sp, h)
			dir := sp
			parts := strings.Split(rel, "/")
			for _, part := range parts[:len(parts)-1] {
				dir = filepath.Join(dir, part)
				add(&p.Pin, dir)
			}
			add(&p.Hide, h)
		}
		if s.ReadOnly {
			p.ReadOnly = append(p.ReadOnly, sp)
		}
	}
	return p, nil
}

// args renders p as the helper's options.
func (p Plan) args() []string {
	var a []string
	for _, d := range p.Pin {
		a = append(a, "--pin", d)
	}
	for _, d := range p.Hide {
		a = append(a, "--hide", d)
	}
	for _, d := range p.ReadOnly {
		a = append(a, "--ro", d)
	}
	return a
}

// Start starts cmd (built as for cmd.Start: Path, Args, Env, ExtraFiles,
// Stdout, Stderr, SysProcAttr) with the mounts of p in namespaces of its
// own, and returns once the program itself runs (or the helper failed).
// File descriptors of ExtraFiles keep their numbers (3, 4, ...); the
// program's pid is cmd.Process.Pid. An empty plan starts cmd as it is.
//
// Errors: the helper's own (a mount that failed), or the kernel's refusal
// of an unprivileged user namespace, each with what to do about it. On
// error no process is left running.
func Start(cmd *exec.Cmd, p Plan) error {
	if p.Empty() {
		return cmd.Start()
	}
	prog := filepath.Base(cmd.Path)
	unprivileged := os.Geteuid() != 0
	asRoot := unprivileged && p.Root
	var maps idMaps
	if asRoot {
		var err error
		if maps, err = rootMaps(); err != nil {
			return fmt.Errorf("running %s as root of a user namespace: %w", prog, err)
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	defer w.Close()
	opts := []string{"--status-fd", strconv.Itoa(3 + len(cmd.ExtraFiles))}
	cmd.ExtraFiles = append(cmd.ExtraFiles, w)
	var mapped *os.File // written once the helper's id maps are made
	if asRoot {
		mr, mw, err := os.Pipe()
		if err != nil {
			return err
		}
		defer mr.Close()
		defer mw.Close()
		mapped = mw
		opts = append(opts, "--wait-fd", strconv.Itoa(3+len(cmd.ExtraFiles)))
		cmd.ExtraFiles = append(cmd.ExtraFiles, mr)
	}
	args := append([]string{"machinetop", Command}, opts...)
	args = append(args, p.args()...)
	args = append(args, "--", cmd.Path)
	args = append(args, cmd.Args[1:]...)
	cmd.Path, cmd.Args = "/proc/self/exe", args

	attr := &syscall.SysProcAttr{}
	if cmd.SysProcAttr != nil {
		*attr = *cmd.SysProcAttr
	}
	attr.Cloneflags |= unix.CLONE_NEWNS
	switch {
	case asRoot:
		// Only newuidmap and newgidmap may map subordinate ids, and only
		// into a process that exists: they run from here once the helper
		// runs. Until then the helper keeps, as ambient capabilities,
		// all that its new namespace gave it (it is no uid of the
		// namespace yet), and waits on the pipe.
		attr.Cloneflags |= unix.CLONE_NEWUSER
		attr.AmbientCaps = allCaps()
	case unprivileged:
		// The user's own ids, mapped to themselves: files keep their
		// owners as the file server sees them. CAP_SYS_ADMIN in the new
		// namespace survives the helper's exec as an ambient capability
		// (the helper is not uid 0 there), for the mounts; the helper
		// drops it before it executes the program.
		attr.Cloneflags |= unix.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: os.Geteuid(), HostID: os.Geteuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: os.Getegid(), HostID: os.Getegid(), Size: 1}}
		attr.GidMappingsEnableSetgroups = false
		attr.AmbientCaps = []uintptr{unix.CAP_SYS_ADMIN}
	}
	cmd.SysProcAttr = attr
	err = cmd.Start()
	w.Close()
	if err != nil {
		if unprivileged {
			return fmt.Errorf("making a user namespace to hide machinetop's own files from the machine: %w; %s", err, userNSHelp)
		}
		return err
	}
	if mapped != nil {
		if err = writeMaps(cmd.Process.Pid, maps); err == nil {
			_, err = mapped.Write([]byte{1})
		}
		mapped.Close()
		if err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return fmt.Errorf("mapping ids into the user namespace of %s: %w", prog, err)
		}
	}
	// The status pipe is close-on-exec in the helper: EOF with nothing
	// written means the program runs.
	msg, _ := io.ReadAll(io.LimitReader(r, 4096))
	if len(msg) == 0 {
		return nil
	}
	cmd.Wait()
	err = errors.New(string(bytes.TrimSpace(msg)))
	if unprivileged {
		return fmt.Errorf("%w; %s", err, userNSHelp)
	}
	return err
}

// allCaps lists every capability this kernel has
// (/proc/sys/kernel/cap_last_cap; CAP_LAST_CAP of Linux 5.9 when it
// cannot be read).
func allCaps() []uintptr {
	last := unix.CAP_CHECKPOINT_RESTORE
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			last = n
		}
	}
	caps := make([]uintptr, 0, last+1)
	for c := 0; c <= last; c++ {
		caps = append(caps, uintptr(c))
	}
	return caps
}

// userNSHelp says what to do when unprivileged user namespaces are not
// available.
const userNSHelp = "machinetop needs unprivileged user namespaces to hide its data directory from machines that share a directory containing it " +
	"(Debian: sysctl kernel.unprivileged_userns_clone=1; everywhere: user.max_user_namespaces > 0; Ubuntu: an AppArmor profile allowing userns for machinetop), " +
	"or keep the data directory out of every shared directory (MACHINETOP_HOME=/elsewhere, or --home-mount none with --mount for the directories you need)"
