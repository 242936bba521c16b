//go:build linux

package vm_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/machinetop/machinetop/vm"
	"github.com/machinetop/machinetop/vm/control"
	"github.com/machinetop/machinetop/vm/fake"
	"github.com/machinetop/machinetop/vm/kit"
	"github.com/machinetop/machinetop/vm/layout"
	"github.com/machinetop/machinetop/vm/supervisor"
)

// The tests in this package's lifecycle_test.go drive the Manager's verbs
// over the fake backend: the Manager spawns real supervisors (in
// goroutines, through Manager.Spawn), which boot fake VMs whose guest agent
// is the real one. No hypervisor runs, and PATH is empty.

// harness is a data directory with a Manager over a fake backend whose
// supervisors run in this process.
type harness struct {
	t      *testing.T
	m      *vm.Manager
	be     *fake.Backend
	kitDir string

	mu   sync.Mutex
	sups []*inProcess
}

// inProcess is one supervisor running in a goroutine.
type inProcess struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned
}

func newHarness(t *testing.T, s fake.Script) *harness {
	t.Helper()
	// Sockets live under XDG_RUNTIME_DIR: keep it short for unix(7)'s
	// 107-byte limit. PATH holds no hypervisor (nor anything else).
	rt, err := os.MkdirTemp("", "mt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(rt) })
	t.Setenv("XDG_RUNTIME_DIR", rt)
	t.Setenv("PATH", t.TempDir())

	dir := t.TempDir()
	img, err := fake.NewImage(dir, "test:latest")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, be: fake.New(s), kitDir: t.TempDir()}
	h.m = &vm.Manager{Data: layout.Data{Root: filepath.Join(dir, "data")}, Backend: h.be, Images: img}
	h.m.Spawn = h.spawn
	t.Cleanup(h.cleanup)
	return h
}

// spawn is the Manager's Spawn: like `machinetop __supervise NAME` it
// loads the machine by name and runs its supervisor, logging to
// supervisor.log, but in a goroutine.
func (h *harness) spawn(c *vm.Config) (<-chan error, error) {
	cfg, err := h.m.Load(c.Name)
	if err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(h.m.SupervisorLog(cfg.Name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &inProcess{name: cfg.Name, cancel: cancel, done: make(chan struct{})}
	h.mu.Lock()
	h.sups = append(h.sups, p)
	h.mu.Unlock()
	exited := make(chan error, 1)
	go func() {
		defer close(p.done)
		defer logf.Close()
		exited <- supervisor.Run(ctx, cfg, supervisor.Options{
			Manager: h.m,
			Kit: func(context.Context, *vm.Config, io.Writer) (*kit.Kit, error) {
				return fake.Kit(h.kitDir)
			},
			Log: logf,
		})
	}()
	return exited, nil
}

// killSupervisors ends every supervisor of the machine name as SIGKILL
// would and waits until they are gone. A VM that cannot outlive its
// supervisor (no Features.Adopt: it runs inside the supervisor process)
// dies with it.
func (h *harness) killSupervisors(cfg *vm.Config) {
	h.t.Helper()
	h.mu.Lock()
	var mine []*inProcess
	for _, p := range h.sups {
		if p.name == cfg.Name {
			mine = append(mine, p)
		}
	}
	h.mu.Unlock()
	for _, p := range mine {
		p.cancel()
	}
	for _, p := range mine {
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			h.t.Fatalf("supervisor of %s did not end after its context did", cfg.Name)
		}
	}
	if !h.be.Features().Adopt {
		if i := h.be.VM(h.run(cfg).Dir); i != nil {
			i.Kill()
			i.Wait()
		}
	}
}

// cleanup kills every VM (so their supervisors exit as after a crash) and
// ends every supervisor.
func (h *harness) cleanup() {
	h.be.KillAll()
	h.mu.Lock()
	sups := h.sups
	h.mu.Unlock()
	for _, p := range sups {
		p.cancel()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			h.t.Errorf("supervisor of %s did not end", p.name)
		}
	}
}

// create makes a stopped machine with small resources.
func (h *harness) create(name string, mounts ...string) *vm.Config {
	h.t.Helper()
	cfg, err := h.m.Create(context.Background(), vm.CreateOptions{
		Image: "test:latest", Name: name, CPUs: 1, MemoryBytes: vm.GiB, DiskBytes: vm.GiB,
		HomeMount: vm.HomeMountNone, Mounts: mounts,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return cfg
}

// run returns cfg's runtime directory.
func (h *harness) run(cfg *vm.Config) layout.Run {
	h.t.Helper()
	r, err := layout.RunFor(cfg.ID)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

// start starts cfg's machine and fails the test on an error.
func (h *harness) start(cfg *vm.Config) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := h.m.Start(ctx, cfg); err != nil {
		h.t.Fatal(err)
	}
}

// vm returns the VM running for cfg, failing the test when none runs.
func (h *harness) vm(cfg *vm.Config) *fake.Instance {
	h.t.Helper()
	i := h.be.VM(h.run(cfg).Dir)
	if i == nil {
		h.t.Fatalf("no VM runs for %s", cfg.Name)
	}
	return i
}

// state returns the machine's state as the Manager reports it.
func (h *harness) state(cfg *vm.Config) string {
	return h.m.Get(context.Background(), cfg).State
}

// watchUntil follows the supervisor's status stream until until returns
// true; it returns the last status, or the error that ended the stream
// (wrapping ErrNotRunning once the supervisor is gone).
func (h *harness) watchUntil(cfg *vm.Config, until func(*control.Status) bool) (*control.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var last *control.Status
	err := control.Watch(ctx, h.run(cfg).Control(), func(st *control.Status) bool {
		last = st
		return !until(st)
	})
	return last, err
}

// watchFromSpawn is watchUntil for a supervisor that may not listen yet
// (just spawned): the socket appearing has no event, so it retries every
// 10 ms while nothing answers, for at most 10 s.
func (h *harness) watchFromSpawn(cfg *vm.Config, until func(*control.Status) bool) (*control.Status, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := h.watchUntil(cfg, until)
		if !errors.Is(err, vm.ErrNotRunning) || st != nil || time.Now().After(deadline) {
			return st, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ping calls the machine's agent through its supervisor.
func (h *harness) ping(cfg *vm.Config) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := h.m.Agent(cfg).Ping(ctx)
	if err == nil && info.Kernel == "" {
		err = errors.New("ping: the agent reported no kernel")
	}
	return err
}

// waitExited waits until VM i has exited and returns Wait's result.
func waitExited(t *testing.T, i *fake.Instance) error {
	t.Helper()
	select {
	case <-i.Exited():
		return i.Wait()
	case <-time.After(20 * time.Second):
		t.Fatal("the VM did not exit")
		return nil
	}
}

// errString is err's message, or "<nil>".
func errString(err error) string { return fmt.Sprint(err) }
