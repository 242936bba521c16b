package tarcopy

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// tarOf makes a tar stream of entries (name, type, link target).
func tarOf(entries ...[3]string) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e[0], Mode: 0o755, Typeflag: e[1][0], Linkname: e[2]}
		if h.Typeflag == tar.TypeReg {
			h.Size = 2
		}
		tw.WriteHeader(h)
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte("x\n"))
		}
	}
	tw.Close()
	return b.Bytes()
}

// Whatever the stream holds (it may come from a machine's root), nothing
// is created outside the destination directory.
func FuzzExtract(f *testing.F) {
	reg, dir, sym, hard := string(tar.TypeReg), string(tar.TypeDir), string(tar.TypeSymlink), string(tar.TypeLink)
	f.Add(tarOf([3]string{"d", dir, ""}, [3]string{"d/f", reg, ""}))
	f.Add(tarOf([3]string{"d", dir, ""}, [3]string{"d/../../escape", reg, ""}))
	f.Add(tarOf([3]string{"d", dir, ""}, [3]string{"d/l", sym, "../.."}, [3]string{"d/l/escape", reg, ""}))
	f.Add(tarOf([3]string{"d", dir, ""}, [3]string{"d/l", sym, "/"}, [3]string{"d/l/escape", reg, ""}))
	f.Add(tarOf([3]string{"d", dir, ""}, [3]string{"d/h", hard, "../outside"}))
	f.Add(tarOf([3]string{"/abs", reg, ""}))
	f.Fuzz(func(t *testing.T, in []byte) {
		top := t.TempDir()
		dst := filepath.Join(top, "dst")
		if err := os.Mkdir(dst, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(top, "outside"), []byte("keep"), 0o644)
		Extract(bytes.NewReader(in), dst, "out", Options{})
		ents, err := os.ReadDir(top)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.Name() != "dst" && e.Name() != "outside" {
				t.Fatalf("extract created %s outside the destination", e.Name())
			}
		}
		if b, _ := os.ReadFile(filepath.Join(top, "outside")); string(b) != "keep" {
			t.Fatalf("extract changed a file outside the destination: %q", b)
		}
		os.Chmod(dst, 0o755)
		filepath.Walk(dst, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	})
}
