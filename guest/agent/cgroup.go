//go:build linux

package agent

import (
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// CommandCgroup is the cgroup (v2) the guest's agent starts commands in,
// a child of the root apart from the agent's own. Under systemd the agent
// ends up in init.scope, and systemd's OOMPolicy=stop (its default) stops
// the whole unit — the agent and its keeper with it, for good — when the
// kernel's OOM killer kills any process in it: a command that exhausts the
// guest's memory would take the agent down. systemd leaves a cgroup it did
// not make alone.
var CommandCgroup = filepath.Join(CgroupRoot, "machinetop")

// commandCgroup opens dir (creating it) as the cgroup commands start in,
// once cgroup2 is mounted at its parent. It is safe for concurrent use.
type commandCgroup struct {
	dir string
	mu  sync.Mutex
	fd  int  // the open directory; -1 before it is open
	off bool // the cgroup cannot be used: commands stay in the agent's
	// probe is the cgroup's first process (see open); nil means this
	// program with --version.
	probe []string
}

// place makes cmd start in the cgroup (clone3 CLONE_INTO_CGROUP, so the
// command never runs outside it). It does nothing while the parent is not
// a cgroup2 mount (an init that has not mounted it yet: the next command
// looks again) or when the cgroup turned out unusable.
//
// run starts a process and waits for it, as the agent starts commands
// (through its reaper when it is PID 1): place uses it for the cgroup's
// first process (see open).
func (c *commandCgroup) place(cmd *exec.Cmd, run func(*exec.Cmd) error) {
	if c == nil || c.dir == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.off {
		return
	}
	if c.fd < 0 {
		var st unix.Statfs_t
		if unix.Statfs(filepath.Dir(c.dir), &st) != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
			return
		}
		fd, err := c.open(run)
		if err != nil {
			log.Printf("commands stay in the agent's cgroup: %v", err)
			c.off = true
			return
		}
		c.fd = fd
	}
	cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, c.fd
}

// open creates and opens the cgroup, and starts this program with
// --version in it once: a start that fails there (a kernel without
// CLONE_INTO_CGROUP) must not be mistaken for a command's own failure.
func (c *commandCgroup) open(run func(*exec.Cmd) error) (int, error) {
	if err := os.Mkdir(c.dir, 0o755); err != nil && !os.IsExist(err) {
		return -1, err
	}
	fd, err := unix.Open(c.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	argv := c.probe
	if argv == nil {
		argv = []string{"/proc/self/exe", "--version"}
	}
	probe := exec.Command(argv[0], argv[1:]...)
	probe.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	if err := run(probe); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("starting a process in %s: %w", c.dir, err)
	}
	return fd, nil
}
