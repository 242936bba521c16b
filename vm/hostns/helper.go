//go:build linux

package hostns

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/machinetop/machinetop/vm/layout"
)

// Main is the helper (Command): it runs in the namespaces Start made,
// mounts what args say, drops its capabilities and executes the program.
// It returns only on failure (exit status 1), after writing the reason to
// the status descriptor (or stderr).
func Main(args []string) int {
	status := os.Stderr
	fail := func(err error) int {
		fmt.Fprintf(status, "hiding machinetop's files from the machine: %v\n", err)
		return 1
	}
	var p Plan
	var prog []string
	waitFD := -1
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			prog = args[i+1:]
			break
		}
		if i+1 >= len(args) {
			return fail(fmt.Errorf("%s: option %s needs a value", Command, a))
		}
		v := args[i+1]
		i++
		switch a {
		case "--status-fd":
			fd, err := strconv.Atoi(v)
			if err != nil || fd < 3 {
				return fail(fmt.Errorf("%s: bad --status-fd %q", Command, v))
			}
			unix.CloseOnExec(fd)
			status = os.NewFile(uintptr(fd), "status")
		case "--wait-fd":
			fd, err := strconv.Atoi(v)
			if err != nil || fd < 3 {
				return fail(fmt.Errorf("%s: bad --wait-fd %q", Command, v))
			}
			waitFD = fd
		case "--pin":
			p.Pin = append(p.Pin, v)
		case "--hide":
			p.Hide = append(p.Hide, v)
		case "--ro":
			p.ReadOnly = append(p.ReadOnly, v)
		default:
			return fail(fmt.Errorf("%s: unknown option %s", Command, a))
		}
	}
	if len(prog) == 0 {
		return fail(fmt.Errorf("%s: no program given after --", Command))
	}
	if waitFD >= 0 {
		if err := becomeRoot(waitFD); err != nil {
			return fail(err)
		}
	}
	if err := mountPlan(p); err != nil {
		return fail(err)
	}
	// Nothing the program does needs a capability it got from us: an
	// ordinary user's program runs with none (it is not uid 0 in its user
	// namespace, and no ambient capability is left), and no setuid
	// program can give it more. With Plan.Root the program is uid 0 of
	// its namespace and has the capabilities uid 0 has there, and no
	// more.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fail(fmt.Errorf("no_new_privs: %w", err))
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fail(fmt.Errorf("dropping ambient capabilities: %w", err))
	}
	err := unix.Exec(prog[0], prog, os.Environ())
	return fail(fmt.Errorf("executing %s: %w", prog[0], err))
}

// becomeRoot waits until Start has mapped this process's user namespace
// (one byte on fd; EOF means it could not) and becomes its uid and gid 0,
// with no supplementary groups.
func becomeRoot(fd int) error {
	f := os.NewFile(uintptr(fd), "mapped")
	defer f.Close()
	if n, _ := f.Read(make([]byte, 1)); n != 1 {
		return errors.New("the user namespace's id maps were not made")
	}
	if err := unix.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := unix.Setresgid(0, 0, 0); err != nil {
		return fmt.Errorf("becoming gid 0 of the user namespace: %w", err)
	}
	if err := unix.Setresuid(0, 0, 0); err != nil {
		return fmt.Errorf("becoming uid 0 of the user namespace: %w", err)
	}
	return nil
}

// mountPlan makes p's mounts in the current mount namespace, after
// turning it into a slave of the one it was copied from: mounts made here
// never reach the host, and the host's unmounts still reach here.
func mountPlan(p Plan) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	for _, d := range p.Pin {
		if err := unix.Mount(d, d, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("pinning %s: %w", d, err)
		}
	}
	for _, d := range p.Hide {
		flags := uintptr(unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
		if err := unix.Mount("machinetop-hidden", d, "tmpfs", flags, "size=4k,mode=0500"); err != nil {
			return fmt.Errorf("covering %s: %w", d, err)
		}
	}
	for _, d := range p.ReadOnly {
		if err := readOnly(d, p.Pin); err != nil {
			return err
		}
	}
	return nil
}

// readOnly makes dir and everything mounted below it read-only: a
// recursive bind mount of dir onto itself, then the read-only attribute
// on the whole tree (mount_setattr(2), Linux 5.12; before that, read-only
// remounts of dir's own mount and of the pins below it).
func readOnly(dir string, pins []string) error {
	if err := unix.Mount(dir, dir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind mount of %s: %w", dir, err)
	}
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	if err := unix.MountSetattr(-1, dir, unix.AT_RECURSIVE, attr); err != nil {
		for _, d := range append([]string{dir}, pins...) {
			if !layout.Contains(dir, d) {
				continue
			}
			if err := unix.Mount("", d, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
				return fmt.Errorf("read-only remount of %s: %w", d, err)
			}
		}
	}
	return nil
}
