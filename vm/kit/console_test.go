package kit

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestInitOnVirtioConsole boots the real guest binary as /init with its
// console on hvc0, as the vz backend has it: hvc0's driver
// (virtio_console) is a module, so the kernel starts /init without stdin,
// stdout and stderr. /init must get through the Go runtime's start (which
// opens /dev/null in their place), load the modules, open /dev/console
// only then, replay the lines it logged before, and boot on (format the
// blank disk, unpack the image, DHCP) with its log on hvc0.
func TestInitOnVirtioConsole(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skipf("the kit's kernel is for %s; this test boots x86_64", runtime.GOARCH)
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 is not installed")
	}
	deb := testDeb(t)
	dir := t.TempDir()
	guest := filepath.Join(dir, "machinetop-guest")
	build := exec.Command("go", "build", "-trimpath", "-o", guest, "../../guest/cmd/machinetop-guest")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the guest binary: %v\n%s", err, out)
	}
	k, err := Ensure(context.Background(), filepath.Join(dir, "cache"), Source{Deb: deb}, guest, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(k.Modules, "virtio_console.ko") {
		t.Fatalf("virtio_console is not a module of this kernel (%v): the test would prove nothing", k.Modules)
	}

	root := filepath.Join(dir, "root.img")
	if err := os.WriteFile(root, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(root, 256<<20); err != nil {
		t.Fatal(err)
	}
	var img bytes.Buffer
	tw := tar.NewWriter(&img)
	tw.WriteHeader(&tar.Header{Name: "etc/", Mode: 0o755, Typeflag: tar.TypeDir})
	tw.WriteHeader(&tar.Header{Name: "etc/hostname", Mode: 0o644, Size: 6, Typeflag: tar.TypeReg})
	tw.Write([]byte("image\n"))
	tw.Close()
	image := filepath.Join(dir, "image.tar")
	if err := os.WriteFile(image, img.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	hvc := filepath.Join(dir, "hvc0.log")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu,
		"-accel", "tcg", "-m", "512", "-nodefaults", "-display", "none", "-serial", "none", "-no-reboot",
		"-kernel", k.Kernel, "-initrd", k.Initramfs,
		"-append", "console=hvc0 quiet panic=-1 machinetop.debug=1 machinetop.hostname=probe",
		"-device", "virtio-serial-pci",
		"-chardev", "file,id=con,path="+hvc,
		"-device", "virtconsole,chardev=con",
		"-drive", "if=none,id=root,format=raw,file="+root,
		"-device", "virtio-blk-pci,drive=root,serial=mt-root",
		"-drive", "if=none,id=image,format=raw,readonly=on,file="+image,
		"-device", "virtio-blk-pci,drive=image,serial=mt-image",
		"-netdev", "user,id=net0",
		"-device", "virtio-net-pci,netdev=net0,romfile=",
		// Both backends give the guest an entropy source, as vz does.
		"-object", "rng-random,id=rng,filename=/dev/urandom",
		"-device", "virtio-rng-pci,rng=rng",
	)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	const last = "machinetop-init: no /sbin/init: the agent stays PID 1"
	start := time.Now()
	var log []byte
	for !bytes.Contains(log, []byte(last)) {
		if ctx.Err() != nil {
			t.Fatalf("no %q on hvc0 within the time limit; hvc0 has:\n%s", last, log)
		}
		time.Sleep(100 * time.Millisecond)
		log, _ = os.ReadFile(hvc)
	}
	t.Logf("booted to the agent on hvc0 in %v", time.Since(start).Round(time.Millisecond))
	s := string(log)
	for _, want := range []string{
		"machinetop-init: loaded virtio_console.ko", // logged before the console existed
		"machinetop-init: formatted /dev/vd",
		"machinetop-init: root disk check: clean (formatted at this first boot",
		"machinetop-init: network: eth0 10.0.2.15/24 via 10.0.2.2",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("hvc0 lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "cannot open standard fds") {
		t.Errorf("the Go runtime could not start /init:\n%s", s)
	}
}
