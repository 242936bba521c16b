//go:build linux

package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/machinetop/machinetop/guest/client"
	"github.com/machinetop/machinetop/guest/proto"
)

// TestCopyRoundTrip copies a tree into the "guest" (this process's agent)
// and back over the real protocol, as the current user.
func TestCopyRoundTrip(t *testing.T) {
	c := connectNew(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src := filepath.Join(t.TempDir(), "tree")
	os.MkdirAll(filepath.Join(src, "sub"), 0o750)
	big := make([]byte, 3*proto.MaxFrame+17) // several frames
	rand.Read(big)
	os.WriteFile(filepath.Join(src, "sub", "big"), big, 0o640)
	os.WriteFile(filepath.Join(src, "run"), []byte("#!/bin/sh\n"), 0o755)
	os.Symlink("sub/big", filepath.Join(src, "link"))

	me := proto.CopyRequest{UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
	guest := t.TempDir()
	in := me
	in.Path = filepath.Join(guest, "copy")
	var started int64
	var last int64
	if err := c.CopyIn(ctx, src, in, func(n int64) { started = n }, func(n int64) { last = n }); err != nil {
		t.Fatal(err)
	}
	if started != int64(len(big))+10 || last < started {
		t.Errorf("progress: size %d, last %d", started, last)
	}
	back := t.TempDir()
	out := me
	out.Path = in.Path
	if err := c.CopyOut(ctx, out, back, nil, nil); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(back, "copy", "sub", "big"))
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("big file differs after the round trip (%v)", err)
	}
	for p, want := range map[string]os.FileMode{"sub": os.ModeDir | 0o750, "sub/big": 0o640, "run": 0o755, "link": os.ModeSymlink | 0o777} {
		fi, err := os.Lstat(filepath.Join(back, "copy", p))
		if err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v (%v), want %v", p, fi.Mode(), err, want)
		}
	}

	// Failures come back as the guest's, naming its path.
	bad := me
	bad.Path = filepath.Join(guest, "missing", "x")
	err = c.CopyIn(ctx, src, bad, nil, nil)
	var ge *client.GuestError
	if !errors.As(err, &ge) || !strings.Contains(err.Error(), "parent directory") {
		t.Errorf("copy into a missing parent: %v", err)
	}
	bad.Path = filepath.Join(guest, "nosuch")
	err = c.CopyOut(ctx, bad, back, nil, nil)
	if !errors.As(err, &ge) || !strings.Contains(err.Error(), bad.Path) {
		t.Errorf("copy of a missing file: %v", err)
	}
	bad.Path = "relative"
	if err := c.CopyOut(ctx, bad, back, nil, nil); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("relative path: %v", err)
	}
	// The channel still works after failures.
	if _, err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestCopyAsUser checks that the agent, as root, reads and writes with the
// rights of the requested user, not its own.
func TestCopyAsUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: the agent switches its filesystem identity")
	}
	c := connectNew(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src := filepath.Join(t.TempDir(), "f")
	os.WriteFile(src, []byte("data"), 0o644)
	nobody := proto.CopyRequest{UID: 65534, GID: 65534}

	// Under /tmp itself: t.TempDir's parent is 0700, closed to uid 65534.
	base, err := os.MkdirTemp("", "agent-copy-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	closed := filepath.Join(base, "closed") // root's, 0755
	os.Mkdir(closed, 0o755)
	req := nobody
	req.Path = closed + "/"
	err = c.CopyIn(ctx, src, req, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("copy into a root-owned directory as uid 65534: %v, want permission denied", err)
	}
	if _, err := os.Lstat(filepath.Join(closed, "f")); err == nil {
		t.Fatal("the file was created anyway")
	}

	open := filepath.Join(base, "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	req.Path = open
	if err := c.CopyIn(ctx, src, req, nil, nil); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(open, "f"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65534 || st.Gid != 65534 {
		t.Errorf("copied file owned by %d:%d, want 65534:65534", st.Uid, st.Gid)
	}

	secret := filepath.Join(open, "secret")
	os.WriteFile(secret, []byte("s"), 0o600) // root's
	req.Path = secret
	if err := c.CopyOut(ctx, req, t.TempDir(), nil, nil); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("reading root's 0600 file as uid 65534: %v, want permission denied", err)
	}
	// The agent's own identity is untouched.
	if os.Geteuid() != 0 {
		t.Fatal("the agent lost root")
	}
}
