//go:build linux

package qemu

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/machinetop/machinetop/vm/driver"
)

// otherArch is the guest architecture that is not the host's.
func otherArch() string {
	if runtime.GOARCH == "arm64" {
		return "amd64"
	}
	return "arm64"
}

// A guest of another architecture is never run under KVM: auto gives TCG
// without a probe, and a forced kvm is an error naming both.
func TestAcceleratorCrossArch(t *testing.T) {
	other := otherArch()
	got, err := (&Backend{Accel: "auto"}).Accelerator(context.Background(), other, "/nonexistent/kernel")
	if err != nil || got != "tcg" {
		t.Fatalf("auto for an %s guest: %q, %v; want tcg", other, got, err)
	}
	_, err = (&Backend{Accel: "kvm"}).Accelerator(context.Background(), other, "")
	if err == nil || !strings.Contains(err.Error(), other) || !strings.Contains(err.Error(), runtime.GOARCH) {
		t.Fatalf("kvm for an %s guest: %v, want an error naming both architectures", other, err)
	}
	if got, err := (&Backend{Accel: "tcg"}).Accelerator(context.Background(), other, ""); err != nil || got != "tcg" {
		t.Fatalf("tcg for an %s guest: %q, %v", other, got, err)
	}
}

// Features.Archs follows the emulators in PATH; the host's architecture
// is always there.
func TestFeaturesArchs(t *testing.T) {
	other := otherArch()
	emu, _ := Emulator(other)
	_, lookErr := exec.LookPath(emu)
	archs := (&Backend{}).Features().Archs
	if archs[0] != runtime.GOARCH || slices.Contains(archs, other) != (lookErr == nil) {
		t.Fatalf("Archs = %v with %s installed: %v", archs, emu, lookErr == nil)
	}
	t.Setenv("PATH", t.TempDir())
	if archs := (&Backend{}).Features().Archs; !slices.Equal(archs, []string{runtime.GOARCH}) {
		t.Fatalf("Archs = %v with no emulator in PATH, want the host's only", archs)
	}
	if _, err := (&Backend{}).binary(other); err == nil || !strings.Contains(err.Error(), emu) {
		t.Fatalf("a missing %s: %v", emu, err)
	}
}

// An arm64 guest boots on the virt board with its PL011 console, without
// KVM-only options under TCG.
func TestArm64Args(t *testing.T) {
	open := func(name string) *os.File {
		f, err := os.Create(filepath.Join(t.TempDir(), name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	spec := &driver.Spec{Name: "a", Arch: "arm64", CPUs: 1, MemoryBytes: 1 << 30, Kernel: open("k"), Initramfs: open("i"),
		Console: open("c"), RunDir: t.TempDir()}
	argsOf := func() string {
		t.Helper()
		cmd, release, err := (&Backend{Binary: "true"}).command(spec, "tcg", nil)
		if err != nil {
			t.Skipf("no emulator for %s here: %v", spec.Arch, err)
		}
		release()
		return strings.Join(cmd.Args, " ")
	}
	args := argsOf()
	for _, want := range []string{"-machine virt,", "-cpu max,pauth-impdef=on", "console=ttyAMA0 ", "virtio-net-pci", "-kernel /proc/self/fd/"} {
		if !strings.Contains(args, want) {
			t.Errorf("arm64 args lack %q: %s", want, args)
		}
	}
	spec.Arch = "amd64"
	if args := argsOf(); !strings.Contains(args, "-machine q35") || !strings.Contains(args, "console=ttyS0 ") {
		t.Errorf("amd64 args: %s", args)
	}
}
