package kit

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestBootProbe boots the kit under QEMU (TCG, as nested KVM cannot be
// trusted) with bootprobe as /init, a virtio-serial port and a virtio disk
// as machines have them, and checks what the guest saw. The wall time from
// starting QEMU to the probe's module line is the raw direct-kernel boot
// time other boot measurements are compared with.
func TestBootProbe(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skipf("the kit's kernel is for %s; this test boots x86_64", runtime.GOARCH)
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 is not installed")
	}
	k, _ := testKit(t)
	bootKit(t, qemu, k)
}

// TestBootProbeGenericKernel does the same with Debian's generic kernel
// (linux-image-<arch>), where ext4 and 9p are modules too, so their
// dependency chains (jbd2, mbcache, crc16, 9pnet, netfs...) get loaded for
// real. Its package is ~70 MB and takes ~20 s to read, hence not in -short.
func TestBootProbeGenericKernel(t *testing.T) {
	if testing.Short() {
		t.Skip("reads the ~70 MB generic kernel package; skipped in -short")
	}
	if runtime.GOARCH != "amd64" {
		t.Skipf("the kit's kernel is for %s; this test boots x86_64", runtime.GOARCH)
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 is not installed")
	}
	testDeb(t) // skips when the archive cannot be reached
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cache := filepath.Join(os.TempDir(), "machinetop-kit-test-generic")
	k, err := Ensure(ctx, cache, Source{Package: "linux-image-" + runtime.GOARCH}, bootProbe(t), tlogWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ext4.ko", "9p.ko", "9pnet_virtio.ko", "jbd2.ko", "mbcache.ko", "virtiofs.ko"} {
		if !contains(k.Modules, want) {
			t.Errorf("generic kit lacks %s: %v", want, k.Modules)
		}
	}
	bootKit(t, qemu, k)
}

// bootKit boots k with bootprobe as /init and checks its report.
func bootKit(t *testing.T, qemu string, k *Kit) {
	t.Helper()
	dir := t.TempDir()
	disk := filepath.Join(dir, "root.img")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 8<<20); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu,
		"-accel", "tcg", "-m", "512", "-nographic", "-no-reboot",
		"-kernel", k.Kernel, "-initrd", k.Initramfs,
		"-append", "console=ttyS0 quiet panic=-1",
		"-device", "virtio-serial-pci",
		"-chardev", "socket,id=a,path="+filepath.Join(dir, "agent.sock")+",server=on,wait=off",
		"-device", "virtserialport,chardev=a,name=machinetop.agent",
		"-drive", "if=none,id=d,file="+disk+",format=raw",
		"-device", "virtio-blk-pci,drive=d,serial=mt-root",
	)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		console    []string
		probe      = map[string][]string{}
		modulesAt  time.Duration
		doneAt     time.Duration
		sawModules bool
	)
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		console = append(console, line)
		i := strings.Index(line, "BOOTPROBE ")
		if i < 0 {
			continue
		}
		kind, rest, _ := strings.Cut(line[i+len("BOOTPROBE "):], " ")
		probe[kind] = append(probe[kind], rest)
		switch kind {
		case "modules-ok":
			modulesAt, sawModules = time.Since(start), true
		case "done":
			doneAt = time.Since(start)
		}
	}
	waitErr := cmd.Wait()
	exitAt := time.Since(start)
	if ctx.Err() != nil || !sawModules {
		t.Fatalf("no probe result within the time limit (qemu: %v); console:\n%s", waitErr, strings.Join(console, "\n"))
	}
	if waitErr != nil {
		t.Errorf("qemu exited with %v", waitErr)
	}

	if errs := probe["error"]; len(errs) > 0 {
		t.Errorf("probe errors: %v", errs)
	}
	if got, want := probe["modules-ok"][0], fmt.Sprint(len(k.Modules)); got != want {
		t.Errorf("modules loaded: %s, want %s (all of %v)", got, want, k.Modules)
	}
	if !containsSuffix(probe["port"], " machinetop.agent") {
		t.Errorf("virtio port machinetop.agent not seen; ports: %v", probe["port"])
	}
	if !contains(probe["block"], "vda serial=mt-root") {
		t.Errorf("vda with serial mt-root not seen; block devices: %v", probe["block"])
	}
	if _, ok := probe["fsck-ok"]; !ok {
		t.Errorf("the kit's mke2fs and e2fsck did not format and check the disk in the guest (mkfs-ok %v)", probe["mkfs-ok"])
	}
	if t.Failed() {
		t.Logf("console:\n%s", strings.Join(console, "\n"))
	}
	t.Logf("raw QEMU direct-kernel boot (TCG): modules loaded %s after QEMU start, devices seen %s, QEMU exited %s; guest uptime at probe end %v s; initramfs %s",
		modulesAt.Round(time.Millisecond), doneAt.Round(time.Millisecond), exitAt.Round(time.Millisecond), probe["uptime"], fileSize(k.Initramfs))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func containsSuffix(list []string, s string) bool {
	for _, x := range list {
		if strings.HasSuffix(x, s) {
			return true
		}
	}
	return false
}

func fileSize(p string) string {
	fi, err := os.Stat(p)
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("%.1f MB", float64(fi.Size())/1e6)
}
