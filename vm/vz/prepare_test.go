package vz

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/vm/driver"
	"github.com/machinetop/machinetop/vm/layout"
)

func writeFile(t *testing.T, path string, b []byte) string {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// openFile writes b to path and opens it as the supervisor would.
func openFile(t *testing.T, path string, b []byte) *os.File {
	t.Helper()
	writeFile(t, path, b)
	f, err := layout.OpenBeneath(filepath.Dir(path), filepath.Base(path), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func validSpec(t *testing.T) *driver.Spec {
	dir := t.TempDir()
	return &driver.Spec{
		Name:        "dev",
		CPUs:        2,
		MemoryBytes: 2048 * mib,
		Kernel:      openFile(t, filepath.Join(dir, "vmlinuz"), []byte("k")),
		Initramfs:   openFile(t, filepath.Join(dir, "initrd"), []byte("i")),
		Cmdline:     "quiet",
		Disks: []driver.Disk{
			{File: openFile(t, filepath.Join(dir, "root.img"), nil), Serial: proto.RootSerial},
			{File: openFile(t, filepath.Join(dir, "image.tar"), nil), Serial: proto.ImageSerial, ReadOnly: true},
		},
		Console:  openFile(t, filepath.Join(dir, "console.log"), nil),
		RunDir:   dir,
		StateDir: dir,
	}
}

func TestCheckSpec(t *testing.T) {
	if err := checkSpec(validSpec(t)); err != nil {
		t.Fatalf("valid spec rejected: %v", err)
	}
	cases := map[string]func(*driver.Spec){
		"no name":        func(s *driver.Spec) { s.Name = "" },
		"no cpus":        func(s *driver.Spec) { s.CPUs = 0 },
		"odd memory":     func(s *driver.Spec) { s.MemoryBytes += 1 },
		"no memory":      func(s *driver.Spec) { s.MemoryBytes = 0 },
		"no kernel":      func(s *driver.Spec) { s.Kernel = nil },
		"dir as initrd":  func(s *driver.Spec) { s.Initramfs, _ = os.Open(s.RunDir) },
		"no console":     func(s *driver.Spec) { s.Console = nil },
		"no run dir":     func(s *driver.Spec) { s.RunDir = filepath.Join(s.StateDir, "missing") },
		"no state dir":   func(s *driver.Spec) { s.StateDir = filepath.Join(s.RunDir, "missing") },
		"missing disk":   func(s *driver.Spec) { s.Disks[0].File = nil },
		"empty serial":   func(s *driver.Spec) { s.Disks[1].Serial = "" },
		"long serial":    func(s *driver.Spec) { s.Disks[1].Serial = strings.Repeat("x", MaxSerialLen+1) },
		"non-ascii":      func(s *driver.Spec) { s.Disks[1].Serial = "mt-räder" },
		"same serial":    func(s *driver.Spec) { s.Disks[1].Serial = s.Disks[0].Serial },
		"control in ser": func(s *driver.Spec) { s.Disks[0].Serial = "mt\n" },
	}
	for name, mutate := range cases {
		s := validSpec(t)
		mutate(s)
		if err := checkSpec(s); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := checkSpec(nil); err == nil {
		t.Error("nil spec accepted")
	}
	s := validSpec(t)
	s.StateDir = ""
	if err := checkSpec(s); err != nil {
		t.Errorf("empty StateDir rejected: %v", err)
	}
	if stateDir(s) != s.RunDir {
		t.Errorf("stateDir without StateDir = %q, want RunDir", stateDir(s))
	}
}

func TestSerialsFit(t *testing.T) {
	for _, s := range []string{proto.RootSerial, proto.ImageSerial, strings.Repeat("a", MaxSerialLen)} {
		if err := checkSerial(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
}

func TestCommandLine(t *testing.T) {
	if got := commandLine("quiet panic=-1"); got != "console=hvc0 quiet panic=-1" {
		t.Errorf("commandLine = %q", got)
	}
	if got := commandLine(""); got != "console=hvc0" {
		t.Errorf("commandLine(\"\") = %q", got)
	}
}

func TestMACAddress(t *testing.T) {
	dir := t.TempDir()
	a, err := macAddress(dir, "dev")
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 6 || a[0]&0x01 != 0 || a[0]&0x02 == 0 {
		t.Errorf("MAC %s is not unicast and locally administered", a)
	}
	b, err := macAddress(dir, "dev")
	if err != nil || b.String() != a.String() {
		t.Errorf("second call: %s, %v; want %s", b, err, a)
	}
	// Persisted: the file wins over derivation.
	writeFile(t, filepath.Join(dir, MACFile), []byte("02:00:00:00:00:01\n"))
	if c, err := macAddress(dir, "dev"); err != nil || c.String() != "02:00:00:00:00:01" {
		t.Errorf("stored MAC not used: %s, %v", c, err)
	}
	other, err := macAddress(t.TempDir(), "dev2")
	if err != nil || other.String() == a.String() {
		t.Errorf("another machine got %s (%v), same as %s", other, err, a)
	}
	writeFile(t, filepath.Join(dir, MACFile), []byte("01:00:00:00:00:01\n"))
	if _, err := macAddress(dir, "dev"); err == nil {
		t.Error("multicast MAC accepted")
	}
}

func TestLoadOrCreate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, MachineIDFile)
	calls := 0
	create := func() ([]byte, error) { calls++; return []byte{1, 2, 3}, nil }
	for range 2 {
		b, err := loadOrCreate(dir, MachineIDFile, create)
		if err != nil || !bytes.Equal(b, []byte{1, 2, 3}) {
			t.Fatalf("loadOrCreate = %v, %v", b, err)
		}
	}
	if calls != 1 {
		t.Errorf("create called %d times, want 1", calls)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("stored file: %v, %v", fi, err)
	}
	// A link planted in its place is refused, not read.
	other := writeFile(t, filepath.Join(t.TempDir(), "secret"), []byte("host secret"))
	os.Remove(path)
	os.Symlink(other, path)
	if b, err := loadOrCreate(dir, MachineIDFile, create); err == nil {
		t.Errorf("loadOrCreate followed a link: read %q", b)
	}
}

func TestFrameworkPath(t *testing.T) {
	dir := t.TempDir()
	f := openFile(t, filepath.Join(dir, "disk.img"), []byte("d"))
	if p, err := frameworkPath(f); err != nil || p != f.Name() {
		t.Fatalf("frameworkPath = %q, %v", p, err)
	}
	// Swapped for a link after it was opened: refused.
	os.Rename(f.Name(), f.Name()+".moved")
	os.Symlink(f.Name()+".moved", f.Name())
	if p, err := frameworkPath(f); err == nil {
		t.Fatalf("frameworkPath accepted a link in place of the file: %q", p)
	}
}

// fakeImage is a minimal arm64 Image: a 64-byte header with the magic.
func fakeImage() []byte {
	img := make([]byte, 4096)
	copy(img[0x38:], arm64Magic)
	img[100] = 0xaa
	return img
}

func gzipped(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zboot(payload []byte, comp string) []byte {
	const off = 0x200
	b := make([]byte, off)
	copy(b, "MZ")
	copy(b[4:], "zimg")
	binary.LittleEndian.PutUint32(b[8:], off)
	binary.LittleEndian.PutUint32(b[12:], uint32(len(payload)))
	copy(b[24:], comp)
	return append(append(b, payload...), make([]byte, 64)...)
}

func TestLinuxKernel(t *testing.T) {
	dir := t.TempDir()
	raw := openFile(t, filepath.Join(dir, "Image"), fakeImage())
	bz := openFile(t, filepath.Join(dir, "bzImage"), []byte("x86"))
	if got, err := linuxKernel(bz, dir, "amd64"); err != nil || got != bz.Name() {
		t.Errorf("amd64: %q, %v", got, err)
	}
	if got, err := linuxKernel(raw, dir, "arm64"); err != nil || got != raw.Name() {
		t.Errorf("raw Image: %q, %v", got, err)
	}
	for name, content := range map[string][]byte{
		"vmlinuz.gz":    gzipped(t, fakeImage()),
		"vmlinuz.zboot": zboot(gzipped(t, fakeImage()), "gzip"),
	} {
		got, err := linuxKernel(openFile(t, filepath.Join(dir, name), content), dir, "arm64")
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		b, err := os.ReadFile(got)
		if err != nil || !bytes.Equal(b, fakeImage()) {
			t.Errorf("%s: unpacked to %s, content differs (%v)", name, got, err)
		}
	}
	for name, content := range map[string][]byte{
		"zstd.zboot":  zboot([]byte("whatever"), "zstd"),
		"garbage":     bytes.Repeat([]byte{7}, 100),
		"short":       []byte("MZ"),
		"empty":       nil,
		"gzip-no-arm": gzipped(t, bytes.Repeat([]byte{1}, 100)),
	} {
		if got, err := linuxKernel(openFile(t, filepath.Join(dir, name), content), dir, "arm64"); err == nil {
			t.Errorf("%s: accepted as %s", name, got)
		}
	}
}
