package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMachines is the machine lifecycle suite, run as the current user.
func TestMachines(t *testing.T) {
	e := newEnv(t)
	e.must("image", "import", filepath.Join(shared, "busybox.tar"), "busybox:test")
	t.Run("BadInput", func(t *testing.T) { testBadInput(t, e) })
	t.Run("Busybox", func(t *testing.T) {
		testLifecycle(t, e, "busybox:test", "bb", false)
	})
	t.Run("Debian", func(t *testing.T) {
		tarball := filepath.Join(shared, "debian.tar")
		if _, err := os.Stat(tarball); err != nil {
			t.Skip("no Debian image: making one needs root (debootstrap); run the tests as root")
		}
		e.must("image", "import", tarball, "debian:test")
		testLifecycle(t, e, "debian:test", "deb", true)
	})
}

// TestAsOrdinaryUser re-runs TestMachines as an ordinary user (no root, no
// sudo) that it creates, when the tests run as root.
func TestAsOrdinaryUser(t *testing.T) {
	if os.Getenv(envChild) != "" {
		t.Skip("already the ordinary-user pass")
	}
	if os.Getuid() != 0 {
		t.Skip("running as an ordinary user already: TestMachines covers it")
	}
	const user = "mtuser"
	if _, err := exec.Command("id", user).Output(); err != nil {
		if b, err := exec.Command("useradd", "-m", "-s", "/bin/sh", user).CombinedOutput(); err != nil {
			t.Fatalf("useradd: %v: %s", err, b)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	testBin := filepath.Join(shared, "bin", "e2e.test")
	if b, err := exec.Command("cp", self, testBin).CombinedOutput(); err != nil {
		t.Fatalf("copy test binary: %v: %s", err, b)
	}
	os.Chmod(testBin, 0o755)
	home := "/home/" + user
	args := []string{"--reuid=" + user, "--regid=" + user, "--init-groups", "--",
		testBin, "-test.run", "^TestMachines$", "-test.v", "-test.timeout", "40m"}
	cmd := exec.Command("setpriv", args...)
	cmd.Dir = home
	cmd.Env = []string{"HOME=" + home, "USER=" + user, "LOGNAME=" + user,
		"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
		envShared + "=" + shared, envChild + "=1"}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("the ordinary-user pass failed: %v", err)
	}
}

func testBadInput(t *testing.T, e *env) {
	before := e.must("machine", "ls", "-q")
	e.fails("invalid machine name", "machine", "create", "busybox:test", "-n", "Foo", "--no-boot")
	e.fails("invalid machine name", "machine", "create", "busybox:test", "-n", "../x", "--no-boot")
	e.fails("limit is 57", "machine", "create", "busybox:test", "-n", strings.Repeat("a", 58), "--no-boot")
	e.fails("nosuch", "machine", "create", "nosuch:image", "--no-boot")
	e.fails("more than this host", "machine", "create", "busybox:test", "--memory", "100T", "--no-boot")
	e.fails("invalid size", "machine", "create", "busybox:test", "--memory", "lots", "--no-boot")

	corrupt := filepath.Join(t.TempDir(), "corrupt.tar")
	os.WriteFile(corrupt, []byte("this is not a tarball at all"), 0o644)
	imagesBefore := e.must("image", "ls", "-q")
	e.fails("corrupt.tar", "image", "import", corrupt, "corrupt:test")
	if got := e.must("image", "ls", "-q"); got != imagesBefore {
		t.Fatalf("a failed import changed the store:\nbefore %q\nafter  %q", imagesBefore, got)
	}
	if got := e.must("machine", "ls", "-q"); got != before {
		t.Fatalf("failed creates left machines behind: %q", got)
	}

	// Two concurrent creates of one name: exactly one wins.
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, codes[i] = e.mt(nil, "machine", "create", "busybox:test", "-n", "race", "--no-boot")
		}()
	}
	wg.Wait()
	if (codes[0] == 0) == (codes[1] == 0) {
		t.Fatalf("concurrent creates of one name: exit codes %v, want exactly one success", codes)
	}
	e.fails("already exists", "machine", "create", "busybox:test", "-n", "race", "--no-boot")
	e.must("machine", "rm", "race")
	leftovers, _ := filepath.Glob(filepath.Join(e.data, "machines", ".*-*"))
	if len(leftovers) > 0 {
		t.Fatalf("half-made machines left behind: %v", leftovers)
	}
}

// run runs a command in machine name and returns stdout, stderr, status.
func (e *env) run(name string, stdin string, argv ...string) (string, string, int) {
	args := append([]string{"machine", "run", "-n", name, "--"}, argv...)
	return e.mt(strings.NewReader(stdin), args...)
}

func (e *env) mustRun(name string, argv ...string) string {
	e.t.Helper()
	out, errs, code := e.run(name, "", argv...)
	if code != 0 {
		e.t.Fatalf("run %v in %s: exit %d\nstdout: %s\nstderr: %s", argv, name, code, out, errs)
	}
	return out
}

type machineJSON struct {
	Name        string `json:"name"`
	Status      string `json:"status"`
	IP          string `json:"ipAddress"`
	CPUs        int    `json:"cpus"`
	Memory      uint64 `json:"memory"`
	Dir         string `json:"dir"`
	Supervisor  int    `json:"supervisorPid"`
	VM          int    `json:"vmPid"`
	Default     bool   `json:"default"`
	ImageDigest string `json:"imageDigest"`
}

func (e *env) inspect(name string) machineJSON {
	e.t.Helper()
	var m machineJSON
	if err := json.Unmarshal([]byte(e.must("machine", "inspect", name)), &m); err != nil {
		e.t.Fatal(err)
	}
	return m
}

func testLifecycle(t *testing.T, e *env, image, name string, systemd bool) {
	start := time.Now()
	if out := e.must("machine", "create", image, "-n", name, "--cpus", "1", "--memory", "1G"); strings.TrimSpace(out) != name {
		t.Fatalf("create printed %q, want the name %q", out, name)
	}
	t.Logf("create + first boot: %v", time.Since(start).Round(time.Millisecond))
	m := e.inspect(name)
	if m.Status != "running" || m.CPUs != 1 || m.Memory != 1<<30 {
		t.Fatalf("inspect after create: %+v", m)
	}
	ls := e.must("machine", "ls")
	if !strings.Contains(ls, name) || !strings.Contains(ls, "running") || !strings.Contains(ls, "10.0.2.15") {
		t.Fatalf("machine ls does not show %s running with its IP:\n%s", name, ls)
	}

	// Exit status, stdout and stderr kept apart.
	out, errs, code := e.run(name, "", "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 7")
	if code != 7 || out != "to-stdout\n" || errs != "to-stderr\n" {
		t.Fatalf("run: code %d stdout %q stderr %q", code, out, errs)
	}
	if out := e.mustRun(name, "uname", "-sr"); !strings.HasPrefix(out, "Linux ") {
		t.Fatalf("uname -sr: %q", out)
	}
	// A process killed by a signal reports 128+signal, as shells do.
	if _, _, code := e.run(name, "", "sh", "-c", "kill -9 $$"); code != 137 {
		t.Fatalf("killed process: exit %d, want 137", code)
	}
	// stdin is piped through.
	if out, errs, code := e.run(name, "hi\n", "cat"); code != 0 || out != "hi\n" {
		t.Fatalf("echo hi | run cat: code %d out %q err %q", code, out, errs)
	}
	if out := e.mustRun(name, "hostname"); strings.TrimSpace(out) != name {
		t.Fatalf("hostname is %q, want %q", out, name)
	}
	if systemd {
		// The agent answers before systemd has opened its bus; wait for
		// the bus, then let systemctl wait for boot to finish.
		out, _, _ := e.run(name, "", "sh", "-c",
			"for i in $(seq 600); do [ -S /run/systemd/private ] && break; sleep 0.1; done; systemctl is-system-running --wait")
		if s := strings.TrimSpace(out); s != "running" && s != "degraded" {
			failed, _, _ := e.run(name, "", "systemctl", "--failed", "--no-pager")
			t.Fatalf("systemctl is-system-running: %q\n%s", s, failed)
		}
		if out := e.mustRun(name, "cat", "/proc/1/comm"); strings.TrimSpace(out) != "systemd" {
			t.Fatalf("PID 1 is %q, want systemd", out)
		}
	}

	// Image fixtures kept: setuid bit, hard links on one inode.
	if out := e.mustRun(name, "stat", "-c", "%a %u", "/usr/local/bin/suid-fixture"); strings.TrimSpace(out) != "4755 0" {
		t.Fatalf("setuid fixture mode/owner: %q, want 4755 0", out)
	}
	ino := e.mustRun(name, "sh", "-c", "stat -c %i /usr/local/bin/hardlink-a /usr/local/bin/hardlink-b")
	if f := strings.Fields(ino); len(f) != 2 || f[0] != f[1] {
		t.Fatalf("hard links are not one inode: %q", ino)
	}

	// Data survives restart and stop+start.
	e.mustRun(name, "sh", "-c", "echo kept-across-boots > /root/persist.txt && sync")
	e.must("machine", "restart", name)
	if out := e.mustRun(name, "cat", "/root/persist.txt"); out != "kept-across-boots\n" {
		t.Fatalf("after restart: %q", out)
	}
	e.must("machine", "stop", name)
	if m := e.inspect(name); m.Status != "stopped" {
		t.Fatalf("after stop: %s", m.Status)
	}
	checkDisk(t, filepath.Join(m.Dir, "disk.img"))
	e.must("machine", "start", name)
	if out := e.mustRun(name, "cat", "/root/persist.txt"); out != "kept-across-boots\n" {
		t.Fatalf("after stop+start: %q", out)
	}

	// Killing the supervisor leaves the VM running and usable: a new
	// supervisor adopts QEMU and reconnects to the agent over the same
	// virtio-serial channel. Break that connection several times.
	for i := range 5 {
		sup := e.inspect(name).Supervisor
		if sup <= 0 {
			t.Fatalf("inspect shows no supervisor pid")
		}
		syscall.Kill(sup, syscall.SIGKILL)
		time.Sleep(100 * time.Millisecond)
		if m := e.inspect(name); m.Status != "running" {
			t.Fatalf("after killing the supervisor (round %d): %s, want running", i, m.Status)
		}
		if out := e.mustRun(name, "cat", "/root/persist.txt"); out != "kept-across-boots\n" {
			t.Fatalf("after killing the supervisor (round %d): %q", i, out)
		}
	}
	// Killing QEMU marks the machine stopped; it starts again cleanly.
	qemu := e.inspect(name).VM
	if qemu <= 0 {
		t.Fatalf("inspect shows no VM pid")
	}
	syscall.Kill(qemu, syscall.SIGKILL)
	waitState(t, e, name, "stopped")
	e.must("machine", "start", name)
	if out := e.mustRun(name, "cat", "/root/persist.txt"); out != "kept-across-boots\n" {
		t.Fatalf("after killing QEMU and starting again: %q", out)
	}
	e.must("machine", "stop", name)
	checkDisk(t, filepath.Join(m.Dir, "disk.img"))

	e.must("machine", "rm", name)
	if _, err := os.Stat(m.Dir); !os.IsNotExist(err) {
		t.Fatalf("machine directory still there after rm: %v", err)
	}
}

// checkDisk runs e2fsck -fn on a stopped machine's disk and checks with
// debugfs that the capability fixture kept its security.capability xattr.
func checkDisk(t *testing.T, disk string) {
	t.Helper()
	out, err := exec.Command(tool("e2fsck"), "-fn", disk).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck -fn %s: %v\n%s", disk, err, out)
	}
	out, err = exec.Command(tool("debugfs"), "-R", "ea_list /usr/local/bin/cap-fixture", disk).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "security.capability") {
		t.Fatalf("cap-fixture lost its security.capability xattr: %v\n%s", err, out)
	}
}

func tool(name string) string {
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		if _, err := os.Stat(filepath.Join(d, name)); err == nil {
			return filepath.Join(d, name)
		}
	}
	return name
}

func waitState(t *testing.T, e *env, name, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := e.inspect(name)
		if m.Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %s, want %s", name, m.Status, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
