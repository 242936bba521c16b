package vm

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/machinetop/machinetop/vm/layout"
)

// tarImage is an ImageSource serving one flattened root filesystem tar
// under one name; the images package provides the real one in the CLI.
type tarImage struct{ name, path, platform string }

func (ti tarImage) Rootfs(ctx context.Context, ref string) (ImageRootfs, error) {
	if ref != ti.name {
		return ImageRootfs{}, errors.New("image " + ref + " not found")
	}
	return ImageRootfs{Name: ti.name, Digest: "sha256:0123456789abcdef", Tar: ti.path, Platform: ti.platform}, nil
}

func newTestManager(t *testing.T) *Manager {
	t.Helper()
	dir := t.TempDir()
	tarPath := filepath.Join(dir, "rootfs.tar")
	f, err := os.Create(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	tw.WriteHeader(&tar.Header{Name: "etc/", Mode: 0o755, Typeflag: tar.TypeDir})
	tw.WriteHeader(&tar.Header{Name: "etc/hostname", Mode: 0o644, Size: 5})
	tw.Write([]byte("test\n"))
	tw.Close()
	f.Close()
	return &Manager{Data: layout.Data{Root: filepath.Join(dir, "data")}, Images: tarImage{"test:latest", tarPath, ""}}
}

func TestCreateDefaultsAndList(t *testing.T) {
	m := newTestManager(t)
	ctx := context.Background()
	cfg, err := m.Create(ctx, CreateOptions{Image: "test:latest"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "test-latest" || cfg.CPUs != DefaultCPUs() || cfg.MemoryBytes != DefaultMemory() || cfg.DiskBytes != DefaultDiskBytes {
		t.Fatalf("defaults: %+v", cfg)
	}
	if DefaultMemory()%GiB != 0 || DefaultMemory() < GiB {
		t.Fatalf("default memory %d is not a whole number of GiB ≥ 1 GiB", DefaultMemory())
	}
	// The first machine becomes the default; a second does not, unless asked.
	if _, err := m.Create(ctx, CreateOptions{Image: "test:latest", Name: "second", MemoryBytes: GiB, CPUs: 1}); err != nil {
		t.Fatal(err)
	}
	if d, _ := m.Default(); d != "test-latest" {
		t.Fatalf("default is %q, want the first machine", d)
	}
	ms, err := m.List(ctx)
	if err != nil || len(ms) != 2 {
		t.Fatalf("List: %v %v", ms, err)
	}
	for _, mc := range ms {
		if mc.State != StateStopped || mc.DiskAllocated > 64<<10 {
			t.Errorf("%s: state %s, disk allocated %d bytes (want stopped, a blank sparse file)", mc.Name, mc.State, mc.DiskAllocated)
		}
		if mc.Default != (mc.Name == "test-latest") {
			t.Errorf("%s: default flag %v", mc.Name, mc.Default)
		}
	}
	// The disk is blank, of the asked capacity: the guest formats it at
	// its first boot.
	disk := m.Dir(ms[0].Name).Disk()
	fi, err := os.Stat(disk)
	if err != nil || uint64(fi.Size()) != ms[0].DiskBytes {
		t.Fatalf("disk size %v, %v; want %d", fi.Size(), err, ms[0].DiskBytes)
	}
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 1<<20)
	_, err = io.ReadFull(f, head)
	f.Close()
	if err != nil || len(bytes.Trim(head, "\x00")) != 0 {
		t.Fatalf("the new disk %s does not start blank (%v)", disk, err)
	}

	second, err := m.Load("second")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetDefault(second); err != nil {
		t.Fatal(err)
	}
	if c, err := m.Resolve(""); err != nil || c.Name != "second" {
		t.Fatalf("Resolve(\"\") = %v, %v", c, err)
	}
	wasDefault, err := m.Delete(ctx, second)
	if err != nil || !wasDefault {
		t.Fatalf("Delete = %v, %v; want the default cleared", wasDefault, err)
	}
	if _, err := m.Resolve(""); err == nil {
		t.Fatal("Resolve(\"\") after deleting the default: want an error")
	}
	if _, err := m.Load("second"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Config after delete: %v, want ErrNotFound", err)
	}
}

func TestCreateRefusesBadInputAndLeavesNothing(t *testing.T) {
	m := newTestManager(t)
	ctx := context.Background()
	total, _ := HostMemory()
	for _, o := range []CreateOptions{
		{Image: "test:latest", Name: "Bad"},
		{Image: "nosuch:image"},
		{Image: "test:latest", MemoryBytes: total + GiB},
		{Image: "test:latest", MemoryBytes: MiB},
		{Image: "test:latest", CPUs: HostCPUs() + 1},
		{Image: "test:latest", DiskBytes: MiB},
		{Image: "test:latest", Kernel: "/nonexistent/vmlinuz"},
		{Image: ""},
	} {
		if _, err := m.Create(ctx, o); err == nil {
			t.Errorf("Create(%+v) succeeded, want an error", o)
		}
	}
	ents, _ := os.ReadDir(m.Data.Machines())
	for _, e := range ents {
		if e.Name() != ".lock" {
			t.Errorf("left behind: %s", e.Name())
		}
	}
	if _, err := m.Load("nosuch"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load of a missing machine: %v", err)
	}
}

func TestConcurrentCreateOneWins(t *testing.T) {
	m := newTestManager(t)
	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = m.Create(context.Background(), CreateOptions{Image: "test:latest", Name: "race", CPUs: 1, MemoryBytes: GiB})
		}()
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		if err == nil {
			wins++
		}
	}
	if wins != 1 {
		t.Fatalf("%d of %d concurrent creates won: %v", wins, n, errs)
	}
}

func TestSetValidates(t *testing.T) {
	m := newTestManager(t)
	cfg, err := m.Create(context.Background(), CreateOptions{Image: "test:latest", Name: "s", CPUs: 1, MemoryBytes: GiB})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Set(cfg, map[string]string{"memory": "2G", "cpus": "1"}); err != nil {
		t.Fatal(err)
	}
	cfg, _ = m.Load("s")
	if cfg.MemoryBytes != 2*GiB {
		t.Fatalf("memory after set: %d", cfg.MemoryBytes)
	}
	if !cfg.FileEventsEnabled() {
		t.Fatal("file events are off by default")
	}
	if err := m.Set(cfg, map[string]string{"file-events": "off"}); err != nil {
		t.Fatal(err)
	}
	if cfg, _ = m.Load("s"); cfg.FileEventsEnabled() {
		t.Fatal("file-events=off did not turn them off")
	}
	for _, kv := range []map[string]string{{"cpus": "many"}, {"memory": "lots"}, {"color": "blue"}, {"cpus": "0"}, {"kernel": "does/not/exist"}, {"file-events": "yes"}} {
		if err := m.Set(cfg, kv); err == nil {
			t.Errorf("Set(%v) succeeded, want an error", kv)
		}
	}
	if cfg2, _ := m.Load("s"); cfg2.MemoryBytes != 2*GiB || cfg2.CPUs != 1 {
		t.Fatalf("a refused set changed the config: %+v", cfg2)
	}
}

func TestBuilderMachineNeverDefault(t *testing.T) {
	m := newTestManager(t)
	if _, err := m.Create(context.Background(), CreateOptions{Image: "test:latest", Name: "builder-1", CPUs: 1, MemoryBytes: GiB, Builder: true}); err != nil {
		t.Fatal(err)
	}
	if d, _ := m.Default(); d != "" {
		t.Fatalf("a builder machine became the default: %q", d)
	}
}

// TestCorruptStateIsContained truncates one machine's config.json and the
// data directory's state file: the other machine keeps working, the
// broken one is listed with the reason, and it can be deleted.
func TestCorruptStateIsContained(t *testing.T) {
	m := newTestManager(t)
	ctx := context.Background()
	for _, n := range []string{"good", "bad"} {
		if _, err := m.Create(ctx, CreateOptions{Image: "test:latest", Name: n, CPUs: 1, MemoryBytes: GiB}); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(m.Dir("bad").Config())
	os.WriteFile(m.Dir("bad").Config(), b[:len(b)/2], 0o600)
	os.WriteFile(m.Data.State(), []byte(`{"defa`), 0o600)

	ms, err := m.List(ctx)
	if err != nil || len(ms) != 2 {
		t.Fatalf("List = %v, %v; want both machines", ms, err)
	}
	for _, mc := range ms {
		switch mc.Name {
		case "bad":
			if mc.State != StateBroken || !strings.Contains(mc.Problem, "config.json") {
				t.Errorf("bad: state %q, problem %q", mc.State, mc.Problem)
			}
		case "good":
			if mc.State != StateStopped {
				t.Errorf("good: state %q", mc.State)
			}
		}
	}
	if _, err := m.Load("bad"); !errors.Is(err, ErrBroken) || !strings.Contains(err.Error(), "machine rm bad") {
		t.Errorf("Load(bad) = %v, want ErrBroken saying how to delete it", err)
	}
	if _, err := m.Resolve(""); err == nil {
		t.Error("a corrupt state file still names a default")
	}
	good, err := m.Load("good")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetDefault(good); err != nil {
		t.Fatalf("SetDefault over a corrupt state file: %v", err)
	}
	if _, err := m.RemoveBroken("good"); err == nil {
		t.Error("RemoveBroken deleted a healthy machine")
	}
	if _, err := m.RemoveBroken("bad"); err != nil {
		t.Fatal(err)
	}
	if names, _ := m.Names(); len(names) != 1 || names[0] != "good" {
		t.Fatalf("after RemoveBroken: %v", names)
	}
}
