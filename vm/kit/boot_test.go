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

// bootBoards are the QEMU emulator, board and console the boot tests use
// per guest architecture, as vm/qemu runs machines (TCG).
var bootBoards = map[string]struct {
	qemu    string
	board   []string
	console string
}{
	"amd64": {"qemu-system-x86_64", nil, "ttyS0"},
	"arm64": {"qemu-system-aarch64", []string{"-machine", "virt,gic-version=max", "-cpu", "max,pauth-impdef=on"}, "ttyAMA0"},
}

// TestBootProbe boots the kit under QEMU (TCG, as nested KVM cannot be
// trusted) with bootprobe as /init, a virtio-serial port and a virtio disk
// as machines have them, and checks what the guest saw. The wall time from
// starting QEMU to the probe's module line is the raw direct-kernel boot
// time other boot measurements are compared with.
func TestBootProbe(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skipf("the kit's kernel is for %s; this test boots x86_64", runtime.GOARCH)
	}
	k, _ := testKit(t)
	bootKit(t, "amd64", k)
}

// TestBootProbeArm64 builds the default kit for arm64 guests (Debian's
// linux-image-cloud-arm64 and an arm64 bootprobe), checks that the
// dependency logic found the modules an arm64 machine needs, and boots it
// on QEMU's virt board. On an x86 host that is TCG emulation, as an arm64
// machine runs there.
func TestBootProbeArm64(t *testing.T) {
	testDeb(t) // skips when the archive cannot be reached
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	k, err := Ensure(ctx, filepath.Join(os.TempDir(), "machinetop-kit-test-arm64"), Source{Arch: "arm64"}, bootProbeFor(t, "arm64"), tlogWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(k.KernelRelease, "-cloud-arm64") {
		t.Errorf("kernel release %q is not Debian's arm64 cloud kernel", k.KernelRelease)
	}
	if kernelArch(k.Kernel) != "arm64" {
		t.Errorf("kit kernel %s is not an arm64 Image", k.Kernel)
	}
	for _, want := range []string{"virtio_pci.ko", "virtio_blk.ko", "virtio_net.ko", "virtio_console.ko",
		"virtio_balloon.ko", "virtio-rng.ko", "virtiofs.ko", "fuse.ko", "overlay.ko", "vsock.ko", "vmw_vsock_virtio_transport.ko"} {
		if !contains(k.Modules, want) {
			t.Errorf("arm64 kit lacks %s: %v", want, k.Modules)
		}
	}
	bootKit(t, "arm64", k)
}

// TestBootProbeGenericKernel does the same with Debian's generic kernel
// (linux-image-<arch>) for the host's architecture and for arm64, where
// ext4 and 9p are modules too, so their dependency chains (jbd2, mbcache,
// crc16, 9pnet, netfs...) get loaded for real. Each package is ~70 MB and
// takes ~20 s to read, hence not in -short.
func TestBootProbeGenericKernel(t *testing.T) {
	if testing.Short() {
		t.Skip("reads the ~70 MB generic kernel packages; skipped in -short")
	}
	testDeb(t) // skips when the archive cannot be reached
	for _, arch := range []string{runtime.GOARCH, "arm64"} {
		if arch == "arm64" && runtime.GOARCH == "arm64" {
			continue
		}
		t.Run(arch, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			pkg, err := GenericPackageFor(arch)
			if err != nil {
				t.Fatal(err)
			}
			cache := filepath.Join(os.TempDir(), "machinetop-kit-test-generic")
			k, err := Ensure(ctx, cache, Source{Package: pkg, Arch: arch}, bootProbeFor(t, arch), tlogWriter{t})
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"ext4.ko", "9p.ko", "9pnet_virtio.ko", "jbd2.ko", "mbcache.ko", "virtiofs.ko"} {
				if !contains(k.Modules, want) {
					t.Errorf("generic %s kit lacks %s: %v", arch, want, k.Modules)
				}
			}
			bootKit(t, arch, k)
		})
	}
}

// bootKit boots k, a kit for arch with bootprobe as /init, and checks its
// report. It skips when the emulator for arch is not installed.
func bootKit(t *testing.T, arch string, k *Kit) {
	t.Helper()
	board := bootBoards[arch]
	qemu, err := exec.LookPath(board.qemu)
	if err != nil {
		t.Skipf("%s is not installed", board.qemu)
	}
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
	args := append([]string{"-accel", "tcg"}, board.board...)
	cmd := exec.CommandContext(ctx, qemu, append(args,
		"-m", "512", "-nographic", "-no-reboot",
		"-kernel", k.Kernel, "-initrd", k.Initramfs,
		"-append", "console="+board.console+" quiet panic=-1",
		"-device", "virtio-serial-pci",
		"-chardev", "socket,id=a,path="+filepath.Join(dir, "agent.sock")+",server=on,wait=off",
		"-device", "virtserialport,chardev=a,name=machinetop.agent",
		"-drive", "if=none,id=d,file="+disk+",format=raw",
		"-device", "virtio-blk-pci,drive=d,serial=mt-root",
	)...)
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
	t.Logf("raw QEMU direct-kernel boot (%s, TCG): modules loaded %s after QEMU start, devices seen %s, QEMU exited %s; guest uptime at probe end %v s; initramfs %s",
		arch, modulesAt.Round(time.Millisecond), doneAt.Round(time.Millisecond), exitAt.Round(time.Millisecond), probe["uptime"], fileSize(k.Initramfs))
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
