package tests

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/machinetop/machinetop/vm/qemu"
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
		if os.Getuid() != 0 {
			// An ordinary user's shares are virtio-fs where subordinate
			// ids exist (the busybox machine), else 9p: the Debian
			// machine takes 9p, so that both paths are tested.
			e.extra = append(e.extra, "MACHINETOP_SHARE_FS=9p")
			defer func() { e.extra = e.extra[:len(e.extra)-1] }()
		}
		e.must("image", "import", tarball, "debian:test")
		testLifecycle(t, e, "debian:test", "deb", true)
	})
}

// shareFS is the filesystem e's machines get their shares over, as the
// QEMU backend chooses it (vm/qemu ShareFS).
func (e *env) shareFS() string {
	for _, kv := range e.extra {
		if kv == "MACHINETOP_SHARE_FS=9p" {
			return "9p"
		}
	}
	return (&qemu.Backend{}).ShareFS()
}

// TestAsOrdinaryUser re-runs TestMachines as an ordinary user (no root, no
// sudo) that it creates, when the tests run as root.
func TestAsOrdinaryUser(t *testing.T) { asOrdinaryUser(t, "^TestMachines$") }

// asOrdinaryUser runs the tests matching pattern again as an ordinary
// user (no root, no sudo) that it creates, when the tests run as root.
func asOrdinaryUser(t *testing.T, pattern string) {
	if os.Getenv(envChild) != "" {
		t.Skip("already the ordinary-user pass")
	}
	if os.Getuid() != 0 {
		t.Skip("running as an ordinary user already: the tests ran as that user")
	}
	runAsOrdinaryUser(t, pattern)
}

// runAsOrdinaryUser runs the tests matching pattern in this test binary as
// the ordinary user mtuser (created when missing, with the subordinate ids
// useradd gives), with the shared binaries and images; the caller runs as
// root.
func runAsOrdinaryUser(t *testing.T, pattern string, env ...string) {
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
		testBin, "-test.run", pattern, "-test.v", "-test.timeout", "40m"}
	cmd := exec.Command("setpriv", args...)
	cmd.Dir = home
	cmd.Env = append([]string{"HOME=" + home, "USER=" + user, "LOGNAME=" + user,
		"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
		envShared + "=" + shared, envChild + "=1"}, env...)
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

	// Shared directories are checked at create time.
	e.fails("does not exist", "machine", "create", "busybox:test", "--mount", "/nonexistent/dir", "--no-boot")
	e.fails("relative", "machine", "create", "busybox:test", "--mount", e.home+":rel/path", "--no-boot")
	e.fails("/proc", "machine", "create", "busybox:test", "--mount", e.home+":/proc/x", "--no-boot")
	e.fails("home-mount", "machine", "create", "busybox:test", "--home-mount", "sometimes", "--no-boot")

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

// run runs a command as root in machine name and returns stdout, stderr,
// status.
func (e *env) run(name string, stdin string, argv ...string) (string, string, int) {
	args := append([]string{"machine", "run", "-n", name, "--root", "--"}, argv...)
	return e.mt(strings.NewReader(stdin), args...)
}

// runUser runs a command as the mapped user (machine run's default) with
// machinetop's working directory dir ("" for the test's).
func (e *env) runUser(name, dir string, argv ...string) (string, string, int) {
	e.dir = dir
	defer func() { e.dir = "" }()
	args := append([]string{"machine", "run", "-n", name, "--"}, argv...)
	return e.mt(nil, args...)
}

func (e *env) mustRunUser(name, dir string, argv ...string) string {
	e.t.Helper()
	out, errs, code := e.runUser(name, dir, argv...)
	if code != 0 {
		e.t.Fatalf("run %v in %s (as the user, from %q): exit %d\nstdout: %s\nstderr: %s", argv, name, dir, code, out, errs)
	}
	return out
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
	SSHPort     int    `json:"sshPort"`
	Lease       *struct {
		Address string `json:"address"`
		Gateway string `json:"gateway"`
		Server  string `json:"server"`
	} `json:"lease"`
	Guest *struct {
		DiskCheck *diskCheckJSON `json:"diskCheck"`
	} `json:"guest"`
}

// diskCheckJSON is what inspect says about the guest's latest check of
// its root disk.
type diskCheckJSON struct {
	Formatted        bool   `json:"formatted"`
	Result           string `json:"result"`
	ExitCode         int    `json:"exitCode"`
	JournalRecovered bool   `json:"journalRecovered"`
	Output           string `json:"output"`
}

// diskCheck returns the latest disk check inspect shows, failing the test
// when there is none.
func (m machineJSON) diskCheck(t *testing.T) diskCheckJSON {
	t.Helper()
	if m.Guest == nil || m.Guest.DiskCheck == nil {
		t.Fatalf("inspect shows no disk check for %s", m.Name)
	}
	return *m.Guest.DiskCheck
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
	if systemd {
		// What a user does with a new systemd machine: start it, and at
		// once ask systemd (the commands wait for its bus in the guest).
		if out := e.must("machine", "create", image, "-n", name, "--cpus", "1", "--memory", "1G", "--no-boot"); strings.TrimSpace(out) != name {
			t.Fatalf("create printed %q, want the name %q", out, name)
		}
		start = time.Now()
		e.must("machine", "start", name)
		t.Logf("first start: %v", time.Since(start).Round(time.Millisecond))
		testSystemdAnswers(t, e, name)
	} else {
		out, errOut, code := e.mt(nil, "machine", "create", image, "-n", name, "--cpus", "1", "--memory", "1G")
		if code != 0 || strings.TrimSpace(out) != name {
			t.Fatalf("create: exit %d, printed %q (want the name %q); stderr:\n%s", code, out, name, errOut)
		}
		// A first boot takes seconds: create says what it waits for,
		// down to the image being unpacked, in plain lines (no
		// terminal here).
		if !strings.Contains(errOut, "starting "+name+": ") || !strings.Contains(errOut, "unpack") || strings.Contains(errOut, "\x1b") {
			t.Errorf("create's first boot showed no plain progress lines of its stages:\n%s", errOut)
		}
	}
	t.Logf("create + first boot: %v", time.Since(start).Round(time.Millisecond))
	m := e.inspect(name)
	if m.Status != "running" || m.CPUs != 1 || m.Memory != 1<<30 {
		t.Fatalf("inspect after create: %+v", m)
	}
	// The guest formatted its blank disk and checked it before mounting.
	if dc := m.diskCheck(t); !dc.Formatted || dc.Result != "clean" {
		t.Fatalf("first boot's disk check: %+v, want formatted and clean", dc)
	}
	// The address is the one the guest's DHCP lease gave.
	// On the machine network (vm/netd) from its gateway.
	if m.Lease == nil || m.Lease.Address != m.IP+"/24" || m.Lease.Gateway != "192.168.127.1" || !strings.HasPrefix(m.IP, "192.168.127.") {
		t.Fatalf("inspect: address %q, lease %+v; want the lease's address on the machine network", m.IP, m.Lease)
	}
	// Its own name resolves in it through the machine network's DNS, also
	// in an image that carries its build host's resolv.conf (debootstrap
	// leaves one).
	if out := e.mustRun(name, "sh", "-c", "getent hosts "+name+".machine || nslookup "+name+".machine"); !strings.Contains(out, m.IP) {
		t.Fatalf("%s.machine does not resolve to %s in the machine:\n%s", name, m.IP, out)
	}
	ls := e.must("machine", "ls")
	if !strings.Contains(ls, name) || !strings.Contains(ls, "running") || !strings.Contains(ls, m.IP) {
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
		if out := e.mustRun(name, "cat", "/proc/1/comm"); strings.TrimSpace(out) != "systemd" {
			t.Fatalf("PID 1 is %q, want systemd", out)
		}
	}

	testRunningCLI(t, e, image, name, systemd)
	testUserAndShares(t, e, name, systemd)
	victim, victimContent := victimFile(t)
	testStateHidden(t, e, name, "rw", victim)
	if systemd {
		testSSH(t, e, name)
		testPTY(t, e, name)
		if os.Getenv(envChild) == "" {
			// Once: the ordinary user's pass would only repeat it.
			testGuestOOM(t, e, name)
		}
	} else {
		testClock(t, e, name)
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
	// Read-only home, and the directory holding machinetop's runtime
	// directory shared too.
	e.must("machine", "set", "-n", name, "home-mount=ro", "mounts="+filepath.Dir(runtimeDir())+":/hostrun:ro")
	e.must("machine", "restart", name)
	if out := e.mustRun(name, "cat", "/root/persist.txt"); out != "kept-across-boots\n" {
		t.Fatalf("after restart: %q", out)
	}
	checkUntouched(t, victim, victimContent)
	testReadOnlyHome(t, e, name, systemd)
	testStateHidden(t, e, name, "ro", victim)
	testRuntimeHidden(t, e, name)
	e.must("machine", "set", "-n", name, "home-mount=none", "mounts="+filepath.Join(e.home, "proj"))
	e.must("machine", "stop", name)
	if m := e.inspect(name); m.Status != "stopped" {
		t.Fatalf("after stop: %s", m.Status)
	}
	checkDisk(t, filepath.Join(m.Dir, "disk.img"))
	testNoFollow(t, e, name, m.Dir, victim, victimContent)
	e.must("machine", "start", name)
	if out := e.mustRun(name, "cat", "/root/persist.txt"); out != "kept-across-boots\n" {
		t.Fatalf("after stop+start: %q", out)
	}
	testOnlyProject(t, e, name)

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
	testKillDuringWrites(t, e, name, filepath.Join(m.Dir, "disk.img"))
	e.must("machine", "stop", name)
	checkDisk(t, filepath.Join(m.Dir, "disk.img"))

	e.must("machine", "rm", name)
	if _, err := os.Stat(m.Dir); !os.IsNotExist(err) {
		t.Fatalf("machine directory still there after rm: %v", err)
	}
}

// testSystemdAnswers runs, right after `machine start` returned,
// `machine run -- systemctl is-system-running --wait` as the user types it
// (as the mapped user: an ordinary user's systemctl talks to the D-Bus
// system bus, root's to systemd's private socket), then as root. Each must
// print "running" or "degraded" (a unit failing under TCG is not this
// test's concern; the bus answering is).
func testSystemdAnswers(t *testing.T, e *env, name string) {
	t.Helper()
	start := time.Now()
	for _, root := range []bool{false, true} {
		args := []string{"machine", "run", "-n", name}
		if root {
			args = append(args, "--root")
		}
		args = append(args, "--", "systemctl", "is-system-running", "--wait")
		out, errs, code := e.mt(nil, args...)
		if s := strings.TrimSpace(out); s != "running" && s != "degraded" {
			failed, _, _ := e.run(name, "", "systemctl", "--failed", "--no-pager")
			t.Fatalf("right after start, %s: exit %d, stdout %q, stderr %q\nfailed units:\n%s",
				strings.Join(args[2:], " "), code, out, errs, failed)
		}
		if errs != "" {
			t.Fatalf("%s: stderr %q, want none", strings.Join(args[2:], " "), errs)
		}
		t.Logf("start → %s answered %q after %v", strings.Join(args[2:], " "), strings.TrimSpace(out), time.Since(start).Round(time.Millisecond))
	}
}

// testKillDuringWrites kills QEMU while the guest writes files as fast as
// it can: the machine is marked stopped, its disk is left needing journal
// recovery, and the next boot's e2fsck in the guest repairs it (inspect
// says so, the host's e2fsck -fn finds it clean) with the data synced
// before the kill intact.
func testKillDuringWrites(t *testing.T, e *env, name, disk string) {
	qemu := e.inspect(name).VM
	if qemu <= 0 {
		t.Fatalf("inspect shows no VM pid")
	}
	writer := exec.Command(filepath.Join(binDir, "machinetop"), "machine", "run", "-n", name, "--root", "--", "sh", "-c",
		"echo synced-before-kill > /root/synced.txt && sync && echo writing && "+
			"i=0; while :; do i=$((i+1)); mkdir -p /root/w/$i && dd if=/dev/urandom of=/root/w/$i/f bs=64k count=4 2>/dev/null; "+
			"[ $((i % 8)) = 0 ] && sync; done")
	writer.Env = e.environ()
	stdout, err := writer.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := writer.Start(); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 8)
	if _, err := io.ReadFull(stdout, line); err != nil || string(line) != "writing\n" {
		t.Fatalf("the writer did not start: %q %v", line, err)
	}
	time.Sleep(3 * time.Second) // some commits and checkpoints, some not
	syscall.Kill(qemu, syscall.SIGKILL)
	writer.Wait()
	waitState(t, e, name, "stopped")
	if out, err := exec.Command(tool("dumpe2fs"), "-h", disk).CombinedOutput(); err == nil {
		if !strings.Contains(string(out), "needs_recovery") {
			t.Fatalf("after killing QEMU during writes the disk does not need recovery:\n%s", out)
		}
	} else {
		t.Logf("dumpe2fs not available on the host (%v): not checking the dirty state", err)
	}
	e.must("machine", "start", name)
	dc := e.inspect(name).diskCheck(t)
	if dc.Formatted || !dc.JournalRecovered || dc.Result != "fixed" {
		t.Fatalf("the boot after the kill: disk check %+v, want the journal recovered and the result fixed", dc)
	}
	t.Logf("disk check after the kill: %+v", dc)
	if out := e.mustRun(name, "cat", "/root/synced.txt", "/root/persist.txt"); out != "synced-before-kill\nkept-across-boots\n" {
		t.Fatalf("after killing QEMU during writes and starting again: %q", out)
	}
	if log := e.must("machine", "logs", name); !strings.Contains(log, "root disk check: fixed (journal recovered") {
		t.Fatalf("the console log does not report the repair:\n%s", log)
	}
}

// checkDisk runs e2fsck -fn on a stopped machine's disk and checks with
// debugfs that the capability fixture kept its security.capability xattr,
// where the host has e2fsprogs (machinetop itself does not need it).
func checkDisk(t *testing.T, disk string) {
	t.Helper()
	if _, err := exec.LookPath(tool("e2fsck")); err != nil {
		t.Logf("e2fsprogs not on the host: not checking %s from the host", disk)
		return
	}
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

// hostUser is the user machinetop runs as, as the machine should know it.
func hostUser(t *testing.T) (name, guestHome string) {
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	if os.Getuid() == 0 {
		return u.Username, "/root"
	}
	return u.Username, "/home/" + u.Username
}

// testUserAndShares checks the user mapping and the shared home (read and
// write both ways, the working directory) at the first boot, with the
// default --home-mount rw.
func testUserAndShares(t *testing.T, e *env, name string, systemd bool) {
	start := time.Now()
	uname, guestHome := hostUser(t)
	if out := e.mustRunUser(name, "", "id", "-un"); strings.TrimSpace(out) != uname {
		t.Fatalf("id -un: %q, want %q", out, uname)
	}
	if out := e.mustRunUser(name, "", "id", "-u"); strings.TrimSpace(out) != strconv.Itoa(os.Getuid()) {
		t.Fatalf("id -u: %q, want %d", out, os.Getuid())
	}
	if out := e.mustRunUser(name, "", "id", "-g"); strings.TrimSpace(out) != strconv.Itoa(os.Getgid()) {
		t.Fatalf("id -g: %q, want %d", out, os.Getgid())
	}
	if out := e.mustRunUser(name, "", "sh", "-c", "echo $HOME"); strings.TrimSpace(out) != guestHome {
		t.Fatalf("$HOME: %q, want %s", out, guestHome)
	}
	if systemd {
		e.mustRunUser(name, "", "sudo", "-n", "true")
	} else if os.Getuid() != 0 {
		// The busybox image has no sudo: inspect says so.
		if out := e.must("machine", "inspect", name); !strings.Contains(out, "no sudo") {
			t.Fatalf("inspect does not say the image has no sudo:\n%s", out)
		}
	}
	if systemd {
		if out := e.must("machine", "inspect", name); strings.Contains(out, "setup at the latest boot") {
			t.Fatalf("inspect reports setup problems:\n%s", out)
		}
	}

	// The home is shared over the filesystem the backend promised.
	mounts := e.mustRun(name, "cat", "/proc/mounts")
	if want := " " + e.home + " " + e.shareFS() + " "; !strings.Contains(mounts, want) {
		t.Fatalf("the shared home is not mounted as %q:\n%s", want, mounts)
	}

	// The working directory follows the host's inside the shared home,
	// and is the guest home outside any share.
	proj := filepath.Join(e.home, "proj")
	if err := os.MkdirAll(proj, 0o755); err != nil {
		t.Fatal(err)
	}
	if out := e.mustRunUser(name, proj, "pwd"); strings.TrimSpace(out) != proj {
		t.Fatalf("pwd from %s: %q", proj, out)
	}
	if out := e.mustRunUser(name, "/", "pwd"); strings.TrimSpace(out) != guestHome {
		t.Fatalf("pwd from /: %q, want the guest home %s", out, guestHome)
	}
	// Files go both ways; the guest's files are the host user's.
	if err := os.WriteFile(filepath.Join(proj, "from-host.txt"), []byte("hello guest\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := e.mustRunUser(name, proj, "cat", "from-host.txt"); out != "hello guest\n" {
		t.Fatalf("host file read in the guest: %q", out)
	}
	e.mustRunUser(name, proj, "sh", "-c", "echo hello host > from-guest.txt")
	b, err := os.ReadFile(filepath.Join(proj, "from-guest.txt"))
	if err != nil || string(b) != "hello host\n" {
		t.Fatalf("guest file read on the host: %q, %v", b, err)
	}
	fi, _ := os.Stat(filepath.Join(proj, "from-guest.txt"))
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != os.Getuid() {
		t.Fatalf("a file the guest made is owned by uid %d on the host, want %d", st.Uid, os.Getuid())
	}
	// A secret in ~/.ssh for testOnlyProject to miss.
	os.MkdirAll(filepath.Join(e.home, ".ssh"), 0o700)
	os.WriteFile(filepath.Join(e.home, ".ssh", "mt-marker"), []byte("secret\n"), 0o600)
	if out := e.mustRunUser(name, "", "cat", filepath.Join(e.home, ".ssh", "mt-marker")); out != "secret\n" {
		t.Fatalf("the shared home's .ssh is not visible with --home-mount rw: %q", out)
	}
	t.Logf("user and shared home checks: %v", time.Since(start).Round(time.Millisecond))
}

// testReadOnlyHome runs after `machine set home-mount=ro` and a restart:
// writes fail, also as root, and reads work.
func testReadOnlyHome(t *testing.T, e *env, name string, systemd bool) {
	proj := filepath.Join(e.home, "proj")
	if out := e.mustRunUser(name, proj, "cat", "from-host.txt"); out != "hello guest\n" {
		t.Fatalf("read-only home: reading: %q", out)
	}
	target := filepath.Join(proj, "ro-write.txt")
	write := "echo no > " + target
	tries := [][]string{{"sh", "-c", write}}
	if systemd {
		tries = append(tries, []string{"sudo", "-n", "sh", "-c", write})
	}
	for _, argv := range tries {
		if _, _, code := e.runUser(name, "", argv...); code == 0 {
			t.Fatalf("read-only home: %v succeeded", argv)
		}
	}
	if _, _, code := e.run(name, "", "sh", "-c", write); code == 0 {
		t.Fatalf("read-only home: writing as root succeeded")
	}
	// Root cannot remount it writable either.
	e.run(name, "", "mount", "-o", "remount,rw", e.home)
	if _, _, code := e.run(name, "", "sh", "-c", write); code == 0 {
		t.Fatalf("read-only home: writing as root after a remount succeeded")
	}
	if _, err := os.Stat(target); err == nil {
		t.Fatalf("read-only home: %s appeared on the host", target)
	}
}

// testOnlyProject runs after `machine set home-mount=none mounts=~/proj`
// and a stop and start: the project is there, the rest of home is not.
func testOnlyProject(t *testing.T, e *env, name string) {
	proj := filepath.Join(e.home, "proj")
	if out := e.mustRunUser(name, proj, "cat", "from-host.txt"); out != "hello guest\n" {
		t.Fatalf("--mount ~/proj: reading: %q", out)
	}
	if out := e.mustRunUser(name, proj, "pwd"); strings.TrimSpace(out) != proj {
		t.Fatalf("--mount ~/proj: pwd %q", out)
	}
	if _, _, code := e.run(name, "", "test", "-e", filepath.Join(e.home, ".ssh", "mt-marker")); code == 0 {
		t.Fatalf("--home-mount none: ~/.ssh of the host is visible in the machine")
	}
}

// testSSH logs in with the block ssh-config prints.
func testSSH(t *testing.T, e *env, name string) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Fatalf("ssh not found: install openssh-client (make deps)")
	}
	cfg := filepath.Join(t.TempDir(), "ssh_config")
	if err := os.WriteFile(cfg, []byte(e.must("machine", "ssh-config", name)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ssh", "-F", cfg, "-o", "BatchMode=yes", "-o", "ConnectTimeout=30", name, "id -un")
	cmd.Env = e.environ()
	out, err := cmd.CombinedOutput()
	uname, _ := hostUser(t)
	if err != nil || strings.TrimSpace(string(out)) != uname {
		c, _ := os.ReadFile(cfg)
		t.Fatalf("ssh -F <(machinetop machine ssh-config %s) %s id -un: %v\n%s\nconfig:\n%s", name, name, err, out, c)
	}
	if m := e.inspect(name); m.SSHPort == 0 {
		t.Fatalf("inspect shows no SSH port")
	}
}

// testPTY drives an interactive `machine run` through a real PTY.
func testPTY(t *testing.T, e *env, name string) {
	cmd := exec.Command(filepath.Join(binDir, "machinetop"), "machine", "run", "-n", name)
	cmd.Env = append(e.environ(), "TERM=xterm")
	cmd.Dir = "/"
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var mu sync.Mutex
	var buf bytes.Buffer
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := ptmx.Read(b)
			mu.Lock()
			buf.Write(b[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	from := 0
	waitFor := func(what string, ok func(string) bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			mu.Lock()
			s := buf.String()[from:]
			mu.Unlock()
			if ok(s) {
				from += len(s)
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("PTY session: no %s; output so far:\n%q", what, buf.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("prompt", func(s string) bool {
		s = strings.TrimRight(ansiRE.ReplaceAllString(s, ""), " ")
		return strings.HasSuffix(s, "$") || strings.HasSuffix(s, "#")
	})
	ptmx.Write([]byte("stty size\r"))
	waitFor("size 24 80", func(s string) bool { return strings.Contains(s, "24 80") })
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 30, Cols: 100}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	ptmx.Write([]byte("stty size\r"))
	waitFor("size 30 100 after a resize", func(s string) bool { return strings.Contains(s, "30 100") })
	ptmx.Write([]byte("exit 3\r"))
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("PTY session: exit %v, want status 3", err)
	}
}

// ansiRE matches the CSI escape sequences a shell may print around its
// prompt (ECMA-48: ESC [ parameters final byte).
var ansiRE = regexp.MustCompile("\x1b\\[[0-9;?]*[A-Za-z]")

// testClock sets the guest clock wrong and waits for the supervisor to
// set it from the host's.
func testClock(t *testing.T, e *env, name string) {
	start := time.Now()
	e.mustRun(name, "date", "-s", "2001-01-01 00:00:00")
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := e.mustRun(name, "date", "+%s")
		g, _ := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
		if d := time.Now().Unix() - g; d < 3 && d > -3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest clock still %s after 30 s", out)
		}
		time.Sleep(time.Second)
	}
	t.Logf("guest clock corrected in %v", time.Since(start).Round(time.Millisecond))
}
