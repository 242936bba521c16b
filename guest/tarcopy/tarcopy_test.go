package tarcopy

import (
	"archive/tar"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// makeTree builds a directory with files of several modes, a nested
// directory, a read-only directory and a symlink.
func makeTree(t *testing.T, dir string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "sub", "deep"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "exec.sh"), []byte("#!/bin/sh\n"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "secret"), []byte("s"), 0o600))
	must(os.WriteFile(filepath.Join(dir, "sub", "deep", "f"), bytes.Repeat([]byte("x"), 100000), 0o640))
	must(os.Symlink("../exec.sh", filepath.Join(dir, "sub", "link")))
	must(os.Mkdir(filepath.Join(dir, "ro"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "ro", "in"), []byte("in"), 0o444))
	must(os.Chmod(filepath.Join(dir, "ro"), 0o555))
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	must(os.Chtimes(filepath.Join(dir, "secret"), old, old))
	t.Cleanup(func() { os.Chmod(filepath.Join(dir, "ro"), 0o755) })
}

// snapshot describes a tree: mode, size, link target, mtime of each path.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, p)
		fi, _ := d.Info()
		s := fi.Mode().String()
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			s += " " + string(b[:min(len(b), 20)]) + " " + fi.ModTime().UTC().Format(time.RFC3339)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			l, _ := os.Readlink(p)
			s += " -> " + l
		}
		out[rel] = s
		return nil
	})
	return out
}

func roundTrip(t *testing.T, src, dst string) error {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, src); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(src)
	if err != nil {
		t.Fatal(err)
	}
	dir, name, err := Target(dst, filepath.Base(src), fi.IsDir())
	if err != nil {
		return err
	}
	return Extract(&buf, dir, name, Options{})
}

func TestRoundTripDirectory(t *testing.T) {
	src := filepath.Join(t.TempDir(), "tree")
	makeTree(t, src)
	out := t.TempDir()
	// An existing directory: the copy lands inside it.
	if err := roundTrip(t, src, out); err != nil {
		t.Fatal(err)
	}
	want, got := snapshot(t, src), snapshot(t, filepath.Join(out, "tree"))
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d entries, want %d", len(got), len(want))
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(out, "tree", "ro"), 0o755) })

	// A new name: the copy is the directory itself.
	if err := roundTrip(t, src, filepath.Join(out, "renamed")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "renamed", "sub", "deep", "f")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(out, "renamed", "ro"), 0o755) })
	// Again onto the same name merges (read-only directories included).
	if err := roundTrip(t, src, filepath.Join(out, "renamed")); err != nil {
		t.Fatal(err)
	}
}

func TestTargetErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o644)
	for _, tc := range []struct {
		dst   string
		isDir bool
		want  string
	}{
		{filepath.Join(dir, "missing", "f"), false, "parent directory"},
		{file, true, "cannot copy a directory onto a file"},
		{filepath.Join(file, "x"), false, "is not a directory"},
		{filepath.Join(dir, "nodir") + "/", false, "no such directory"},
	} {
		_, _, err := Target(tc.dst, "src", tc.isDir)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Target(%q): got %v, want %q", tc.dst, err, tc.want)
		}
	}
	// A file onto an existing file replaces it.
	d, n, err := Target(file, "src", false)
	if err != nil || d != dir || n != "file" {
		t.Errorf("Target(file) = %q %q %v", d, n, err)
	}
}

// archive builds a tar stream from headers (files get body "x").
func archive(t *testing.T, hdrs ...*tar.Header) *bytes.Buffer {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		if h.Typeflag == tar.TypeReg {
			h.Size = 1
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		tw.WriteHeader(h)
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte("x"))
		}
	}
	tw.Close()
	return &buf
}

func TestExtractRefusesEscapes(t *testing.T) {
	outside := t.TempDir()
	for _, tc := range []struct {
		name string
		hdrs []*tar.Header
		want string
	}{
		{"dotdot", []*tar.Header{
			{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755},
			{Name: "d/../../evil", Typeflag: tar.TypeReg},
		}, "outside the destination"},
		{"absolute", []*tar.Header{{Name: "/etc/evil", Typeflag: tar.TypeReg}}, "outside the destination"},
		{"second tree", []*tar.Header{
			{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755},
			{Name: "other", Typeflag: tar.TypeReg},
		}, "outside the copied tree"},
		// A symlink in the archive pointing out, then a file through it.
		{"through symlink", []*tar.Header{
			{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755},
			{Name: "d/l", Typeflag: tar.TypeSymlink, Linkname: outside},
			{Name: "d/l/evil", Typeflag: tar.TypeReg},
		}, "d/l/evil"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := t.TempDir()
			err := Extract(archive(t, tc.hdrs...), dst, "d", Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Fatalf("wrote outside the destination: %v", ents)
			}
		})
	}
}

func TestExtractReplacesSymlinkNotItsTarget(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(outside, []byte("keep"), 0o644)
	dst := t.TempDir()
	os.Symlink(outside, filepath.Join(dst, "f"))
	if err := Extract(archive(t, &tar.Header{Name: "f", Typeflag: tar.TypeReg}), dst, "f", Options{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(outside); string(b) != "keep" {
		t.Fatalf("the symlink's target was written: %q", b)
	}
	if fi, _ := os.Lstat(filepath.Join(dst, "f")); !fi.Mode().IsRegular() {
		t.Fatalf("dst/f is %v, want a regular file", fi.Mode())
	}
}
