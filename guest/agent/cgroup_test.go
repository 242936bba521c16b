//go:build linux

package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/machinetop/machinetop/guest/proto"
)

// Commands start in the command cgroup once its parent is a cgroup2
// mount, a command that is not found does not turn that off, and while
// the parent is no cgroup2 mount commands start as before. It mounts a
// cgroup2 hierarchy of its own (root only).
func TestCommandsStartInTheirCgroup(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("mounting cgroup2 needs root")
	}
	root := t.TempDir()
	ta := newTestAgent(t)
	ta.srv.cgroupOnce.Do(func() {
		ta.srv.cgroup = &commandCgroup{dir: filepath.Join(root, "machinetop"), fd: -1, probe: []string{"true"}}
	})
	c, _ := ta.connect(t)
	// Not mounted yet: the command runs where the agent runs.
	own, _ := os.ReadFile("/proc/self/cgroup")
	st, out, _ := run(t, c, &proto.ExecRequest{Argv: []string{"cat", "/proc/self/cgroup"}}, nil)
	if st.Code != 0 || out != string(own) {
		t.Fatalf("before cgroup2 is mounted: %+v, cgroup %q, want the agent's %q", st, out, own)
	}
	if err := unix.Mount("none", root, "cgroup2", 0, ""); err != nil {
		t.Skipf("mounting cgroup2: %v", err)
	}
	t.Cleanup(func() {
		os.Remove(filepath.Join(root, "machinetop"))
		unix.Unmount(root, unix.MNT_DETACH)
	})
	if st, _, _ := run(t, c, &proto.ExecRequest{Argv: []string{"/no/such/command"}}, nil); st.Code != 127 {
		t.Fatalf("a missing command: %+v, want 127", st)
	}
	st, out, _ = run(t, c, &proto.ExecRequest{Argv: []string{"cat", "/proc/self/cgroup"}}, nil)
	if st.Code != 0 || !strings.Contains(out, "0::/machinetop\n") {
		t.Fatalf("after cgroup2 is mounted: %+v, cgroup %q, want 0::/machinetop", st, out)
	}
}
