//go:build linux

package qemu

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/machinetop/machinetop/vm/kit"
)

// testKernel returns the distribution's cloud kernel from a kit built in a
// cache shared by test runs, or skips when it cannot be fetched.
func testKernel(t *testing.T) string {
	t.Helper()
	// The probe boots no initramfs, so any static program serves as the
	// kit's guest binary.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module stub\n"), 0o644)
	build := exec.Command("go", "build", "-o", "stub", ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building a stub guest binary: %v\n%s", err, out)
	}
	cache := filepath.Join(os.TempDir(), "machinetop-qemu-test-kit")
	k, err := kit.Ensure(context.Background(), cache, kit.Source{}, filepath.Join(dir, "stub"), io.Discard)
	if err != nil {
		t.Skipf("no guest kernel to probe with: %v", err)
	}
	return k.Kernel
}

// The probe answers within its bound whatever the host's KVM does, and
// its answer agrees with a longer look: when it says tcg although /dev/kvm
// is usable, the kernel really does not boot under KVM in 15 s either.
func TestProbeAccel(t *testing.T) {
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}
	kernel := testKernel(t)
	start := time.Now()
	got := probeAccel(context.Background(), bin, kernel, t.TempDir())
	el := time.Since(start)
	t.Logf("accelerator %s, probe took %v", got, el)
	if got != "kvm" && got != "tcg" {
		t.Fatalf("probe returned %q", got)
	}
	if el > probeTimeout+10*time.Second { // generous: a missed bound means a hang, not slowness
		t.Fatalf("probe took %v, bound is %v", el, probeTimeout)
	}
	kvmUsable := unix.Access("/dev/kvm", unix.R_OK|unix.W_OK) == nil
	if got == "kvm" && !kvmUsable {
		t.Fatal("probe chose kvm without a usable /dev/kvm")
	}
	if got == "tcg" && kvmUsable {
		if bootsUnderKVM(bin, kernel, 15*time.Second) {
			t.Fatal("KVM booted the kernel in 15 s, but the probe chose tcg")
		}
	}
}

func TestProbeWithoutKernelIsTCG(t *testing.T) {
	if got := probeAccel(context.Background(), "qemu-system-x86_64", "", ""); got != "tcg" {
		t.Fatalf("probe with no kernel = %q, want tcg", got)
	}
}

// bootsUnderKVM boots kernel under KVM as the probe does, but waits limit.
func bootsUnderKVM(bin, kernel string, limit time.Duration) bool {
	cmd := exec.Command(bin, "-accel", "kvm", "-machine", "q35", "-nodefaults", "-no-user-config",
		"-display", "none", "-serial", "stdio", "-monitor", "none", "-m", "256", "-no-reboot",
		"-kernel", kernel, "-append", "console=ttyS0 panic=-1 root=/dev/nonexistent")
	var out syncBuffer
	cmd.Stdout = &out
	if cmd.Start() != nil {
		return false
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if bytes.Contains(out.Bytes(), []byte("Kernel panic")) {
			return true
		}
	}
	return false
}
