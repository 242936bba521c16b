package netd

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// serveInDir runs Serve on a socket in a new directory with idle and
// returns the options and a channel receiving Serve's result.
func serveInDir(t *testing.T, idle time.Duration) (Options, <-chan error) {
	t.Helper()
	dir, err := os.MkdirTemp("", "netd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	o := Options{Socket: filepath.Join(dir, "net.sock"), Lock: filepath.Join(dir, "net.lock"), Idle: idle}
	done := make(chan error, 1)
	go func() { done <- Serve(context.Background(), o) }()
	return o, done
}

func TestServeLifecycle(t *testing.T) {
	const idle = 300 * time.Millisecond
	o, done := serveInDir(t, idle)
	var starts atomic.Int32
	start := func() error { starts.Add(1); return nil }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := Connect(ctx, o.Socket, Hello{Name: "a", IP: "192.168.127.2", MAC: "5a:94:ef:a8:7f:02"}, start)
	if err != nil {
		t.Fatal(err)
	}
	starts.Store(0) // the first may have come before Serve listened
	fi, err := os.Stat(o.Socket)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v, want mode 0600", fi, err)
	}

	// A second process of the same network refuses to run.
	if err := Serve(context.Background(), o); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Serve: %v, want ErrRunning", err)
	}

	// Bad hellos are refused with the reason, and no process is started
	// for them.
	for _, c := range []struct {
		h    Hello
		want string
	}{
		{Hello{Name: "b", IP: "192.168.127.1", MAC: "5a:94:ef:a8:7f:01"}, "not a machine address"},
		{Hello{Name: "b", IP: "10.0.2.15", MAC: "5a:94:ef:a8:7f:01"}, "not a machine address"},
		{Hello{Name: "b", IP: "nonsense", MAC: "5a:94:ef:a8:7f:01"}, "invalid address"},
		{Hello{Name: "b", IP: "192.168.127.3", MAC: "zz"}, "invalid MAC"},
		{Hello{Name: "b.c", IP: "192.168.127.3", MAC: "5a:94:ef:a8:7f:03"}, "invalid machine name"},
		{Hello{Name: "b", IP: "192.168.127.2", MAC: "5a:94:ef:a8:7f:02"}, "in use by machine a"},
	} {
		f, err := Connect(ctx, o.Socket, c.h, start)
		if err == nil {
			f.Close()
			t.Fatalf("%+v joined", c.h)
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%+v: %v, want it to mention %q", c.h, err, c.want)
		}
	}
	if n := starts.Load(); n != 0 {
		t.Fatalf("the network was started %d times while it ran", n)
	}

	// While a machine is connected the network stays.
	select {
	case err := <-done:
		t.Fatalf("Serve returned with a machine connected: %v", err)
	case <-time.After(3 * idle):
	}
	// Once it left, Serve exits after idle.
	a.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not exit after its last machine left")
	}
	if _, err := os.Stat(o.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the socket is left behind: %v", err)
	}

	// Connect starts the network when none answers, and waits for it.
	started := make(chan error, 1)
	f, err := Connect(ctx, o.Socket, Hello{Name: "a", IP: "192.168.127.2", MAC: "5a:94:ef:a8:7f:02"}, func() error {
		go func() { started <- Serve(context.Background(), o) }()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := <-started; err != nil {
		t.Fatalf("Serve started by Connect: %v", err)
	}
}
