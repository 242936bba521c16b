//go:build linux

package agent

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/machinetop/machinetop/guest/client"
	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/guest/ready"
)

// systemdRoot is a root filesystem whose init is systemd and whose /run is
// empty, as the agent sees it just before /init execs systemd.
func systemdRoot(t *testing.T) string {
	root := t.TempDir()
	for _, d := range []string{"lib/systemd", "sbin", "run/systemd"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(root, "lib/systemd/systemd"), nil, 0o755)
	os.Symlink("/lib/systemd/systemd", filepath.Join(root, "sbin/init"))
	return root
}

// openBus makes systemd's private socket listen under root.
func openBus(t *testing.T, root string) {
	l, err := net.Listen("unix", filepath.Join(root, "run/systemd/private"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
}

// gatedAgent is a test agent whose commands wait for systemd under root.
func gatedAgent(t *testing.T, root string, bound time.Duration) *client.Client {
	ta := newTestAgent(t)
	ta.srv.Ready = ready.Watch(t.Context(), root, ready.Detect(root), bound)
	c, _ := ta.connect(t)
	return c
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func TestExecWaitsForSystemdBus(t *testing.T) {
	root := systemdRoot(t)
	c := gatedAgent(t, root, time.Minute)
	mark := filepath.Join(t.TempDir(), "started")

	type result struct {
		st       proto.ExitStatus
		out, err string
		e        error
	}
	done := make(chan result, 1)
	go func() {
		var out, errb bytes.Buffer
		// Stdin sent while the command waits reaches it once it runs.
		st, err := c.Exec(context.Background(), &proto.ExecRequest{Argv: []string{"sh", "-c", "touch " + mark + "; cat"}},
			strings.NewReader("sent early\n"), &out, &errb, nil)
		done <- result{st, out.String(), errb.String(), err}
	}()
	time.Sleep(300 * time.Millisecond)
	if exists(mark) {
		t.Fatal("the command ran before systemd's bus was up")
	}

	// Ping, and commands that ask to, do not wait.
	info, err := c.Ping(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Init != "systemd" || info.InitReady {
		t.Fatalf("ping while systemd starts: init %q ready %v", info.Init, info.InitReady)
	}
	if st, out, _ := run(t, c, &proto.ExecRequest{Argv: []string{"echo", "now"}, Immediate: true}, nil); st.Code != 0 || out != "now\n" {
		t.Fatalf("immediate exec: %+v %q", st, out)
	}
	if exists(mark) {
		t.Fatal("the waiting command ran")
	}

	openBus(t, root)
	r := <-done
	if r.e != nil || r.st.Code != 0 || r.out != "sent early\n" || r.err != "" {
		t.Fatalf("after the bus came up: %+v %v stdout %q stderr %q", r.st, r.e, r.out, r.err)
	}
	if info, err := c.Ping(context.Background()); err != nil || !info.InitReady {
		t.Fatalf("ping after the bus came up: %+v %v", info, err)
	}
	// Now commands run at once.
	if st, out, _ := run(t, c, &proto.ExecRequest{Argv: []string{"echo", "ok"}}, nil); st.Code != 0 || out != "ok\n" {
		t.Fatalf("exec after the bus: %+v %q", st, out)
	}
}

func TestExecNoticeWhenBusNeverComes(t *testing.T) {
	root := systemdRoot(t)
	c := gatedAgent(t, root, 200*time.Millisecond)
	st, out, errs := run(t, c, &proto.ExecRequest{Argv: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}}, nil)
	if st.Code != 3 || out != "out\n" {
		t.Fatalf("status %+v stdout %q", st, out)
	}
	if !strings.HasPrefix(errs, "machinetop: systemd's bus (/run/systemd/private) is not up") || !strings.HasSuffix(errs, "\nerr\n") {
		t.Fatalf("stderr %q: want the notice, then the command's own", errs)
	}

	// With a TTY the notice goes to the terminal.
	var term bytes.Buffer
	st, err := c.Exec(context.Background(), &proto.ExecRequest{TTY: true, Argv: []string{"echo", "tty"}}, nil, &term, nil, nil)
	if err != nil || st.Code != 0 {
		t.Fatalf("tty exec: %+v %v", st, err)
	}
	if s := term.String(); !strings.HasPrefix(s, "machinetop: systemd's bus") || !strings.Contains(s, "\r\ntty\r\n") {
		t.Fatalf("terminal output %q", s)
	}
}

func TestExecCancelledWhileWaiting(t *testing.T) {
	root := systemdRoot(t)
	c := gatedAgent(t, root, time.Minute)
	mark := filepath.Join(t.TempDir(), "started")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := c.Exec(ctx, &proto.ExecRequest{Argv: []string{"touch", mark}}, nil, nil, nil, nil); err == nil {
		t.Fatal("exec cancelled during the wait succeeded")
	}
	openBus(t, root)
	// A command after the bus is up has run when it returns; the
	// cancelled one must not have run before it or after.
	if st, _, _ := run(t, c, &proto.ExecRequest{Argv: []string{"true"}}, nil); st.Code != 0 {
		t.Fatalf("exec after the bus: %+v", st)
	}
	time.Sleep(200 * time.Millisecond)
	if exists(mark) {
		t.Fatal("a command whose caller went away during the wait ran")
	}
}

func TestTTYToldWhatItWaitsFor(t *testing.T) {
	root := systemdRoot(t)
	c := gatedAgent(t, root, time.Minute)
	go func() {
		time.Sleep(waitNote + 500*time.Millisecond)
		openBus(t, root)
	}()
	var term bytes.Buffer
	st, err := c.Exec(context.Background(), &proto.ExecRequest{TTY: true, Argv: []string{"echo", "hi"}}, nil, &term, nil, nil)
	if err != nil || st.Code != 0 {
		t.Fatalf("tty exec: %+v %v", st, err)
	}
	if want := "machinetop: waiting for systemd's bus (/run/systemd/private)...\r\nhi\r\n"; term.String() != want {
		t.Fatalf("terminal output %q, want %q", term.String(), want)
	}
}
