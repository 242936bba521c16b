//go:build linux

package initrd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/machinetop/machinetop/guest/proto"
)

func TestProbeDisk(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string, size int64, at int64, data []byte) string {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		f.Truncate(size)
		if data != nil {
			f.WriteAt(data, at)
		}
		f.Close()
		return p
	}
	for _, c := range []struct {
		name string
		path string
		want diskState
	}{
		{"sparse", mk("sparse", 1<<30, 0, nil), diskBlank},
		{"magic", mk("magic", 1<<20, superblockMagicOffset, []byte{0x53, 0xEF}), diskExt},
		{"other data", mk("other", 1<<20, 40000, []byte("x")), diskUnknown},
	} {
		got, err := probeDisk(c.path)
		if err != nil || got != c.want {
			t.Errorf("%s: %v %v, want %v", c.name, got, err, c.want)
		}
	}
	if _, err := probeDisk(mk("tiny", 512, 0, nil)); err == nil {
		t.Errorf("a disk smaller than a superblock: no error")
	}
	// A real ext4 filesystem, where the host can make one.
	mkfs, err := exec.LookPath("mke2fs")
	if err != nil {
		mkfs = "/sbin/mke2fs"
	}
	p := mk("ext4", 64<<20, 0, nil)
	if out, err := exec.Command(mkfs, "-q", "-F", "-t", "ext4", p).CombinedOutput(); err != nil {
		t.Logf("no mke2fs on this host (%v %s): real filesystem not probed", err, out)
		return
	}
	if got, err := probeDisk(p); err != nil || got != diskExt {
		t.Errorf("mke2fs's filesystem: %v %v, want diskExt", got, err)
	}
}

func TestDescribeCheck(t *testing.T) {
	for _, c := range []struct {
		dc   proto.DiskCheck
		want string
	}{
		{proto.DiskCheck{Result: proto.DiskClean, Millis: 12}, "clean (e2fsck -p exit 0, 12 ms)"},
		{proto.DiskCheck{Result: proto.DiskClean, Formatted: true, Millis: 700}, "clean (formatted at this first boot, e2fsck -p exit 0, 700 ms)"},
		{proto.DiskCheck{Result: proto.DiskFixed, JournalRecovered: true, ExitCode: 1, Millis: 90}, "fixed (journal recovered, e2fsck -p exit 1, 90 ms)"},
		{proto.DiskCheck{Result: proto.DiskFailed, ExitCode: 4, RepairExitCode: 12, Millis: 5}, "failed (e2fsck -p exit 4, e2fsck -fy exit 12, 5 ms)"},
	} {
		if got := describeCheck(&c.dc); got != c.want {
			t.Errorf("describeCheck(%+v) = %q, want %q", c.dc, got, c.want)
		}
	}
	if s := tail(strings.Repeat("a", 10)+"end", 3); s != "end" {
		t.Errorf("tail: %q", s)
	}
}
