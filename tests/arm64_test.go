package tests

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/machinetop/machinetop/vm/kit"
	"github.com/machinetop/machinetop/vm/kit/debarchive"
)

// TestArm64 boots an arm64 machine made from Debian's busybox-static for
// arm64 on QEMU's virt board: emulated by TCG on an x86 host, the way an
// arm64 image runs there, and the guest path a Mac takes. It checks what a
// user sees: the architecture, stdin, stdout and exit status, the shared
// home, a file kept across a restart, and the errors for an image of the
// wrong architecture.
func TestArm64(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-aarch64"); err != nil {
		t.Skip("qemu-system-aarch64 is not installed (Debian: qemu-system-arm; `make deps` installs it)")
	}
	e := newEnv(t)
	tarball := arm64Busybox(t)
	e.must("image", "import", "--platform", "linux/arm64", tarball, "busybox:arm64")
	if out := e.must("image", "ls"); !strings.Contains(out, "linux/arm64") {
		t.Fatalf("image ls does not show the linux/arm64 platform:\n%s", out)
	}

	// An image of another architecture than the machine's is refused,
	// with the flag to use named.
	if runtime.GOARCH != "arm64" {
		e.fails("--arch arm64", "machine", "create", "busybox:arm64", "-n", "wrong", "--no-boot")
	}
	e.fails("different architectures", "machine", "create", "busybox:arm64", "--arch", "amd64", "--platform", "linux/arm64", "--no-boot")
	e.fails("unknown architecture", "machine", "create", "busybox:arm64", "--arch", "sparc", "--no-boot")

	const name = "bb-arm"
	start := time.Now()
	e.must("machine", "create", "busybox:arm64", "-n", name, "-a", "arm64", "--cpus", "1", "--memory", "1G")
	created := time.Since(start)
	if out := e.mustRun(name, "uname", "-m"); out != "aarch64\n" {
		t.Fatalf("uname -m: %q, want aarch64", out)
	}
	t.Logf("arm64 busybox: create + first boot %v; create to first run output (uname -m) %v",
		created.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	var m struct {
		Arch        string `json:"arch"`
		Accelerator string `json:"accelerator"`
		Kernel      string `json:"kernelRelease"`
		Dir         string `json:"dir"`
	}
	if err := json.Unmarshal([]byte(e.must("machine", "inspect", name)), &m); err != nil {
		t.Fatal(err)
	}
	if m.Arch != "arm64" || !strings.HasSuffix(m.Kernel, "-arm64") {
		t.Fatalf("inspect: arch %q, kernel %q; want arm64 and an arm64 kernel", m.Arch, m.Kernel)
	}
	if runtime.GOARCH != "arm64" && m.Accelerator != "tcg" {
		t.Fatalf("inspect: accelerator %q for an arm64 guest on %s, want tcg", m.Accelerator, runtime.GOARCH)
	}
	if ls := e.must("machine", "ls"); !strings.Contains(ls, " arm64 ") {
		t.Fatalf("machine ls does not show the architecture:\n%s", ls)
	}

	out, errs, code := e.run(name, "", "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 7")
	if code != 7 || out != "to-stdout\n" || errs != "to-stderr\n" {
		t.Fatalf("run: code %d stdout %q stderr %q", code, out, errs)
	}
	if out, errs, code := e.run(name, "hi\n", "cat"); code != 0 || out != "hi\n" {
		t.Fatalf("echo hi | run cat: code %d out %q err %q", code, out, errs)
	}
	testUserAndShares(t, e, name, false)

	e.mustRun(name, "sh", "-c", "echo kept-across-boots > /root/persist.txt && sync")
	e.must("machine", "restart", name)
	if out := e.mustRun(name, "cat", "/root/persist.txt"); out != "kept-across-boots\n" {
		t.Fatalf("after restart: %q", out)
	}
	e.must("machine", "stop", name)
	checkDisk(t, filepath.Join(m.Dir, "disk.img"))
	e.must("machine", "rm", name)
}

// arm64Busybox makes the busybox image's root filesystem tar (with the
// fixtures) from Debian's busybox-static for arm64, fetched and verified
// with the kit's archive client, so the host needs neither apt nor a
// foreign architecture configured.
func arm64Busybox(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	mirror := os.Getenv(kit.MirrorEnv)
	if mirror == "" {
		mirror = debarchive.DefaultMirror
	}
	c := &debarchive.Client{Mirror: mirror, Suite: kit.DefaultSuite,
		CacheDir: filepath.Join(os.TempDir(), "machinetop-e2e-archive")}
	p, err := c.Lookup(ctx, "arm64", "busybox-static")
	if err != nil {
		t.Fatalf("busybox-static for arm64 from the Debian archive: %v", err)
	}
	deb, err := c.Download(ctx, p, filepath.Join(os.TempDir(), "machinetop-e2e-archive", "debs"))
	if err != nil {
		t.Fatalf("downloading %s: %v", p.FileName(), err)
	}
	out := filepath.Join(t.TempDir(), "busybox-arm64.tar")
	cmd := exec.Command("./mkimage.sh", "busybox", out, "--fixtures", "--busybox", deb)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkimage busybox --busybox %s: %v\n%s", deb, err, b)
	}
	return out
}

// envArm64Debian turns on TestArm64Debian (`make test
// MACHINETOP_E2E_ARM64_DEBIAN=1`): under TCG on a 2-core x86 host it takes
// far longer than the rest of the suite.
const envArm64Debian = "MACHINETOP_E2E_ARM64_DEBIAN"

// TestArm64Debian boots an arm64 Debian bookworm machine with systemd as
// PID 1. On a host that cannot run arm64 programs, the image is
// debootstrap's first stage (tests/mkimage.sh debian --arch arm64): the
// machine boots it with the agent as PID 1, runs the second stage in
// itself, and is restarted into systemd, which a user could do the same
// way.
func TestArm64Debian(t *testing.T) {
	if os.Getenv(envArm64Debian) != "1" {
		t.Skipf("set %s=1 to boot an arm64 Debian machine with systemd (emulated: tens of minutes on an x86 host)", envArm64Debian)
	}
	if _, err := exec.LookPath("qemu-system-aarch64"); err != nil {
		t.Fatal("qemu-system-aarch64 is not installed (Debian: qemu-system-arm; `make deps` installs it)")
	}
	if os.Getuid() != 0 {
		t.Fatal("making the Debian image needs root (debootstrap)")
	}
	e := newEnv(t)
	e.timeout = time.Hour
	start := time.Now()
	tarball := filepath.Join(t.TempDir(), "debian-arm64.tar")
	cmd := exec.Command("./mkimage.sh", "debian", tarball, "--arch", "arm64")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkimage debian --arch arm64: %v\n%s", err, b)
	}
	t.Logf("image (debootstrap first stage) made in %v", time.Since(start).Round(time.Second))
	e.must("image", "import", "--platform", "linux/arm64", tarball, "debian:arm64")

	const name = "deb-arm"
	start = time.Now()
	e.must("machine", "create", "debian:arm64", "-n", name, "-a", "arm64", "--cpus", "2", "--memory", "2G")
	t.Logf("create + first boot (unpacking the image): %v", time.Since(start).Round(time.Second))
	if out := e.mustRun(name, "uname", "-m"); out != "aarch64\n" {
		t.Fatalf("uname -m: %q", out)
	}
	start = time.Now()
	e.mustRun(name, "/debootstrap/debootstrap", "--second-stage")
	t.Logf("debootstrap --second-stage in the machine: %v", time.Since(start).Round(time.Second))

	start = time.Now()
	e.must("machine", "restart", name)
	t.Logf("restart into systemd (agent ready): %v", time.Since(start).Round(time.Second))
	out, _, _ := e.run(name, "", "sh", "-c",
		"for i in $(seq 1200); do [ -S /run/systemd/private ] && break; sleep 0.1; done; systemctl is-system-running --wait")
	if s := strings.TrimSpace(out); s != "running" && s != "degraded" {
		failed, _, _ := e.run(name, "", "systemctl", "--failed", "--no-pager")
		t.Fatalf("systemctl is-system-running: %q\n%s", s, failed)
	}
	t.Logf("restart to systemd running: %v", time.Since(start).Round(time.Second))
	if out := e.mustRun(name, "cat", "/proc/1/comm"); strings.TrimSpace(out) != "systemd" {
		t.Fatalf("PID 1 is %q, want systemd", out)
	}
	if out, errs, code := e.run(name, "hi\n", "sh", "-c", "cat; exit 5"); code != 5 || out != "hi\n" {
		t.Fatalf("stdin and exit status: code %d out %q err %q", code, out, errs)
	}
	testUserAndShares(t, e, name, true)
	testPTY(t, e, name)
	e.must("machine", "stop", name)
	e.must("machine", "rm", name)
}
