//go:build linux

package qemu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/machinetop/machinetop/vm/driver"
	"github.com/machinetop/machinetop/vm/hostns"
	"github.com/machinetop/machinetop/vm/layout"
)

// TestMain lets the test binary serve as the hostns helper, as
// machinetop's main does.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == hostns.Command {
		os.Exit(hostns.Main(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// TestStartPassesFilesAndHides starts QEMU as the supervisor does, with a
// 9p share of a directory that contains a hidden one, and looks at QEMU
// from the host: its command line names no file of the spec (it got them
// as descriptors), its sockets are 0600, the console reaches the log it
// was given, and in QEMU's own view of the filesystem the hidden
// directory is empty while the rest of the share is there.
func TestStartPassesFilesAndHides(t *testing.T) {
	kernel := testKernel(t)
	t.Setenv("MACHINETOP_SHARE_FS", driver.Share9P)
	root := t.TempDir()
	share := filepath.Join(root, "home")
	data := filepath.Join(share, ".local", "share", "machinetop")
	machine := filepath.Join(data, "machines", "m")
	if err := os.MkdirAll(machine, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(data, "secret"), []byte("key\n"), 0o600)
	os.WriteFile(filepath.Join(share, "visible"), []byte("shared\n"), 0o644)
	os.WriteFile(filepath.Join(machine, "initrd"), make([]byte, 512), 0o600)
	os.WriteFile(filepath.Join(machine, "disk.img"), nil, 0o600)
	os.Truncate(filepath.Join(machine, "disk.img"), 1<<20)
	open := func(path string, flag int) *os.File {
		rel, _ := filepath.Rel(data, path)
		f, err := layout.OpenBeneath(data, rel, flag, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	kf, err := os.Open(kernel)
	if err != nil {
		t.Fatal(err)
	}
	defer kf.Close()
	runDir := t.TempDir()
	spec := &driver.Spec{
		Name: "qemu-test", CPUs: 1, MemoryBytes: 256 << 20,
		Kernel:    kf,
		Initramfs: open(filepath.Join(machine, "initrd"), os.O_RDONLY),
		Console:   open(filepath.Join(machine, "console.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE),
		Disks:     []driver.Disk{{File: open(filepath.Join(machine, "disk.img"), os.O_RDWR), Serial: "mt-root"}},
		RunDir:    runDir,
		Shares:    []driver.Share{{Tag: "mt0", HostPath: share}},
		Hidden:    []string{data},
	}
	be := &Backend{Accel: "tcg"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	inst, err := be.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { inst.Kill(); inst.Wait() }()
	pid := inst.PID()

	cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{kernel, machine, runDir} {
		if strings.Contains(string(cl), p) {
			t.Errorf("QEMU's command line names %s:\n%s", p, strings.ReplaceAll(string(cl), "\x00", " "))
		}
	}
	for _, s := range []string{agentSock, qmpSock} {
		if fi, err := os.Stat(filepath.Join(runDir, s)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", s, fi, err)
		}
	}
	if !be.Running(runDir, spec.Name) {
		t.Error("Running is false for the QEMU just started (pid file)")
	}

	qroot := fmt.Sprintf("/proc/%d/root", pid)
	if ents, err := os.ReadDir(qroot + data); err != nil || len(ents) != 0 {
		t.Errorf("QEMU sees %s as %v (%v), want an empty directory", data, ents, err)
	}
	if b, err := os.ReadFile(qroot + filepath.Join(share, "visible")); err != nil || string(b) != "shared\n" {
		t.Errorf("QEMU cannot read the rest of the share: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(data, "secret")); err != nil {
		t.Errorf("the test's own view lost the hidden file: %v", err)
	}

	deadline := time.Now().Add(45 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(machine, "console.log"))
		if strings.Contains(string(b), "Linux version") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no kernel output in the console log after 45 s: %q", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestStartRefusesStateShare: a share that is machinetop's own directory
// is refused before QEMU starts.
func TestStartRefusesStateShare(t *testing.T) {
	t.Setenv("MACHINETOP_SHARE_FS", driver.Share9P)
	data := t.TempDir()
	f, err := os.CreateTemp(t.TempDir(), "file")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	spec := &driver.Spec{Name: "x", RunDir: t.TempDir(), Kernel: f, Initramfs: f, Console: f,
		Shares: []driver.Share{{Tag: "mt0", HostPath: data}}, Hidden: []string{data}}
	be := &Backend{Accel: "tcg"}
	if _, err := be.Start(context.Background(), spec); err == nil || !strings.Contains(err.Error(), "machinetop's own") {
		t.Fatalf("Start sharing the data directory: %v", err)
	}
}
