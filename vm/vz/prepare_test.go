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
)

func writeFile(t *testing.T, path string, b []byte) string {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func validSpec(t *testing.T) *driver.Spec {
	dir := t.TempDir()
	return &driver.Spec{
		Name:        "dev",
		CPUs:        2,
		MemoryBytes: 2048 * mib,
		Kernel:      writeFile(t, filepath.Join(dir, "vmlinuz"), []byte("k")),
		Initramfs:   writeFile(t, filepath.Join(dir, "initrd"), []byte("i")),
		Cmdline:     "quiet",
		Disks: []driver.Disk{
			{Path: writeFile(t, filepath.Join(dir, "root.img"), nil), Serial: proto.RootSerial},
			{Path: writeFile(t, filepath.Join(dir, "image.tar"), nil), Serial: proto.ImageSerial, ReadOnly: true},
		},
		ConsoleLog: filepath.Join(dir, "console.log"),
		RunDir:     dir,
		StateDir:   dir,
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
		"no kernel":      func(s *driver.Spec) { s.Kernel = filepath.Join(s.RunDir, "missing") },
		"dir as initrd":  func(s *driver.Spec) { s.Initramfs = s.RunDir },
		"no console":     func(s *driver.Spec) { s.ConsoleLog = "" },
		"no run dir":     func(s *driver.Spec) { s.RunDir = filepath.Join(s.StateDir, "missing") },
		"no state dir":   func(s *driver.Spec) { s.StateDir = filepath.Join(s.RunDir, "missing") },
		"missing disk":   func(s *driver.Spec) { s.Disks[0].Path += ".gone" },
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
	path := filepath.Join(t.TempDir(), MachineIDFile)
	calls := 0
	create := func() ([]byte, error) { calls++; return []byte{1, 2, 3}, nil }
	for range 2 {
		b, err := loadOrCreate(path, create)
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
	raw := writeFile(t, filepath.Join(dir, "Image"), fakeImage())
	if got, err := linuxKernel("/any/bzImage", dir, "amd64"); err != nil || got != "/any/bzImage" {
		t.Errorf("amd64: %q, %v", got, err)
	}
	if got, err := linuxKernel(raw, dir, "arm64"); err != nil || got != raw {
		t.Errorf("raw Image: %q, %v", got, err)
	}
	for name, content := range map[string][]byte{
		"vmlinuz.gz":    gzipped(t, fakeImage()),
		"vmlinuz.zboot": zboot(gzipped(t, fakeImage()), "gzip"),
	} {
		got, err := linuxKernel(writeFile(t, filepath.Join(dir, name), content), dir, "arm64")
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
		"gzip-no-arm": gzipped(t, bytes.Repeat([]byte{1}, 100)),
	} {
		if got, err := linuxKernel(writeFile(t, filepath.Join(dir, name), content), dir, "arm64"); err == nil {
			t.Errorf("%s: accepted as %s", name, got)
		}
	}
}
