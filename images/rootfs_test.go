package images

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// A version 2 file capability (cap_net_raw+ep), as setcap writes it: binary
// with NUL bytes, which must survive as a PAX record.
const capNetRaw = "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

func rootfsEntries() []ent {
	ping := file("bin/ping", "ping-binary", 0o755)
	ping.h.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": capNetRaw}
	su := file("bin/su", "su-binary", 0o4755)
	null := ent{h: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: epoch}}
	home := dir("home/user/", 0o700)
	home.h.Uid, home.h.Gid, home.h.Uname, home.h.Gname = 1000, 1000, "user", "user"
	long := "usr/share/" + strings.Repeat("long-directory-name/", 6) + "file.txt"
	return []ent{
		dir("./", 0o755),
		dir("./bin/", 0o755),
		su,
		hardlink("bin/su-again", "bin/su"),
		ping,
		file("bin/busybox", "busybox-binary", 0o755),
		symlink("bin/sh", "busybox"),
		dir("dev/", 0o755),
		null,
		dir("home/", 0o755),
		home,
		dir("tmp/", 0o1777),
		dir("usr/", 0o755),
		file(long, "deep", 0o644),
	}
}

func gzipped(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstded(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestImportRootfsKeepsMetadata(t *testing.T) {
	raw := tarBytes(t, rootfsEntries()...)
	for _, tc := range []struct {
		name string
		data []byte
	}{{"plain", raw}, {"gzip", gzipped(t, raw)}, {"zstd", zstded(t, raw)}} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			src := writeFile(t, filepath.Join(t.TempDir(), "rootfs.tar"), tc.data)
			im, err := s.Import(context.Background(), src, "Example.com/team/base", ImportOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if im.Name != "example.com/team/base" || im.Tag != "latest" {
				t.Errorf("name = %s:%s", im.Name, im.Tag)
			}
			if want := "linux/" + runtime.GOARCH; !strings.HasPrefix(im.Platform, want) {
				t.Errorf("platform = %q, want %s", im.Platform, want)
			}
			_, img, err := s.Resolve("example.com/team/base:latest")
			if err != nil {
				t.Fatal(err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if len(cf.History) != 1 || !strings.Contains(cf.History[0].Comment, "rootfs.tar") {
				t.Errorf("history = %+v, want one entry naming the file", cf.History)
			}
			if len(cf.RootFS.DiffIDs) != 1 {
				t.Errorf("diff_ids = %v, want one layer", cf.RootFS.DiffIDs)
			}

			p, err := s.RootfsTar(context.Background(), im.Digest.Hex[:8])
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(s.Root(), "rootfs", im.Digest.Hex+".tar"); p != want {
				t.Errorf("path = %s, want %s", p, want)
			}
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size()%512 != 0 {
				t.Errorf("size %d is not a multiple of 512", fi.Size())
			}
			ms := readTar(t, p)
			m := byName(ms)
			checkOrder(t, ms)
			if su := m["bin/su"]; su.h == nil || su.h.Mode != 0o4755 || su.body != "su-binary" {
				t.Errorf("bin/su = %+v, want setuid 4755 with data", su.h)
			}
			if l := m["bin/su-again"]; l.h == nil || l.h.Typeflag != tar.TypeLink || l.h.Linkname != "bin/su" {
				t.Errorf("bin/su-again = %+v, want hard link to bin/su", l.h)
			}
			if ping := m["bin/ping"]; ping.h == nil || ping.h.PAXRecords["SCHILY.xattr.security.capability"] != capNetRaw {
				t.Errorf("bin/ping lost its capability: %+v", ping.h)
			}
			if sh := m["bin/sh"]; sh.h == nil || sh.h.Typeflag != tar.TypeSymlink || sh.h.Linkname != "busybox" {
				t.Errorf("bin/sh = %+v, want symlink to busybox", sh.h)
			}
			if n := m["dev/null"]; n.h == nil || n.h.Typeflag != tar.TypeChar || n.h.Devmajor != 1 || n.h.Devminor != 3 || n.h.Mode != 0o666 {
				t.Errorf("dev/null = %+v, want char 1,3 mode 666", n.h)
			}
			if h := m["home/user/"]; h.h == nil || h.h.Uid != 1000 || h.h.Gid != 1000 || h.h.Uname != "user" || h.h.Mode != 0o700 {
				t.Errorf("home/user = %+v, want 1000:1000 0700", h.h)
			}
			if tmp := m["tmp/"]; tmp.h == nil || tmp.h.Mode != 0o1777 {
				t.Errorf("tmp = %+v, want sticky 1777", tmp.h)
			}
			long := "usr/share/" + strings.Repeat("long-directory-name/", 6) + "file.txt"
			if l := m[long]; l.body != "deep" {
				t.Errorf("long name lost: %+v", l.h)
			}
			if _, ok := m["./"]; ok {
				t.Error("root entry written")
			}

			// Cached: a second call returns the same file untouched.
			p2, err := s.RootfsTar(context.Background(), "example.com/team/base")
			if err != nil || p2 != p {
				t.Errorf("second RootfsTar = %s, %v", p2, err)
			}
			if err := s.RemoveRootfsCache("example.com/team/base"); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("cache not removed: %v", err)
			}
		})
	}
}

// checkOrder asserts what an unpacker relies on: each entry's parent
// directory comes before it, and each hard link names an earlier regular
// or special file.
func checkOrder(t *testing.T, ms []member) {
	t.Helper()
	seen := map[string]byte{}
	for _, m := range ms {
		name := strings.TrimSuffix(m.h.Name, "/")
		if d := path.Dir(name); d != "." && seen[d] != tar.TypeDir {
			t.Errorf("%s comes before its directory %s", m.h.Name, d)
		}
		if _, dup := seen[name]; dup {
			t.Errorf("%s written twice", name)
		}
		if m.h.Typeflag == tar.TypeLink {
			if tf, ok := seen[m.h.Linkname]; !ok || tf == tar.TypeDir || tf == tar.TypeLink {
				t.Errorf("hard link %s -> %s does not point at an earlier file", m.h.Name, m.h.Linkname)
			}
		}
		if m.h.Format != tar.FormatPAX && m.h.Format != tar.FormatUSTAR {
			t.Errorf("%s has format %v", m.h.Name, m.h.Format)
		}
		seen[name] = m.h.Typeflag
	}
}

func TestFlattenAppliesWhiteoutsAndOpaqueDirs(t *testing.T) {
	lower := tarBytes(t,
		dir("etc/", 0o755),
		file("etc/gone", "a", 0o644),
		file("etc/kept", "b", 0o644),
		dir("etc/olddir/", 0o755),
		file("etc/olddir/inner", "c", 0o644),
		dir("opt/", 0o755),
		file("opt/x", "x", 0o644),
		dir("opt/sub/", 0o755),
		file("opt/sub/y", "y", 0o644),
		dir("usr/", 0o755),
		dir("usr/bin/", 0o755),
		file("usr/bin/tool", "tool v1", 0o755),
		hardlink("usr/bin/tool-alias", "usr/bin/tool"),
		dir("usr/lib/", 0o755),
		file("usr/lib/libc.so", "libc", 0o644),
		symlink("lib", "usr/lib"),
		dir("var/", 0o755),
		file("var/doomed", "d", 0o644),
		hardlink("var/survivor", "var/doomed"),
	)
	upper := tarBytes(t,
		// The opaque marker's own directory comes first here, the new
		// file after; the marker must not hide opt/z from its own layer.
		dir("opt/", 0o750),
		file("opt/z", "z", 0o644),
		file("opt/.wh..wh..opq", "", 0o644),
		file("etc/.wh.gone", "", 0o644),
		file("etc/.wh.olddir", "", 0o644),
		file("etc/new", "n", 0o644),
		file("usr/bin/tool", "tool v2", 0o755),
		file("lib/added.so", "added", 0o644), // through the lib -> usr/lib symlink
		hardlink("usr/bin/libc-link", "usr/lib/libc.so"),
		file("var/.wh.doomed", "", 0o644),
	)
	s := openStore(t)
	im, err := s.Put(context.Background(), imageOf(t, HostPlatform(), lower, upper), "layered:v1")
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.RootfsTar(context.Background(), "layered:v1")
	if err != nil {
		t.Fatal(err)
	}
	ms := readTar(t, p)
	checkOrder(t, ms)
	m := byName(ms)
	for _, gone := range []string{"etc/gone", "etc/olddir/", "etc/olddir/inner", "opt/x", "opt/sub/", "opt/sub/y", "var/doomed", "lib/added.so", "opt/.wh..wh..opq", "etc/.wh.gone"} {
		if _, ok := m[gone]; ok {
			t.Errorf("%s survived", gone)
		}
	}
	want := map[string]string{
		"etc/kept":           "b",
		"etc/new":            "n",
		"opt/z":              "z",
		"usr/bin/tool":       "tool v2",
		"usr/bin/tool-alias": "tool v1", // its link target was replaced: it keeps the old file
		"usr/lib/added.so":   "added",
		"var/survivor":       "d", // its link target was deleted: it carries the data now
	}
	for name, body := range want {
		if x := m[name]; x.h == nil || x.h.Typeflag != tar.TypeReg || x.body != body {
			t.Errorf("%s = %+v %q, want regular file %q", name, x.h, x.body, body)
		}
	}
	if o := m["opt/"]; o.h == nil || o.h.Mode != 0o750 {
		t.Errorf("opt/ = %+v, want the upper layer's mode 0750", o.h)
	}
	// Name order puts usr/bin before usr/lib, so the new link carries the
	// data and the original name becomes the link.
	if l := m["usr/lib/libc.so"]; l.h == nil || l.h.Typeflag != tar.TypeLink || l.h.Linkname != "usr/bin/libc-link" {
		t.Errorf("usr/lib/libc.so = %+v, want hard link to usr/bin/libc-link", l.h)
	}
	if l := m["lib"]; l.h == nil || l.h.Typeflag != tar.TypeSymlink {
		t.Errorf("lib = %+v, want the symlink kept", l.h)
	}

	// Removing the image removes its cached root filesystem too.
	if err := s.Remove(im.Digest.Hex[:12]); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("rootfs tar still there after Remove: %v", err)
	}
}

func TestFlattenRejectsEscapesAndDanglingLinks(t *testing.T) {
	for name, layer := range map[string][]byte{
		"escape":   tarBytes(t, file("../evil", "x", 0o644)),
		"dangling": tarBytes(t, hardlink("a", "missing")),
		"dirlink":  tarBytes(t, dir("d/", 0o755), hardlink("a", "d")),
	} {
		t.Run(name, func(t *testing.T) {
			err := Flatten(context.Background(), imageOf(t, HostPlatform(), layer), &bytes.Buffer{}, t.TempDir())
			if err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestFlattenSymlinkLoop(t *testing.T) {
	layer := tarBytes(t, symlink("a", "b"), symlink("b", "a"), file("a/x", "x", 0o644))
	err := Flatten(context.Background(), imageOf(t, HostPlatform(), layer), &bytes.Buffer{}, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "symbolic links") {
		t.Fatalf("err = %v, want a symlink loop error", err)
	}
}
