//go:build linux

package agent

import (
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"sync"

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
	fd  int // open directory, -1 before it is; -1 with off when unusable
	off bool
}

// place makes cmd start in the cgroup (clone3 CLONE_INTO_CGROUP, so the
// command never runs outside it) and reports whether it did. It does
// nothing while the parent is not a cgroup2 mount (an init that has not
// mounted it yet: the next command looks again) or after disable.
func (c *commandCgroup) place(cmd *exec.Cmd) bool {
	if c == nil || c.dir == "" {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.off {
		return false
	}
	if c.fd < 0 {
		var st unix.Statfs_t
		if unix.Statfs(filepath.Dir(c.dir), &st) != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
			return false
		}
		if err := os.Mkdir(c.dir, 0o755); err != nil && !os.IsExist(err) {
			log.Printf("commands stay in the agent's cgroup: %v", err)
			c.off = true
			return false
		}
		fd, err := unix.Open(c.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			log.Printf("commands stay in the agent's cgroup: %v", err)
			c.off = true
			return false
		}
		c.fd = fd
	}
	cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, c.fd
	return true
}

// disable stops placing commands after a start in the cgroup failed
// (a kernel without CLONE_INTO_CGROUP): later commands start as before.
func (c *commandCgroup) disable(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.off {
		log.Printf("starting a command in %s: %v; commands stay in the agent's cgroup from now on", c.dir, err)
		c.off = true
	}
}
