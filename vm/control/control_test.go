package control

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// serveOnce listens on a socket in a fresh directory and answers the
// first connection's request line by writing reply in one write, then
// closing (when hangUp) or waiting for the client to close.
func serveOnce(t *testing.T, reply string, hangUp bool) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ctl.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var req Request
		if err := ReadLine(c, &req); err != nil {
			return
		}
		c.Write([]byte(reply))
		if !hangUp {
			io.Copy(io.Discard, c)
		}
	}()
	return path
}

// The bytes that arrive in the same read as the response line (the
// agent's first bytes, for OpAgent) are the connection's first bytes,
// although Dial reads its response through a buffer.
func TestDialKeepsWhatFollowsTheResponse(t *testing.T) {
	path := serveOnce(t, `{"status":{"state":"running"}}`+"\nagent bytes", true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := Dial(ctx, path, Request{Op: OpAgent})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if resp.Status == nil || resp.Status.State != "running" {
		t.Fatalf("response %+v", resp)
	}
	rest, err := io.ReadAll(c)
	if err != nil || string(rest) != "agent bytes" {
		t.Fatalf("after the response: %q, %v; want %q", rest, err, "agent bytes")
	}
}

// Watch sees every status of a burst that arrives in one read.
func TestWatchReadsEveryLineOfABurst(t *testing.T) {
	path := serveOnce(t, `{"status":{"state":"starting"}}`+"\n"+`{"status":{"state":"running"}}`+"\n"+`{"status":{"state":"stopping"}}`+"\n", false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var seen []string
	err := Watch(ctx, path, func(s *Status) bool {
		seen = append(seen, string(s.State))
		return len(seen) < 3
	})
	if err != nil || len(seen) != 3 || seen[0] != "starting" || seen[2] != "stopping" {
		t.Fatalf("Watch saw %v, %v", seen, err)
	}
}

// A response line longer than the limit is refused, not read on forever.
func TestDialRefusesAnOverlongLine(t *testing.T) {
	long := make([]byte, 1<<17)
	for i := range long {
		long[i] = 'x'
	}
	path := serveOnce(t, `{"status":{"state":"`+string(long)+`"}}`+"\n", true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := Dial(ctx, path, Request{Op: OpStatus}); err == nil {
		t.Fatal("Dial took a 128 KiB line")
	}
}
