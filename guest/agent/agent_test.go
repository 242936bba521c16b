//go:build linux

package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/machinetop/machinetop/guest/client"
	"github.com/machinetop/machinetop/guest/proto"
)

func socketPair(t *testing.T) (host net.Conn, guest *os.File) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	hf := os.NewFile(uintptr(fds[0]), "host")
	host, err = net.FileConn(hf)
	hf.Close()
	if err != nil {
		t.Fatal(err)
	}
	syscall.SetNonblock(fds[1], true)
	guest = os.NewFile(uintptr(fds[1]), "guest")
	return host, guest
}

// testAgent runs a Server on a channel fed by the returned function (each
// call hands it a new guest end) and records shutdown requests.
type testAgent struct {
	srv      *Server
	chans    chan io.ReadWriteCloser
	mu       sync.Mutex
	shutdown []bool
}

func newTestAgent(t *testing.T) *testAgent {
	ta := &testAgent{chans: make(chan io.ReadWriteCloser)}
	ta.srv = &Server{Shutdown: func(reboot bool) error {
		ta.mu.Lock()
		ta.shutdown = append(ta.shutdown, reboot)
		ta.mu.Unlock()
		return nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		ta.srv.ServeChannel(ctx, func() (io.ReadWriteCloser, error) {
			select {
			case c := <-ta.chans:
				return c, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
		close(done)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ta
}

// connect gives the agent a new channel and returns a client on it.
func (ta *testAgent) connect(t *testing.T) (*client.Client, net.Conn) {
	t.Helper()
	host, guest := socketPair(t)
	ta.chans <- guest
	sess, err := client.NewSessionTimeout(host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	return client.FromSession(sess), host
}

func connectNew(t *testing.T) *client.Client {
	c, _ := newTestAgent(t).connect(t)
	return c
}

func run(t *testing.T, c *client.Client, req *proto.ExecRequest, stdin io.Reader) (proto.ExitStatus, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	st, err := c.Exec(ctx, req, stdin, &out, &errb, nil)
	if err != nil {
		t.Fatalf("exec %q: %v", req.Argv, err)
	}
	return st, out.String(), errb.String()
}

func TestPing(t *testing.T) {
	c := connectNew(t)
	info, err := c.Ping(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != Version || info.Kernel == "" || info.Hostname == "" {
		t.Fatalf("info %+v", info)
	}
	now := time.Now().UnixNano()
	if info.BootedUnixNano <= 0 || info.BootedUnixNano >= now {
		t.Fatalf("booted %d, now %d", info.BootedUnixNano, now)
	}
	if exe, _ := os.Readlink("/proc/1/exe"); info.PID1 != exe {
		t.Fatalf("pid1 %q, want %q", info.PID1, exe)
	}
}

func TestExecExitCodeAndStreams(t *testing.T) {
	c := connectNew(t)
	st, out, errs := run(t, c, &proto.ExecRequest{Argv: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}}, nil)
	if st.Code != 3 || st.Signal != 0 || out != "out\n" || errs != "err\n" {
		t.Fatalf("status %+v stdout %q stderr %q", st, out, errs)
	}
	st, _, _ = run(t, c, &proto.ExecRequest{Argv: []string{"true"}}, nil)
	if st.Code != 0 {
		t.Fatalf("true: %+v", st)
	}
}

func TestExecEnvironmentAndUser(t *testing.T) {
	c := connectNew(t)
	_, out, _ := run(t, c, &proto.ExecRequest{
		Argv: []string{"sh", "-c", `echo "$HOME|$USER|$PATH|$FOO|$(pwd)"`},
		Env:  []string{"FOO=bar"},
		Dir:  "/tmp",
	}, nil)
	if want := "/root|root|" + DefaultPath + "|bar|/tmp\n"; out != want {
		t.Fatalf("got %q want %q", out, want)
	}
	_, out, _ = run(t, c, &proto.ExecRequest{Argv: []string{"sh", "-c", "id -u; id -g; pwd"}, UID: 65534, GID: 65534}, nil)
	if !strings.HasPrefix(out, "65534\n65534\n") {
		t.Fatalf("id as nobody: %q", out)
	}
}

// A working directory that is missing or no directory is refused with
// 126 and its name, not reported as a missing program (127).
func TestExecWorkdirMissing(t *testing.T) {
	c := connectNew(t)
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o644)
	for dir, want := range map[string]string{
		"/no/such/dir": "working directory /no/such/dir does not exist in the machine",
		file:           "working directory " + file + " is not a directory",
	} {
		st, _, _ := run(t, c, &proto.ExecRequest{Argv: []string{"ls"}, Dir: dir}, nil)
		if st.Code != 126 || st.Error != want {
			t.Errorf("-w %s: %+v, want 126 and %q", dir, st, want)
		}
	}
}

func TestExecStdin(t *testing.T) {
	c := connectNew(t)
	in := make([]byte, 3<<20)
	rand.Read(in)
	st, out, _ := run(t, c, &proto.ExecRequest{Argv: []string{"cat"}}, bytes.NewReader(in))
	if st.Code != 0 || out != string(in) {
		t.Fatalf("cat: status %+v, %d bytes back of %d", st, len(out), len(in))
	}
	// nil stdin is closed at once, so cat ends.
	st, out, _ = run(t, c, &proto.ExecRequest{Argv: []string{"cat"}}, nil)
	if st.Code != 0 || out != "" {
		t.Fatalf("cat with nil stdin: %+v %q", st, out)
	}
}

// All output must arrive before the exit status.
func TestExecLargeOutput(t *testing.T) {
	c := connectNew(t)
	st, out, _ := run(t, c, &proto.ExecRequest{Argv: []string{"seq", "1", "300000"}}, nil)
	var want strings.Builder
	for i := 1; i <= 300000; i++ {
		fmt.Fprintf(&want, "%d\n", i)
	}
	if st.Code != 0 || out != want.String() {
		t.Fatalf("seq: status %+v, got %d bytes want %d", st, len(out), want.Len())
	}
}

func TestExecSignals(t *testing.T) {
	c := connectNew(t)
	st, _, _ := run(t, c, &proto.ExecRequest{Argv: []string{"sh", "-c", "kill -9 $$"}}, nil)
	if st.Code != 137 || st.Signal != 9 {
		t.Fatalf("kill -9: %+v", st)
	}

	p, err := c.Start(context.Background(), &proto.ExecRequest{Argv: []string{"sleep", "30"}}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.PID <= 0 {
		t.Fatalf("pid %d", p.PID)
	}
	p.Signal(int(syscall.SIGTERM))
	st, err = p.Wait()
	if err != nil || st.Code != 143 || st.Signal != 15 {
		t.Fatalf("SIGTERM: %+v %v", st, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	st, err = c.Exec(ctx, &proto.ExecRequest{Argv: []string{"sleep", "30"}}, nil, nil, nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) || st.Code != 137 {
		t.Fatalf("cancelled exec: %+v %v", st, err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("cancel took %v", time.Since(start))
	}
}

func TestExecNotFound(t *testing.T) {
	c := connectNew(t)
	st, _, _ := run(t, c, &proto.ExecRequest{Argv: []string{"no-such-program-here"}}, nil)
	if st.Code != 127 || st.Error == "" {
		t.Fatalf("status %+v", st)
	}
	st, _, _ = run(t, c, &proto.ExecRequest{Argv: []string{"/etc/passwd"}}, nil)
	if st.Code != 126 || st.Error == "" {
		t.Fatalf("status %+v", st)
	}
}

// lineWaiter is an io.Writer that lets a test wait for text to appear.
type lineWaiter struct {
	mu  sync.Mutex
	buf bytes.Buffer
	ch  chan struct{}
}

func (w *lineWaiter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	select {
	case w.ch <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (w *lineWaiter) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		w.mu.Lock()
		ok := strings.Contains(w.buf.String(), s)
		w.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-w.ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %q in %q", s, w.buf.String())
		}
	}
}

func TestExecPTY(t *testing.T) {
	c := connectNew(t)
	out := &lineWaiter{ch: make(chan struct{}, 1)}
	inR, inW := io.Pipe()
	resize := make(chan proto.WindowSize, 1)
	type result struct {
		st  proto.ExitStatus
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := c.Exec(context.Background(), &proto.ExecRequest{
			Argv: []string{"sh", "-c", "stty size; test -t 0 && echo tty=$TERM; read x; stty size; exit 5"},
			TTY:  true, Rows: 33, Cols: 101,
		}, inR, out, nil, resize)
		done <- result{st, err}
	}()
	out.waitFor(t, "33 101")
	out.waitFor(t, "tty=xterm-256color")
	resize <- proto.WindowSize{Rows: 50, Cols: 132}
	time.Sleep(100 * time.Millisecond) // the resize frame goes first
	io.WriteString(inW, "go\n")
	out.waitFor(t, "50 132")
	r := <-done
	if r.err != nil || r.st.Code != 5 {
		t.Fatalf("status %+v %v; output %q", r.st, r.err, out.buf.String())
	}
}

func TestMetricsNetworkTimeShutdown(t *testing.T) {
	ta := newTestAgent(t)
	c, _ := ta.connect(t)
	ctx := context.Background()
	m, err := c.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.MemTotal == 0 || m.MemUsed > m.MemTotal || m.MemAvailable > m.MemTotal || m.NumCPU < 1 ||
		m.CPUPercent < 0 || m.CPUPercent > float64(100*m.NumCPU)+1 || m.DiskTotal == 0 ||
		m.DiskUsed > m.DiskTotal || m.UptimeSec <= 0 {
		t.Fatalf("metrics %+v", m)
	}
	if _, err := c.Metrics(ctx); err != nil {
		t.Fatal(err)
	}

	addrs, err := c.Network(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		as, _ := ifc.Addrs()
		for _, a := range as {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLinkLocalUnicast() {
				want++
			}
		}
	}
	if len(addrs) != want {
		t.Fatalf("addresses %+v, want %d", addrs, want)
	}
	for _, a := range addrs {
		if a.Interface == "lo" || a.CIDR == "" {
			t.Fatalf("address %+v", a)
		}
	}

	if err := c.SetTime(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}

	if err := c.Shutdown(ctx, true); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		ta.mu.Lock()
		got := append([]bool(nil), ta.shutdown...)
		ta.mu.Unlock()
		if len(got) == 1 && got[0] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("shutdown calls %v", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The host disconnects and reconnects many times, sometimes in the middle
// of a call or after leaving garbage in the channel; every new session
// must work.
func TestReconnect(t *testing.T) {
	ta := newTestAgent(t)
	for i := 0; i < 20; i++ {
		host, guest := socketPair(t)
		if i%4 == 1 {
			io.WriteString(host, "\x00\x00stale session bytes\n")
		}
		ta.chans <- guest
		sess, err := client.NewSessionTimeout(host, 5*time.Second)
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		c := client.FromSession(sess)
		var out bytes.Buffer
		st, err := c.Exec(context.Background(), &proto.ExecRequest{Argv: []string{"echo", fmt.Sprint(i)}}, nil, &out, nil, nil)
		if err != nil || st.Code != 0 || out.String() != fmt.Sprintf("%d\n", i) {
			t.Fatalf("round %d: %+v %v %q", i, st, err, out.String())
		}
		if i%3 == 2 {
			// Break the channel while a process runs.
			p, err := c.Start(context.Background(), &proto.ExecRequest{Argv: []string{"sleep", "2"}}, nil, nil, nil)
			if err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
			host.Close()
			if _, err := p.Wait(); err == nil {
				t.Fatalf("round %d: wait after disconnect succeeded", i)
			}
		}
		sess.Close()
		host.Close()
	}
}
