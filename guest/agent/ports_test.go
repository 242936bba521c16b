//go:build linux

package agent

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/machinetop/machinetop/guest/proto"
)

func TestWatchPortsReportsChanges(t *testing.T) {
	ta := newTestAgent(t)
	var mu sync.Mutex
	current := []proto.Listener{{Addr: "0.0.0.0", Port: 8123}}
	ta.srv.Listeners = func() ([]proto.Listener, error) {
		mu.Lock()
		defer mu.Unlock()
		return append([]proto.Listener(nil), current...), nil
	}
	c, _ := ta.connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := make(chan []proto.Listener, 10)
	done := make(chan error, 1)
	go func() { done <- c.WatchPorts(ctx, func(ls []proto.Listener) { got <- ls }) }()
	if ls := <-got; len(ls) != 1 || ls[0].Port != 8123 {
		t.Fatalf("first report %+v, want port 8123", ls)
	}
	mu.Lock()
	current = nil
	mu.Unlock()
	if ls := <-got; len(ls) != 0 {
		t.Fatalf("second report %+v, want none", ls)
	}
	// Nothing changes: nothing is sent.
	select {
	case ls := <-got:
		t.Fatalf("report without a change: %+v", ls)
	case <-time.After(3 * listenerPoll):
	}
	cancel()
	if err := <-done; err == nil {
		t.Error("WatchPorts returned nil after its context ended")
	}
}

func TestDialGuestHalfClose(t *testing.T) {
	// A server that reads everything, then answers with what it read,
	// uppercased: it only answers after the client's half-close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				conn.Write([]byte("hello\n")) // a banner, sent before any request
				b, _ := io.ReadAll(conn)
				conn.Write([]byte(strings.ToUpper(string(b))))
			}()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	c := connectNew(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, addr := range []string{"", "0.0.0.0", "127.0.0.1"} {
		g, err := c.DialGuest(ctx, addr, port)
		if err != nil {
			t.Fatalf("DialGuest(%q): %v", addr, err)
		}
		g.Write([]byte("some request"))
		g.Close() // yamux: a half-close
		b, err := io.ReadAll(g)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != "hello\nSOME REQUEST" {
			t.Errorf("DialGuest(%q) read %q", addr, b)
		}
	}
	ln.Close()
	if _, err := c.DialGuest(ctx, "", port); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("DialGuest to a closed port: %v, want connection refused", err)
	}
	if _, err := c.DialGuest(ctx, "", 0); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Errorf("DialGuest to port 0: %v", err)
	}
}
