//go:build linux

package supervisor_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/vm"
	"github.com/machinetop/machinetop/vm/control"
	"github.com/machinetop/machinetop/vm/fake"
	"github.com/machinetop/machinetop/vm/kit"
	"github.com/machinetop/machinetop/vm/layout"
	"github.com/machinetop/machinetop/vm/supervisor"
)

// These tests run supervisor.Run in goroutines over the fake backend,
// talking to it through its control socket as vm.Manager does. No
// hypervisor runs, and PATH is empty.

// machine is one machine of a fresh data directory, with a fake backend.
type machine struct {
	t   *testing.T
	m   *vm.Manager
	be  *fake.Backend
	cfg *vm.Config
	run layout.Run
	log string // the supervisor log the tests' supervisors append to
	kit string
}

func newMachine(t *testing.T, s fake.Script) *machine {
	t.Helper()
	rt, err := os.MkdirTemp("", "mt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(rt) })
	t.Setenv("XDG_RUNTIME_DIR", rt) // short socket paths (unix(7))
	t.Setenv("PATH", t.TempDir())

	dir := t.TempDir()
	img, err := fake.NewImage(dir, "test:latest")
	if err != nil {
		t.Fatal(err)
	}
	be := fake.New(s)
	m := &vm.Manager{Data: layout.Data{Root: filepath.Join(dir, "data")}, Backend: be, Images: img}
	cfg, err := m.Create(context.Background(), vm.CreateOptions{
		Image: "test:latest", Name: "m1", CPUs: 1, MemoryBytes: vm.GiB, DiskBytes: vm.GiB, HomeMount: vm.HomeMountNone,
	})
	if err != nil {
		t.Fatal(err)
	}
	run, err := layout.RunFor(cfg.ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(be.KillAll)
	return &machine{t: t, m: m, be: be, cfg: cfg, run: run, log: m.SupervisorLog(cfg.Name), kit: t.TempDir()}
}

// supervise runs a supervisor of the machine until ctx ends or the VM
// exits; the channel receives Run's result.
func (mc *machine) supervise(ctx context.Context) <-chan error {
	logf, err := os.OpenFile(mc.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		mc.t.Fatal(err)
	}
	cfg, err := mc.m.Load(mc.cfg.Name)
	if err != nil {
		mc.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		defer logf.Close()
		done <- supervisor.Run(ctx, cfg, supervisor.Options{
			Manager: mc.m,
			Kit:     func(context.Context, *vm.Config, io.Writer) (*kit.Kit, error) { return fake.Kit(mc.kit) },
			Log:     logf,
		})
	}()
	return done
}

// watch follows the status stream from a supervisor that may not listen
// yet (retrying every 10 ms for at most 10 s while nothing answers) until
// until returns true, and returns that status.
func (mc *machine) watch(until func(*control.Status) bool) *control.Status {
	mc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var last *control.Status
		err := control.Watch(ctx, mc.run.Control(), func(st *control.Status) bool {
			last = st
			return !until(st)
		})
		if err == nil {
			return last
		}
		if !errors.Is(err, control.ErrNotRunning) || last != nil || time.Now().After(deadline) {
			mc.t.Fatalf("watching the supervisor: %v (last status %+v)", err, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// result waits for a Run to return.
func result(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("the supervisor did not return")
		return nil
	}
}

func ready(st *control.Status) bool { return st.AgentReady }

func TestStatusAndBootFollowTheFeatures(t *testing.T) {
	feat := fake.DefaultFeatures()
	mc := newMachine(t, fake.Script{Features: feat})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mc.supervise(ctx)

	st := mc.watch(ready)
	if st.State != control.StateRunning || st.Backend != "fake" || st.Accelerator != "fake" || st.Kernel != "0.0.0-fake" ||
		st.PID != os.Getpid() || st.VMPID != 0 || st.SSHPort == 0 || st.Started.IsZero() || st.Guest == nil {
		t.Errorf("status of a ready machine: %+v", st)
	}
	spec := mc.be.VM(mc.run.Dir).Spec()
	for _, want := range []string{proto.ParamHostname + "=m1"} {
		if !strings.Contains(spec.Cmdline, want) {
			t.Errorf("kernel command line %q lacks %q", spec.Cmdline, want)
		}
	}
	var serials []string
	for _, d := range spec.Disks {
		serials = append(serials, d.Serial)
	}
	if strings.Join(serials, ",") != strings.Join([]string{proto.RootSerial, proto.ImageSerial, proto.ConfigSerial}, ",") {
		t.Errorf("disks of a first boot: %v", serials)
	}
	// What the agent reported is kept for the stopped machine.
	if _, err := os.Stat(mc.m.Dir("m1").Guest()); err != nil {
		t.Errorf("guest facts not recorded: %v", err)
	}
	if b, err := os.ReadFile(mc.m.ConsoleLog("m1")); err != nil || !strings.Contains(string(b), "fake: booting m1") {
		t.Errorf("console log: %q, %v", b, err)
	}
}

func TestRunReturnsAtOnceWhenTheMachineIsTaken(t *testing.T) {
	mc := newMachine(t, fake.Script{Features: fake.DefaultFeatures()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := mc.supervise(ctx)
	mc.watch(ready)

	if err := result(t, mc.supervise(ctx)); err != nil {
		t.Fatalf("second supervisor: %v", err)
	}
	if n := mc.be.Boots(); n != 1 {
		t.Fatalf("%d boots with two supervisors, want 1", n)
	}
	select {
	case err := <-first:
		t.Fatalf("the first supervisor ended: %v", err)
	default:
	}
}

func TestRunLeavesTheVMWhenItsContextEndsAndTheNextAdopts(t *testing.T) {
	mc := newMachine(t, fake.Script{Features: fake.DefaultFeatures()})
	ctx, cancel := context.WithCancel(context.Background())
	done := mc.supervise(ctx)
	before := mc.watch(ready)
	i := mc.be.VM(mc.run.Dir)

	cancel()
	if err := result(t, done); err != nil {
		t.Fatalf("Run after its context ended: %v", err)
	}
	select {
	case <-i.Exited():
		t.Fatal("the VM exited with its supervisor")
	default:
	}
	if _, err := control.Call(context.Background(), mc.run.Control(), control.Request{Op: control.OpStatus}); !errors.Is(err, control.ErrNotRunning) {
		t.Fatalf("status with no supervisor: %v, want ErrNotRunning", err)
	}
	if !mc.be.Running(mc.run.Dir, "m1") {
		t.Fatal("the backend does not see the orphan VM")
	}

	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	mc.supervise(ctx2)
	after := mc.watch(ready)
	if mc.be.Boots() != 1 || i.Adoptions() != 1 || mc.be.VM(mc.run.Dir) != i {
		t.Fatalf("second supervisor: %d boots, %d adoptions; want the VM adopted", mc.be.Boots(), i.Adoptions())
	}
	// The adopting supervisor reports the boot as it was.
	if !after.Started.Equal(before.Started) || after.SSHPort != before.SSHPort || after.SSHPort == 0 {
		t.Errorf("after adoption: started %v, SSH port %d; before: %v, %d", after.Started, after.SSHPort, before.Started, before.SSHPort)
	}
}

func TestBootFailureIsReportedAndLogged(t *testing.T) {
	mc := newMachine(t, fake.Script{Features: fake.DefaultFeatures(), StartDelay: 300 * time.Millisecond, StartErr: errors.New("the hypervisor is out of order")})
	done := mc.supervise(context.Background())
	st := mc.watch(func(st *control.Status) bool { return st.State == control.StateStopped })
	if !strings.Contains(st.Error, "the hypervisor is out of order") {
		t.Errorf("stopped status after a failed boot: %+v", st)
	}
	err := result(t, done)
	if err == nil || !strings.Contains(err.Error(), "the hypervisor is out of order") {
		t.Fatalf("Run: %v", err)
	}
	b, _ := os.ReadFile(mc.log)
	if !strings.Contains(string(b), "\nerror: fake: starting m1: the hypervisor is out of order\n") {
		t.Errorf("supervisor log lacks the error line:\n%s", b)
	}
}

func TestStopOverTheSocketAnswersOnceTheVMExited(t *testing.T) {
	mc := newMachine(t, fake.Script{Features: fake.DefaultFeatures()})
	done := mc.supervise(context.Background())
	mc.watch(ready)
	i := mc.be.VM(mc.run.Dir)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := control.Call(ctx, mc.run.Control(), control.Request{Op: control.OpStop, Timeout: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-i.Exited():
	default:
		t.Fatal("stop answered while the VM runs")
	}
	if err := i.Wait(); err != nil {
		t.Errorf("VM exit %v, want a guest power-off", err)
	}
	if err := result(t, done); err != nil {
		t.Errorf("Run after the VM powered off: %v", err)
	}
}
