package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGuestOOM does what a user did: in a 1 GiB Debian machine, run a
// memory hog until the guest's OOM killer ends it, then run another
// command. The hog's run must report the kill (137, SIGKILL as a shell
// reports it) and the next run must work: the agent is exempt from the
// OOM killer, and would be restarted and reconnected if it were killed.
func TestGuestOOM(t *testing.T) {
	tarball := filepath.Join(shared, "debian.tar")
	if _, err := os.Stat(tarball); err != nil {
		t.Skip("no Debian image: making one needs root (debootstrap); run the tests as root")
	}
	e := newEnv(t)
	e.must("image", "import", tarball, "debian:test")
	e.must("machine", "create", "debian:test", "-n", "oom", "--memory", "1G", "--cpus", "1", "--disk", "4G", "--home-mount", "none")

	out, errs, code := e.mt(nil, "machine", "run", "oom", "--", "tail", "/dev/zero")
	t.Logf("tail /dev/zero: rc=%d stdout %q stderr %q", code, out, errs)
	if code != 137 {
		t.Fatalf("the hog's run exited %d, want 137 (killed by SIGKILL); stderr %q", code, errs)
	}
	out = e.must("machine", "run", "oom", "--", "echo", "alive")
	if strings.TrimSpace(out) != "alive" {
		t.Fatalf("run after the OOM kill: %q", out)
	}
	// The OOM killer chose the hog, not the agent.
	log := e.must("machine", "run", "--root", "oom", "--", "dmesg")
	if !strings.Contains(log, "Killed process") || !strings.Contains(log, "(tail)") {
		t.Fatalf("the guest's kernel log names no OOM kill of tail:\n%s", tail(log, 30))
	}
	if strings.Contains(log, "(agent)") {
		t.Fatalf("the OOM killer killed the agent:\n%s", tail(log, 30))
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
