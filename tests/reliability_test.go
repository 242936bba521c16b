package tests

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestFullDisk fills a machine's root disk from inside, as a user might:
// the machine must still restart (booting needs no free space), and
// `machine set disk=` grows the disk, which the guest's filesystem follows
// at the next boot, so the user can carry on.
func TestFullDisk(t *testing.T) {
	e := newEnv(t)
	e.must("image", "import", filepath.Join(shared, "busybox.tar"), "busybox:test")
	e.must("machine", "create", "busybox:test", "-n", "full", "--disk", "1G", "--memory", "256M", "--cpus", "1", "--home-mount", "none")
	_, errs, code := e.mt(nil, "machine", "run", "--root", "full", "--", "dd", "if=/dev/zero", "of=/bigfile", "bs=1M")
	if code == 0 || !strings.Contains(errs, "No space left") {
		t.Fatalf("filling the disk: rc=%d, stderr %q; want dd to fail with no space left", code, errs)
	}
	avail := func() (size, free int) {
		t.Helper()
		out := e.must("machine", "run", "--root", "full", "--", "df", "-k", "/")
		f := strings.Fields(lastLines(out, 1))
		if len(f) < 4 {
			t.Fatalf("df: %q", out)
		}
		size, _ = strconv.Atoi(f[1])
		free, _ = strconv.Atoi(f[3])
		return size, free
	}
	size0, free0 := avail()
	if free0 > 1024 {
		t.Fatalf("%d KiB still free after dd filled the disk", free0)
	}
	e.must("machine", "restart", "full")
	if out := e.must("machine", "run", "full", "--", "echo", "booted"); strings.TrimSpace(out) != "booted" {
		t.Fatalf("after a restart with a full disk: %q", out)
	}
	e.must("machine", "set", "full", "disk=2G")
	if _, errs, code := e.mt(nil, "machine", "set", "full", "disk=1G"); code == 0 || !strings.Contains(errs, "shrink") {
		t.Fatalf("shrinking the disk: rc=%d, stderr %q; want a refusal", code, errs)
	}
	e.must("machine", "restart", "full")
	size1, free1 := avail()
	if size1 < size0+800*1024 || free1 < 800*1024 {
		t.Fatalf("after disk=2G and a restart: %d KiB, %d free (was %d KiB, %d free)", size1, free1, size0, free0)
	}
	if got := e.must("machine", "inspect", "-f", "{{.DiskBytes}}", "full"); strings.TrimSpace(got) != "2147483648" {
		t.Fatalf("inspect DiskBytes %q, want 2147483648", got)
	}
	e.must("machine", "run", "--root", "full", "--", "rm", "/bigfile")
}

// testGuestOOM does what a user did in a 1 GiB machine whose init is
// systemd: run a memory hog until the guest's OOM killer ends it, then run
// another command. The hog's run reports the kill (137, SIGKILL as a shell
// reports it) and the next run works at once: the agent is exempt from the
// OOM killer, and its commands run in a cgroup of their own, so systemd does
// not stop init.scope — the agent with it — over the kill (OOMPolicy=stop).
func testGuestOOM(t *testing.T, e *env, name string) {
	out, errs, code := e.mt(nil, "machine", "run", name, "--", "tail", "/dev/zero")
	t.Logf("tail /dev/zero: rc=%d stdout %q stderr %q", code, out, errs)
	if code != 137 {
		t.Fatalf("the hog's run exited %d, want 137 (killed by SIGKILL); stderr %q", code, errs)
	}
	if out := e.mustRun(name, "echo", "alive"); strings.TrimSpace(out) != "alive" {
		t.Fatalf("run after the OOM kill: %q", out)
	}
	log := e.mustRun(name, "dmesg")
	if !strings.Contains(log, "Killed process") || !strings.Contains(log, "(tail)") {
		t.Fatalf("the guest's kernel log names no OOM kill of tail:\n%s", lastLines(log, 30))
	}
	if cg := e.mustRun(name, "cat", "/proc/self/cgroup"); strings.TrimSpace(cg) != "0::/machinetop" {
		t.Errorf("a command's cgroup is %q, want 0::/machinetop", cg)
	}
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
