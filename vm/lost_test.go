package vm_test

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/machinetop/machinetop/guest/client"
	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/vm/fake"
)

// notify closes c at the first write.
type notify struct{ c chan struct{} }

func (n *notify) Write(p []byte) (int, error) {
	select {
	case <-n.c:
	default:
		close(n.c)
	}
	return len(p), nil
}

// A supervisor killed while a command runs ends the command's stream with
// an error that says the connection was lost (client.ErrLost), which the
// CLI turns into its own exit status, never the command's.
func TestRunReportsALostSupervisor(t *testing.T) {
	h := newHarness(t, fake.Script{Features: fake.DefaultFeatures()})
	cfg := h.create("m1")
	h.start(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := &notify{c: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		_, err := h.m.Agent(cfg).Exec(ctx, &proto.ExecRequest{
			Argv: []string{"sh", "-c", "echo started; sleep 30"}, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()),
		}, nil, out, io.Discard, nil)
		errc <- err
	}()
	select {
	case <-out.c:
	case err := <-errc:
		t.Fatalf("the command ended before the supervisor was killed: %v", err)
	}
	h.killSupervisors(cfg)
	select {
	case err := <-errc:
		if !errors.Is(err, client.ErrLost) {
			t.Fatalf("Exec after the supervisor died: %v, want client.ErrLost", err)
		}
	case <-ctx.Done():
		t.Fatal("Exec still waits after its supervisor died")
	}
}
