//go:build linux

package agent

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/machinetop/machinetop/guest/client"
	"github.com/machinetop/machinetop/guest/proto"
)

// portEnd hands a channel to a Server without letting it close the
// channel: the channel outlives the agent process, as a virtio-serial port
// does. Close only ends the reads under way (the process's death).
type portEnd struct{ *os.File }

func (p portEnd) Close() error { return p.SetReadDeadline(time.Now()) }

// keepOpen is the host's socket to QEMU's chardev, which a session's
// end does not close in this test (the supervisor would dial anew): Close
// only ends the session's reads (a new handshake clears the deadline).
type keepOpen struct{ net.Conn }

func (k keepOpen) Close() error { return k.SetReadDeadline(time.Now()) }

// An agent that starts on a channel where the host still holds a session
// with an earlier agent (one that was killed) ends that session at once,
// so the host reconnects instead of waiting for its keepalive.
func TestRestartedAgentEndsStaleSession(t *testing.T) {
	host, guest := socketPair(t)
	defer guest.Close()
	serve := func(ctx context.Context) <-chan struct{} {
		done := make(chan struct{})
		opened := false
		go func() {
			defer close(done)
			new(Server).ServeChannel(ctx, func() (io.ReadWriteCloser, error) {
				if opened {
					<-ctx.Done()
					return nil, ctx.Err()
				}
				opened = true
				guest.SetReadDeadline(time.Time{})
				return portEnd{guest}, nil
			})
		}()
		return done
	}
	ctx1, kill := context.WithCancel(context.Background())
	done1 := serve(ctx1)
	sess, err := client.NewSessionTimeout(keepOpen{host}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if _, err := client.FromSession(sess).Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The first agent dies without a word; the host's session lives on.
	kill()
	<-done1
	select {
	case <-sess.CloseChan():
		t.Fatal("the session ended with the first agent; the test shows nothing")
	case <-time.After(200 * time.Millisecond):
	}
	ctx2, stop := context.WithCancel(context.Background())
	defer stop()
	serve(ctx2)
	select {
	case <-sess.CloseChan():
	case <-time.After(5 * time.Second):
		t.Fatal("the stale session survived the new agent's start")
	}
	// And the host gets a working session with the new agent.
	sess2, err := client.NewSessionTimeout(keepOpen{host}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer sess2.Close()
	if _, err := client.FromSession(sess2).Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Commands do not inherit the agent's score for the OOM killer. Where
// the test may not lower its score (no CAP_SYS_RESOURCE) it raises it
// instead, which anyone may: the child must still get the default.
func TestCommandsGetDefaultOOMScore(t *testing.T) {
	own, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		t.Fatal(err)
	}
	want := "-1000"
	if err := ProtectFromOOM(); err != nil {
		want = "500"
		if err := setOOMScore(os.Getpid(), 500); err != nil {
			t.Fatal(err)
		}
	}
	defer os.WriteFile("/proc/self/oom_score_adj", own, 0)
	c := connectNew(t)
	st, out, errs := run(t, c, &proto.ExecRequest{Argv: []string{"cat", "/proc/self/oom_score_adj"}}, nil)
	if st.Code != 0 || strings.TrimSpace(out) != "0" {
		t.Fatalf("status %+v, oom_score_adj %q (stderr %q), want 0", st, out, errs)
	}
	if b, _ := os.ReadFile("/proc/self/oom_score_adj"); strings.TrimSpace(string(b)) != want {
		t.Fatalf("agent's own score %q, want %s", b, want)
	}
}

// Keep starts its child again after the child dies, and stops it when its
// context ends.
func TestKeepRestartsTheAgent(t *testing.T) {
	dir := t.TempDir()
	count := filepath.Join(dir, "starts")
	// Each start appends a line; the first two die at once, the third
	// stays until it is told to go.
	script := `echo x >> "$1"; [ "$(wc -l < "$1")" -ge 3 ] && exec sleep 60; exit 1`
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Keep(ctx, []string{"sh", "-c", script, "sh", count}) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(count)
		if strings.Count(string(b), "\n") >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Keep started the agent %d times, want 3", strings.Count(string(b), "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Keep did not end with its context")
	}
}
