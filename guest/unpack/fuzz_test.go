//go:build linux

package unpack

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// Whatever the image's tar holds, nothing lands outside the root and no
// file outside it changes.
func FuzzUnpack(f *testing.F) {
	if os.Geteuid() != 0 {
		f.Skip("needs root")
	}
	seed := func(hs ...tar.Header) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, h := range hs {
			if h.Typeflag == tar.TypeReg {
				h.Size = 1
			}
			tw.WriteHeader(&h)
			if h.Typeflag == tar.TypeReg {
				tw.Write([]byte("x"))
			}
		}
		tw.Close()
		return b.Bytes()
	}
	f.Add(seed(tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}, tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644}))
	f.Add(seed(tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/.."}, tar.Header{Name: "l/evil", Typeflag: tar.TypeReg, Mode: 0o644}))
	f.Add(seed(tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "../outside"}, tar.Header{Name: "l", Typeflag: tar.TypeReg, Mode: 0o644}))
	f.Add(seed(tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "../outside"}))
	f.Add(seed(tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3, Mode: 0o666}))
	f.Fuzz(func(t *testing.T, in []byte) {
		parent := t.TempDir()
		root := filepath.Join(parent, "root")
		os.Mkdir(root, 0o755)
		outside := filepath.Join(parent, "outside")
		os.WriteFile(outside, []byte("secret"), 0o644)
		Unpack(bytes.NewReader(in), root, nil)
		ents, _ := os.ReadDir(parent)
		for _, e := range ents {
			if e.Name() != "root" && e.Name() != "outside" {
				t.Fatalf("unpack created %s outside the root", e.Name())
			}
		}
		if b, _ := os.ReadFile(outside); string(b) != "secret" {
			t.Fatalf("unpack changed a file outside the root: %q", b)
		}
		if fi, err := os.Lstat(outside); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
			t.Fatalf("the file outside the root: %v, %v", fi, err)
		}
		if _, err := os.Stat("/evil"); err == nil {
			t.Fatal("unpack created /evil")
		}
	})
}
