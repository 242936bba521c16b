package tests

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The checks of this file are what a hostile guest tries against
// machinetop's own state (the README's Security section): they run inside
// TestMachines, so as root (virtio-fs) and as the ordinary user (virtio-fs as root
// of a user namespace for busybox, 9p for Debian), with
// --home-mount rw and ro.

// victimFile makes a host file outside every machinetop directory that a
// guest would like machinetop to write to.
func victimFile(t *testing.T) (path string, content []byte) {
	path = filepath.Join(t.TempDir(), "host-file")
	content = []byte("host data the machine must not touch\n")
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, content
}

// checkUntouched fails the test when the victim changed.
func checkUntouched(t *testing.T, path string, content []byte) {
	t.Helper()
	if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, content) {
		t.Fatalf("host file %s was changed through machinetop: %q, %v", path, b, err)
	}
}

// runtimeDir is where machinetop keeps its sockets for this user (vm/layout
// RuntimeDir).
func runtimeDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "machinetop")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("machinetop-%d", os.Getuid()))
}

// testStateHidden runs, as root in machine name, what a guest would do to
// machinetop's data directory, which the shared home contains: read the
// SSH key and the machine's config, write there, plant a link at its
// console log, move the directory's parents away to put its own in place.
// All of it must fail, and the host's files stay as they were. mode names
// the home mount for messages.
func testStateHidden(t *testing.T, e *env, name, mode, victim string) {
	start := time.Now()
	defer func() {
		t.Logf("state hidden with --home-mount %s: %v", mode, time.Since(start).Round(time.Millisecond))
	}()
	rel, err := filepath.Rel(e.home, e.data)
	if err != nil || strings.HasPrefix(rel, "..") {
		t.Fatalf("the data directory %s is not inside the shared home %s: the test would prove nothing", e.data, e.home)
	}
	key := filepath.Join(e.data, "ssh", "id_ed25519")
	keyBefore, err := os.ReadFile(key)
	if err != nil {
		t.Fatalf("no SSH key on the host after a boot: %v", err)
	}
	cfg := filepath.Join(e.data, "machines", name, "config.json")
	if _, err := os.Stat(cfg); err != nil {
		t.Fatal(err)
	}
	// The share works (so the data directory's path is there), and shows
	// it empty.
	if out, errs, code := e.run(name, "", "ls", "-A", e.data); code != 0 || out != "" {
		t.Fatalf("--home-mount %s: ls -A %s in the machine: exit %d, %q %q; want an empty directory", mode, e.data, code, out, errs)
	}
	refused := [][]string{
		{"cat", key},
		{"cat", cfg},
		{"ls", filepath.Join(e.data, "machines")},
		{"sh", "-c", "echo planted > " + filepath.Join(e.data, "planted")},
		{"mkdir", "-p", filepath.Join(e.data, "machines", name)},
		{"ln", "-sf", victim, filepath.Join(e.data, "machines", name, "console.log")},
		{"mv", filepath.Join(e.home, ".local"), filepath.Join(e.home, ".local-moved")},
		{"mv", filepath.Join(e.home, ".local", "share"), filepath.Join(e.home, ".local", "share-moved")},
		{"umount", e.data},
	}
	for _, argv := range refused {
		if out, _, code := e.run(name, "", argv...); code == 0 {
			t.Errorf("--home-mount %s: %v succeeded as root in the machine (output %q)", mode, argv, out)
		}
	}
	// umount in the guest can only drop the guest's own view of the
	// share; check the directory is still hidden rather than the share
	// gone.
	if out, _, code := e.run(name, "", "ls", "-A", e.data); code != 0 || out != "" {
		t.Fatalf("--home-mount %s: after the attempts, ls -A %s shows %q (exit %d)", mode, e.data, out, code)
	}
	if b, _ := os.ReadFile(key); !bytes.Equal(b, keyBefore) {
		t.Fatal("the SSH key changed")
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("SSH key mode: %v %v, want 0600", fi, err)
	}
	if fi, err := os.Stat(filepath.Dir(key)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("SSH key directory mode: %v %v, want 0700", fi, err)
	}
	for _, p := range []string{filepath.Join(e.data, "planted"), filepath.Join(e.home, ".local-moved"), filepath.Join(e.home, ".local", "share-moved")} {
		if _, err := os.Lstat(p); err == nil {
			t.Fatalf("--home-mount %s: %s appeared on the host", mode, p)
		}
	}
	if fi, err := os.Lstat(filepath.Join(e.data, "machines", name, "console.log")); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("console.log is no longer a regular file: %v %v", fi, err)
	}
}

// testRuntimeHidden checks, in a machine that shares the directory
// holding machinetop's runtime directory at /hostrun, that the runtime
// directory (sockets, pid files, the config disk) shows empty.
func testRuntimeHidden(t *testing.T, e *env, name string) {
	rt := runtimeDir()
	if ents, err := os.ReadDir(rt); err != nil || len(ents) == 0 {
		t.Fatalf("runtime directory %s on the host: %d entries, %v; the test would prove nothing", rt, len(ents), err)
	}
	inGuest := filepath.Join("/hostrun", filepath.Base(rt))
	if out, errs, code := e.run(name, "", "ls", "-A", inGuest); code != 0 || out != "" {
		t.Fatalf("runtime directory shared at %s: ls -A: exit %d, %q %q; want an empty directory", inGuest, code, out, errs)
	}
}

// testNoFollow plays a guest that got links into a stopped machine's
// directory (machinetop's macOS backend cannot hide it, and a user may
// share it by mistake): a link at console.log and at disk.img to a host
// file. The start must refuse each, naming the link, and leave the host
// file untouched; the machine starts once the files are back.
func testNoFollow(t *testing.T, e *env, name, dir, victim string, content []byte) {
	start := time.Now()
	defer func() { t.Logf("planted links refused: %v", time.Since(start).Round(time.Millisecond)) }()
	for _, f := range []string{"console.log", "disk.img"} {
		p := filepath.Join(dir, f)
		if err := os.Rename(p, p+".kept"); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(victim, p); err != nil {
			t.Fatal(err)
		}
		e.fails("symbolic link", "machine", "start", name)
		checkUntouched(t, victim, content)
		os.Remove(p)
		if err := os.Rename(p+".kept", p); err != nil {
			t.Fatal(err)
		}
	}
}
