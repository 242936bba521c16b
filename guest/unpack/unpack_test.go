//go:build linux

package unpack

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var mtime = time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)

// capNetRaw builds a security.capability value as setcap writes it:
// struct vfs_cap_data with VFS_CAP_REVISION_2, the effective flag, and
// CAP_NET_RAW (13) permitted (capability(7), linux/capability.h).
func capNetRaw() []byte {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000000|0x1) // revision 2 | effective
	binary.LittleEndian.PutUint32(b[4:], 1<<13)          // permitted, low word
	return b
}

type entry struct {
	hdr  tar.Header
	body string
}

func mkTar(t *testing.T, entries ...entry) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.ModTime.IsZero() {
			h.ModTime = mtime
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if h.PAXRecords != nil {
			h.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if e.body != "" {
			tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

func stat(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func requireRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

func TestUnpackRootFilesystem(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	// Entries already there that the image replaces.
	os.MkdirAll(filepath.Join(root, "etc/motd"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/motd/old"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(root, "var"), []byte("file where a dir goes"), 0o644)
	outside := filepath.Join(t.TempDir(), "outside")
	os.WriteFile(outside, []byte("keep"), 0o644)
	os.Symlink(outside, filepath.Join(root, "etc/issue"))

	buf := mkTar(t,
		entry{hdr: tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755}},
		entry{hdr: tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}},
		entry{hdr: tar.Header{Name: "etc/motd", Typeflag: tar.TypeReg, Mode: 0o644}, body: "hello\n"},
		entry{hdr: tar.Header{Name: "etc/issue", Typeflag: tar.TypeReg, Mode: 0o644}, body: "new issue\n"},
		entry{hdr: tar.Header{Name: "var/", Typeflag: tar.TypeDir, Mode: 0o755}},
		entry{hdr: tar.Header{Name: "usr/bin/su", Typeflag: tar.TypeReg, Mode: 0o4755}, body: "su"},
		entry{hdr: tar.Header{Name: "usr/bin/ping", Typeflag: tar.TypeReg, Mode: 0o755, Uid: 1000, Gid: 1001,
			PAXRecords: map[string]string{
				"SCHILY.xattr.security.capability": string(capNetRaw()),
				"SCHILY.xattr.user.note":           "pong",
			}}, body: "ping"},
		entry{hdr: tar.Header{Name: "usr/bin/ping6", Typeflag: tar.TypeLink, Linkname: "usr/bin/ping"}},
		entry{hdr: tar.Header{Name: "usr/bin/wall", Typeflag: tar.TypeReg, Mode: 0o2755, Gid: 5}, body: "wall"},
		entry{hdr: tar.Header{Name: "bin", Typeflag: tar.TypeSymlink, Linkname: "usr/bin", Uid: 7, Gid: 8}},
		entry{hdr: tar.Header{Name: "bin/true", Typeflag: tar.TypeReg, Mode: 0o755}, body: "via symlink"},
		entry{hdr: tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}},
		entry{hdr: tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}},
		entry{hdr: tar.Header{Name: "dev/vda", Typeflag: tar.TypeBlock, Mode: 0o660, Gid: 6, Devmajor: 254, Devminor: 0}},
		entry{hdr: tar.Header{Name: "run/initctl", Typeflag: tar.TypeFifo, Mode: 0o600}},
	)
	var warnings []string
	st, err := Unpack(buf, root, func(m string) { warnings = append(warnings, m) })
	if err != nil {
		t.Fatal(err)
	}
	if st.Entries != 15 || len(warnings) != 0 {
		t.Fatalf("stats %+v warnings %v", st, warnings)
	}

	if b, _ := os.ReadFile(filepath.Join(root, "etc/motd")); string(b) != "hello\n" {
		t.Fatalf("motd %q", b)
	}
	// The symlink was replaced, not written through.
	if b, _ := os.ReadFile(outside); string(b) != "keep" {
		t.Fatalf("wrote through a symlink: %q", b)
	}
	if s := stat(t, filepath.Join(root, "etc/issue")); s.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Fatalf("etc/issue mode %o", s.Mode)
	}
	if s := stat(t, filepath.Join(root, "var")); s.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Fatalf("var mode %o", s.Mode)
	}

	su := stat(t, filepath.Join(root, "usr/bin/su"))
	if su.Mode&0o7777 != 0o4755 || su.Uid != 0 {
		t.Fatalf("su mode %o uid %d", su.Mode, su.Uid)
	}
	if w := stat(t, filepath.Join(root, "usr/bin/wall")); w.Mode&0o7777 != 0o2755 || w.Gid != 5 {
		t.Fatalf("wall mode %o gid %d", w.Mode, w.Gid)
	}
	ping := stat(t, filepath.Join(root, "usr/bin/ping"))
	if ping.Uid != 1000 || ping.Gid != 1001 || ping.Nlink != 2 {
		t.Fatalf("ping uid %d gid %d nlink %d", ping.Uid, ping.Gid, ping.Nlink)
	}
	if ping6 := stat(t, filepath.Join(root, "usr/bin/ping6")); ping6.Ino != ping.Ino {
		t.Fatal("hard link has its own inode")
	}
	capb := make([]byte, 64)
	n, err := unix.Getxattr(filepath.Join(root, "usr/bin/ping"), "security.capability", capb)
	if err != nil || !bytes.Equal(capb[:n], capNetRaw()) {
		t.Fatalf("security.capability %x, %v", capb[:n], err)
	}
	n, err = unix.Getxattr(filepath.Join(root, "usr/bin/ping"), "user.note", capb)
	if err != nil || string(capb[:n]) != "pong" {
		t.Fatalf("user.note %q, %v", capb[:n], err)
	}

	bin := stat(t, filepath.Join(root, "bin"))
	if bin.Mode&unix.S_IFMT != unix.S_IFLNK || bin.Uid != 7 || bin.Gid != 8 || bin.Mtim.Sec != mtime.Unix() {
		t.Fatalf("bin symlink mode %o uid %d gid %d mtime %d", bin.Mode, bin.Uid, bin.Gid, bin.Mtim.Sec)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "usr/bin/true")); string(b) != "via symlink" {
		t.Fatalf("bin/true through symlink: %q", b)
	}
	if tmp := stat(t, filepath.Join(root, "tmp")); tmp.Mode&0o7777 != 0o1777 {
		t.Fatalf("tmp mode %o", tmp.Mode)
	}
	null := stat(t, filepath.Join(root, "dev/null"))
	if null.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(null.Rdev) != 1 || unix.Minor(null.Rdev) != 3 || null.Mode&0o777 != 0o666 {
		t.Fatalf("dev/null mode %o rdev %x", null.Mode, null.Rdev)
	}
	if vda := stat(t, filepath.Join(root, "dev/vda")); vda.Mode&unix.S_IFMT != unix.S_IFBLK || vda.Gid != 6 {
		t.Fatalf("dev/vda mode %o", vda.Mode)
	}
	if f := stat(t, filepath.Join(root, "run/initctl")); f.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Fatalf("fifo mode %o", f.Mode)
	}
	// Directory times are set after their contents.
	for _, d := range []string{"", "etc", "usr/bin", "var"} {
		if s := stat(t, filepath.Join(root, d)); d != "usr/bin" && s.Mtim.Sec != mtime.Unix() {
			t.Fatalf("%q mtime %v", d, time.Unix(s.Mtim.Sec, 0))
		}
	}
	if s := stat(t, filepath.Join(root, "etc/motd")); s.Mtim.Sec != mtime.Unix() {
		t.Fatalf("motd mtime %v", time.Unix(s.Mtim.Sec, 0))
	}
}

func TestUnpackRefusesEscapes(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name    string
		entries []entry
	}{
		{"dotdot name", []entry{{hdr: tar.Header{Name: "../evil", Typeflag: tar.TypeReg, Mode: 0o644}, body: "x"}}},
		{"dotdot inside", []entry{{hdr: tar.Header{Name: "a/../../evil", Typeflag: tar.TypeReg, Mode: 0o644}, body: "x"}}},
		{"hard link out", []entry{{hdr: tar.Header{Name: "evil", Typeflag: tar.TypeLink, Linkname: "../outside"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			root := filepath.Join(parent, "root")
			os.Mkdir(root, 0o755)
			os.WriteFile(filepath.Join(parent, "outside"), []byte("secret"), 0o644)
			if _, err := Unpack(mkTar(t, tc.entries...), root, nil); err == nil || !strings.Contains(err.Error(), "..") {
				t.Fatalf("err = %v, want a refusal", err)
			}
			if _, err := os.Stat(filepath.Join(parent, "evil")); err == nil {
				t.Fatal("created a file outside the root")
			}
		})
	}
}

// Symlinks in parents resolve inside the root, as they would in the
// running guest: nothing lands outside.
func TestUnpackSymlinkTraversalStaysInside(t *testing.T) {
	requireRoot(t)
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	os.Mkdir(root, 0o755)
	buf := mkTar(t,
		entry{hdr: tar.Header{Name: "abs", Typeflag: tar.TypeSymlink, Linkname: "/"}},
		entry{hdr: tar.Header{Name: "abs/owned", Typeflag: tar.TypeReg, Mode: 0o644}, body: "x"},
		entry{hdr: tar.Header{Name: "rel", Typeflag: tar.TypeSymlink, Linkname: "../../../.."}},
		entry{hdr: tar.Header{Name: "rel/owned2", Typeflag: tar.TypeReg, Mode: 0o644}, body: "y"},
		entry{hdr: tar.Header{Name: "hl", Typeflag: tar.TypeLink, Linkname: "rel/owned2"}},
	)
	if _, err := Unpack(buf, root, nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(parent, "owned"), filepath.Join(parent, "owned2")} {
		if _, err := os.Lstat(p); err == nil {
			t.Fatalf("%s created outside the root", p)
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "owned")); err != nil || string(b) != "x" {
		t.Fatalf("abs/owned not inside: %q %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "owned2")); err != nil || string(b) != "y" {
		t.Fatalf("rel/owned2 not at the root: %q %v", b, err)
	}
	if a, b := stat(t, filepath.Join(root, "owned2")), stat(t, filepath.Join(root, "hl")); a.Ino != b.Ino {
		t.Fatal("hard link through symlink is not the same inode")
	}
}

// A parent that is a symlink to a host directory missing in the root is
// an error, and nothing is created on the host.
func TestUnpackDanglingAbsoluteParent(t *testing.T) {
	requireRoot(t)
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	os.Mkdir(root, 0o755)
	buf := mkTar(t,
		entry{hdr: tar.Header{Name: "abs", Typeflag: tar.TypeSymlink, Linkname: parent}},
		entry{hdr: tar.Header{Name: "abs/owned", Typeflag: tar.TypeReg, Mode: 0o644}, body: "x"},
	)
	if _, err := Unpack(buf, root, nil); err == nil {
		t.Fatal("unpacked through a dangling absolute symlink")
	}
	if _, err := os.Lstat(filepath.Join(parent, "owned")); err == nil {
		t.Fatal("created a file outside the root")
	}
}

func TestResolveInRootFallback(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "usr/lib/x"), 0o755)
	os.Symlink("/usr/lib", filepath.Join(root, "lib"))
	os.Symlink("../../../..", filepath.Join(root, "usr/up"))
	os.Symlink("loop", filepath.Join(root, "loop"))
	for in, want := range map[string]string{
		"lib/x":       "usr/lib/x",
		"usr/up/lib":  "usr/lib",
		"../../etc":   "etc",
		"usr/./lib/x": "usr/lib/x",
	} {
		got, err := resolveInRoot(root, in)
		if err != nil || got != root+"/"+want {
			t.Errorf("resolveInRoot(%q) = %q, %v; want %q", in, got, err, root+"/"+want)
		}
	}
	if _, err := resolveInRoot(root, "loop/x"); err != unix.ELOOP {
		t.Errorf("loop: %v", err)
	}
}
