//go:build linux

package vm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/vm"
	"github.com/machinetop/machinetop/vm/control"
	"github.com/machinetop/machinetop/vm/driver"
	"github.com/machinetop/machinetop/vm/fake"
)

// echo runs `echo hi` in the machine through its supervisor and returns
// its output.
func (h *harness) echo(cfg *vm.Config) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	st, err := h.m.Agent(cfg).Exec(ctx, &proto.ExecRequest{
		Argv: []string{"echo", "hi"}, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()),
	}, nil, &out, &errb, nil)
	if err == nil && (st.Code != 0 || st.Error != "") {
		err = errors.New("echo hi: " + st.Error + errb.String())
	}
	return out.String(), err
}

func TestStartReturnsWhenAgentAnswersAndStopPowersOff(t *testing.T) {
	const boot = 300 * time.Millisecond
	h := newHarness(t, fake.Script{Features: fake.DefaultFeatures(), BootDelay: boot})
	share := t.TempDir()
	cfg := h.create("m1", share+":/mnt/share:ro")

	t0 := time.Now()
	h.start(cfg)
	took := time.Since(t0)
	i := h.vm(cfg)
	agentUp := i.AgentStarted()
	if agentUp.IsZero() || took < boot {
		t.Fatalf("Start returned after %v, before the guest agent served (agent started at %v)", took, agentUp)
	}

	mc := h.m.Get(context.Background(), cfg)
	if mc.State != vm.StateRunning || mc.Accelerator != "fake" || mc.KernelRelease != "0.0.0-fake" || mc.SupervisorPID != os.Getpid() {
		t.Errorf("Get after Start: state %q, accelerator %q, kernel %q, supervisor pid %d", mc.State, mc.Accelerator, mc.KernelRelease, mc.SupervisorPID)
	}
	// The boot followed the backend's features: the mount shared over
	// virtio-fs; SSH is forwarded by the supervisor.
	spec := i.Spec()
	if mc.SSHPort == 0 || len(mc.Ports) == 0 || mc.Ports[0].Kind != "ssh" || mc.Ports[0].HostPort != mc.SSHPort {
		t.Errorf("SSH port %d, forwards %+v", mc.SSHPort, mc.Ports)
	}
	if len(spec.Shares) != 1 || spec.Shares[0].HostPath != share || !spec.Shares[0].ReadOnly {
		t.Errorf("spec shares %+v, want %s read-only", spec.Shares, share)
	}
	if len(mc.ActiveMounts) != 1 || mc.ActiveMounts[0].Guest != "/mnt/share" || mc.ActiveMounts[0].FSType != driver.ShareVirtiofs {
		t.Errorf("active mounts %+v", mc.ActiveMounts)
	}

	if err := h.ping(cfg); err != nil {
		t.Fatal(err)
	}
	if out, err := h.echo(cfg); err != nil || out != "hi\n" {
		t.Fatalf("echo hi: %q, %v", out, err)
	}
	// Starting a running machine boots nothing.
	h.start(cfg)
	if n := h.be.Boots(); n != 1 {
		t.Fatalf("%d boots after starting a running machine, want 1", n)
	}

	// A cooperative guest powers off when asked: long before the timeout.
	t0 = time.Now()
	if killed, err := h.m.StopReporting(context.Background(), cfg, 10*time.Second); err != nil || killed {
		t.Fatalf("Stop of a cooperative guest: killed %v, %v", killed, err)
	}
	if took := time.Since(t0); took > 5*time.Second {
		t.Errorf("Stop of a cooperative guest took %v", took)
	}
	if err := waitExited(t, i); err != nil {
		t.Errorf("the VM exited with %v, want a power-off (nil)", err)
	}
	if st := h.state(cfg); st != vm.StateStopped {
		t.Errorf("state after Stop: %s", st)
	}
	if h.be.VM(h.run(cfg).Dir) != nil {
		t.Error("a VM still runs after Stop")
	}
	// Stopping a stopped machine is not an error.
	if err := h.m.Stop(context.Background(), cfg, time.Second); err != nil {
		t.Fatalf("Stop of a stopped machine: %v", err)
	}
}

func TestStopKillsAnUncooperativeGuestAfterTheTimeout(t *testing.T) {
	h := newHarness(t, fake.Script{Features: fake.DefaultFeatures(), IgnoreStop: true})
	cfg := h.create("m1")
	h.start(cfg)
	i := h.vm(cfg)

	const timeout = 400 * time.Millisecond
	t0 := time.Now()
	killed, err := h.m.StopReporting(context.Background(), cfg, timeout)
	if err != nil {
		t.Fatal(err)
	}
	if !killed {
		t.Error("StopReporting says the guest powered off; it was killed")
	}
	took := time.Since(t0)
	if took < timeout {
		t.Errorf("Stop returned after %v, before the %v timeout: the guest ignores power-off", took, timeout)
	}
	select {
	case <-i.Exited():
	default:
		t.Fatal("Stop returned but the VM runs")
	}
	if err := i.Wait(); !errors.Is(err, fake.ErrKilled) {
		t.Errorf("the VM exited with %v, want it killed", err)
	}
	if st := h.state(cfg); st != vm.StateStopped {
		t.Errorf("state after Stop: %s", st)
	}
}

func TestCrashedVMIsStoppedAndStartsAgain(t *testing.T) {
	h := newHarness(t, fake.Script{Features: fake.DefaultFeatures()})
	cfg := h.create("m1")
	h.start(cfg)
	i := h.vm(cfg)

	i.Crash()
	// The supervisor reports the VM stopped, then goes.
	st, err := h.watchUntil(cfg, func(st *control.Status) bool { return st.State == vm.StateStopped })
	if err != nil && !errors.Is(err, vm.ErrNotRunning) {
		t.Fatal(err)
	}
	if err == nil && st.AgentReady {
		t.Errorf("stopped status says the agent is ready: %+v", st)
	}
	if s := h.state(cfg); s != vm.StateStopped {
		t.Errorf("state after the VM crashed: %s", s)
	}
	if err := h.ping(cfg); !errors.Is(err, vm.ErrNotRunning) {
		t.Errorf("ping after the crash: %v, want ErrNotRunning", err)
	}

	h.start(cfg)
	if n := h.be.Boots(); n != 2 {
		t.Fatalf("%d boots, want a second boot after the crash", n)
	}
	if h.vm(cfg) == i {
		t.Fatal("the crashed VM is still registered")
	}
	if err := h.ping(cfg); err != nil {
		t.Fatal(err)
	}
}

func TestNewSupervisorAdoptsVMAfterSupervisorCrash(t *testing.T) {
	h := newHarness(t, fake.Script{Features: fake.DefaultFeatures()})
	cfg := h.create("m1")
	h.start(cfg)
	i := h.vm(cfg)
	port := h.m.Get(context.Background(), cfg).SSHPort

	h.killSupervisors(cfg)
	// The VM outlived its supervisor: Get attaches a new supervisor to it,
	// so the machine reports its address and can be driven again.
	mc := h.m.Get(context.Background(), cfg)
	if mc.State != vm.StateRunning || mc.SupervisorPID == 0 || mc.IP == "" {
		t.Fatalf("Get of an orphan VM: state %s, supervisor pid %d, IP %q; want running under a new supervisor", mc.State, mc.SupervisorPID, mc.IP)
	}
	if h.vm(cfg) != i || h.be.Boots() != 1 || i.Adoptions() != 1 {
		t.Fatalf("after Get: same VM %v, %d boots, %d adoptions; want the VM adopted", h.vm(cfg) == i, h.be.Boots(), i.Adoptions())
	}
	// Start after another supervisor crash adopts it too.
	h.killSupervisors(cfg)
	h.start(cfg)
	if h.vm(cfg) != i || h.be.Boots() != 1 || i.Adoptions() != 2 {
		t.Fatalf("after Start: same VM %v, %d boots, %d adoptions; want the VM adopted", h.vm(cfg) == i, h.be.Boots(), i.Adoptions())
	}
	mc = h.m.Get(context.Background(), cfg)
	if mc.State != vm.StateRunning || mc.SupervisorPID != os.Getpid() || mc.SSHPort != port {
		t.Errorf("after adoption: state %s, supervisor pid %d, SSH port %d (was %d)", mc.State, mc.SupervisorPID, mc.SSHPort, port)
	}
	if out, err := h.echo(cfg); err != nil || out != "hi\n" {
		t.Fatalf("echo hi after adoption: %q, %v", out, err)
	}

	// Stop, too, adopts an orphan VM to stop it cleanly.
	h.killSupervisors(cfg)
	if err := h.m.Stop(context.Background(), cfg, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := waitExited(t, i); err != nil {
		t.Errorf("the orphan VM exited with %v, want a power-off", err)
	}
	if i.Adoptions() != 3 {
		t.Errorf("%d adoptions, want Stop to have adopted the VM", i.Adoptions())
	}
	if s := h.state(cfg); s != vm.StateStopped {
		t.Errorf("state after Stop: %s", s)
	}
}

func TestVMDiesWithSupervisorWithoutAdopt(t *testing.T) {
	feat := fake.DefaultFeatures()
	feat.Adopt = false
	h := newHarness(t, fake.Script{Features: feat})
	cfg := h.create("m1")
	h.start(cfg)

	h.killSupervisors(cfg)
	if s := h.state(cfg); s != vm.StateStopped {
		t.Fatalf("state after the supervisor (and its VM) died: %s", s)
	}
	h.start(cfg)
	if n := h.be.Boots(); n != 2 {
		t.Fatalf("%d boots, want a new boot", n)
	}
	if err := h.ping(cfg); err != nil {
		t.Fatal(err)
	}
}

func TestAgentChannelDropReconnects(t *testing.T) {
	h := newHarness(t, fake.Script{Features: fake.DefaultFeatures()})
	cfg := h.create("m1")
	h.start(cfg)
	i := h.vm(cfg)

	for n := 2; n <= 3; n++ {
		i.DropAgent()
		// Ready again on a new channel: the supervisor dialed again.
		if _, err := h.watchUntil(cfg, func(st *control.Status) bool { return st.AgentReady && i.Dials() >= n }); err != nil {
			t.Fatalf("drop %d: %v", n-1, err)
		}
		if out, err := h.echo(cfg); err != nil || out != "hi\n" {
			t.Fatalf("echo hi after drop %d: %q, %v", n-1, out, err)
		}
	}
	if i.Dials() != 3 {
		t.Errorf("%d agent dials after two drops, want 3", i.Dials())
	}
	if h.be.Boots() != 1 {
		t.Errorf("%d boots: a dropped channel must not reboot the VM", h.be.Boots())
	}
}

func TestConcurrentStartsAndStops(t *testing.T) {
	h := newHarness(t, fake.Script{Features: fake.DefaultFeatures(), BootDelay: 200 * time.Millisecond})
	cfg := h.create("m1")

	parallel := func(f func() error) []error {
		errs := make([]error, 3)
		var wg sync.WaitGroup
		for k := range errs {
			wg.Add(1)
			go func() { defer wg.Done(); errs[k] = f() }()
		}
		wg.Wait()
		return errs
	}
	start := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return h.m.Start(ctx, cfg)
	}
	for k, err := range parallel(start) {
		if err != nil {
			t.Errorf("parallel Start %d: %v", k, err)
		}
	}
	if n := h.be.Boots(); n != 1 {
		t.Fatalf("%d boots for 3 parallel starts, want 1", n)
	}
	i := h.vm(cfg)
	if err := h.ping(cfg); err != nil {
		t.Fatal(err)
	}

	stop := func() error { return h.m.Stop(context.Background(), cfg, 10*time.Second) }
	for k, err := range parallel(stop) {
		if err != nil {
			t.Errorf("parallel Stop %d: %v", k, err)
		}
	}
	if err := waitExited(t, i); err != nil {
		t.Errorf("VM exit: %v, want a power-off", err)
	}
	if s := h.state(cfg); s != vm.StateStopped {
		t.Errorf("state after parallel stops: %s", s)
	}
	// Nothing is left to adopt, so nothing of the run is left.
	if _, err := os.Stat(h.run(cfg).Dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the stopped machine's runtime directory: %v, want it gone", err)
	}

	h.start(cfg)
	del := func() error {
		_, err := h.m.Delete(context.Background(), cfg)
		return err
	}
	// Each delete removes the machine or waits for the one that does:
	// all succeed (the machine is gone either way), none says the
	// supervisor did not exit.
	for k, err := range parallel(del) {
		if err != nil {
			t.Errorf("parallel Delete %d: %v", k, err)
		}
	}
	if _, err := h.m.Load(cfg.Name); !errors.Is(err, vm.ErrNotFound) {
		t.Errorf("Load after parallel deletes: %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(h.run(cfg).Dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the deleted machine's runtime directory: %v, want it gone", err)
	}
}

func TestStartDuringStopIsTruthful(t *testing.T) {
	// The guest ignores power-off, so the stop lasts its whole timeout.
	h := newHarness(t, fake.Script{Features: fake.DefaultFeatures(), IgnoreStop: true})
	cfg := h.create("m1")
	h.start(cfg)
	i := h.vm(cfg)

	stopped := make(chan error, 1)
	go func() { stopped <- h.m.Stop(context.Background(), cfg, time.Second) }()
	if _, err := h.watchUntil(cfg, func(st *control.Status) bool { return st.State == vm.StateStopping }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	startErr := h.m.Start(ctx, cfg)
	if err := <-stopped; err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if waitExited(t, i) == nil {
		t.Error("the VM powered off although its guest ignores power-off")
	}
	// Either Start says the machine was being stopped, or it booted the
	// machine again after the stop and it runs.
	switch {
	case startErr != nil:
		if !errors.Is(startErr, vm.ErrStartFailed) || !strings.Contains(startErr.Error(), "stopping") {
			t.Errorf("Start during Stop: %v, want ErrStartFailed saying it is stopping", startErr)
		}
		if s := h.state(cfg); s != vm.StateStopped {
			t.Errorf("Start failed but the machine is %s", s)
		}
	default:
		if s := h.state(cfg); s != vm.StateRunning || h.ping(cfg) != nil {
			t.Errorf("Start succeeded during Stop but the machine is %s", s)
		}
	}
}

func TestStopDuringBootFailsStartTruthfully(t *testing.T) {
	h := newHarness(t, fake.Script{Features: fake.DefaultFeatures(), BootDelay: time.Minute})
	cfg := h.create("m1")

	started := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		started <- h.m.Start(ctx, cfg)
	}()
	// The VM runs but its agent does not answer yet.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	i, err := h.be.WaitVM(ctx, h.run(cfg).Dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.m.Stop(context.Background(), cfg, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := waitExited(t, i); err != nil {
		t.Errorf("VM exit: %v, want a power-off (ACPI, the agent never answered)", err)
	}
	select {
	case err := <-started:
		if !errors.Is(err, vm.ErrStartFailed) {
			t.Errorf("Start interrupted by Stop: %v, want ErrStartFailed", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Start did not return after the machine was stopped")
	}
	if s := h.state(cfg); s != vm.StateStopped {
		t.Errorf("state: %s", s)
	}
}

func TestStopWhileTheHypervisorStarts(t *testing.T) {
	// The hypervisor takes a second to start; the Stop comes meanwhile.
	h := newHarness(t, fake.Script{Features: fake.DefaultFeatures(), StartDelay: time.Second})
	cfg := h.create("m1")

	started := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		started <- h.m.Start(ctx, cfg)
	}()
	if _, err := h.watchFromSpawn(cfg, func(st *control.Status) bool { return st.State == vm.StateStarting }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	t0 := time.Now()
	if err := h.m.Stop(ctx, cfg, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(t0); took > 4*time.Second {
		t.Errorf("Stop during boot took %v", took)
	}
	if i := h.be.VM(h.run(cfg).Dir); i != nil {
		t.Errorf("a VM runs after Stop returned (stopped during its boot)")
	}
	select {
	case err := <-started:
		if !errors.Is(err, vm.ErrStartFailed) {
			t.Errorf("Start interrupted by Stop: %v, want ErrStartFailed", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Start did not return after the machine was stopped")
	}
	if s := h.state(cfg); s != vm.StateStopped {
		t.Errorf("state: %s", s)
	}
}

func TestFailedStartSaysWhyAndRetryBoots(t *testing.T) {
	h := newHarness(t, fake.Script{Features: fake.DefaultFeatures(), StartErr: errors.New("no hypervisor in this test")})
	cfg := h.create("m1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := h.m.Start(ctx, cfg)
	if !errors.Is(err, vm.ErrStartFailed) || !strings.Contains(errString(err), "no hypervisor in this test") {
		t.Fatalf("Start: %v; want ErrStartFailed with the reason", err)
	}
	if s := h.state(cfg); s != vm.StateStopped || h.be.Boots() != 0 {
		t.Fatalf("after a failed start: state %s, %d boots", s, h.be.Boots())
	}
	// The reason stays with the machine for ls, inspect and the
	// dashboard, also in another process (a fresh Manager).
	other := &vm.Manager{Data: h.m.Data, Backend: h.be}
	if f := other.Get(ctx, cfg).StartFailure; f == nil || !strings.Contains(f.Error, "no hypervisor in this test") || f.At.IsZero() {
		t.Fatalf("after a failed start, Get's StartFailure is %+v", f)
	}
	// The cause is gone: a Start right away boots, and does not report
	// the failed boot again.
	h.be.SetScript(fake.Script{Features: fake.DefaultFeatures()})
	if err := h.m.Start(ctx, cfg); err != nil {
		t.Fatalf("Start right after a failed start, cause fixed: %v", err)
	}
	if err := h.ping(cfg); err != nil {
		t.Fatal(err)
	}
	if f := h.m.Get(ctx, cfg).StartFailure; f != nil {
		t.Errorf("after a start that succeeded, StartFailure is %+v", f)
	}
	if err := h.m.Stop(ctx, cfg, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if f := h.m.Get(ctx, cfg).StartFailure; f != nil {
		t.Errorf("stopped after a start that succeeded, StartFailure is %+v", f)
	}
}

func TestStartRefusesMountsTheBackendCannotShare(t *testing.T) {
	feat := fake.DefaultFeatures()
	feat.ShareFS = ""
	h := newHarness(t, fake.Script{Features: feat})
	cfg := h.create("m1", t.TempDir()+":/mnt/x")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := h.m.Start(ctx, cfg)
	if !errors.Is(err, vm.ErrStartFailed) || !strings.Contains(errString(err), "cannot share directories") {
		t.Fatalf("Start with a mount on a backend without ShareFS: %v", err)
	}
	if h.be.Boots() != 0 {
		t.Fatal("a machine the backend cannot share for was booted")
	}
}

func TestAgentErrorsThroughTheSocketAreTyped(t *testing.T) {
	// A guest that boots for a minute and ignores power-off: the machine
	// stays starting, then stopping, as long as the test needs.
	h := newHarness(t, fake.Script{Features: fake.DefaultFeatures(), BootDelay: time.Minute, IgnoreStop: true})
	cfg := h.create("m1")
	run := h.run(cfg)

	// No supervisor.
	if err := h.ping(cfg); !errors.Is(err, vm.ErrNotRunning) {
		t.Fatalf("ping of a machine never started: %v, want ErrNotRunning", err)
	}

	// The agent does not answer in time.
	sctx, scancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer scancel()
	if err := h.m.Start(sctx, cfg); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Start with a guest that boots for a minute, 300ms deadline: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, _, err := control.Dial(ctx, run.Control(), control.Request{Op: control.OpAgent, Timeout: 100 * time.Millisecond}); !errors.Is(err, vm.ErrAgentTimeout) {
		t.Fatalf("agent call while the guest boots: %v, want ErrAgentTimeout", err)
	}
	i := h.vm(cfg)

	// The supervisor is stopping the machine.
	stopped := make(chan error, 1)
	go func() { stopped <- h.m.Stop(context.Background(), cfg, 2*time.Second) }()
	if _, err := h.watchUntil(cfg, func(st *control.Status) bool { return st.State == vm.StateStopping }); err != nil {
		t.Fatal(err)
	}
	if err := h.ping(cfg); !errors.Is(err, control.ErrStopping) {
		t.Errorf("ping while stopping: %v, want ErrStopping", err)
	}
	// A client that connected before the VM exited asks once the
	// supervisor reports the machine stopped.
	var d net.Dialer
	early, err := d.DialContext(ctx, "unix", run.Control())
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if err := waitExited(t, i); !errors.Is(err, fake.ErrKilled) {
		t.Errorf("VM exit: %v, want killed", err)
	}
	if _, err := early.Write([]byte(`{"op":"agent"}` + "\n")); err != nil {
		t.Fatal(err)
	}
	var resp control.Response
	if err := control.ReadLine(early, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Error == nil || !errors.Is(resp.Error, vm.ErrNotRunning) {
		t.Errorf("agent call to a supervisor whose machine stopped: %+v, want ErrNotRunning", resp.Error)
	}
}

func TestDeleteStopsARunningMachine(t *testing.T) {
	h := newHarness(t, fake.Script{Features: fake.DefaultFeatures()})
	cfg := h.create("m1")
	h.start(cfg)
	i := h.vm(cfg)
	if _, err := h.m.Delete(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if err := waitExited(t, i); err != nil {
		t.Errorf("VM exit: %v", err)
	}
	if _, err := h.m.Load(cfg.Name); !errors.Is(err, vm.ErrNotFound) {
		t.Errorf("Load after Delete: %v", err)
	}
	if _, err := os.Stat(h.run(cfg).Dir); !os.IsNotExist(err) {
		t.Errorf("runtime directory after Delete: %v", err)
	}
}

func TestStartThatTimesOutNamesTheStageAndTheConsole(t *testing.T) {
	// The VM runs, but its agent never answers within the start's time.
	h := newHarness(t, fake.Script{Features: fake.DefaultFeatures(), BootDelay: time.Minute})
	cfg := h.create("m1")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := h.m.Start(ctx, cfg)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Start: %v, want a deadline error", err)
	}
	msg := errString(err)
	for _, want := range []string{"last stage: booting", `the console's last line: "fake: booting m1`, "machinetop machine logs m1"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the timeout error lacks %q: %s", want, msg)
		}
	}
}

// A set of CPUs or memory on a running machine applies at the next boot:
// until then Get reports what the running boot has beside the new values,
// and tables show both ("1→2").
func TestSetOnARunningMachineShowsWhatRunsUntilRestart(t *testing.T) {
	h := newHarness(t, fake.Script{Features: fake.DefaultFeatures()})
	cfg := h.create("m1")
	h.start(cfg)
	ctx := context.Background()
	if mc := h.m.Get(ctx, cfg); mc.Running != nil || mc.CPUsShown() != strconv.Itoa(cfg.CPUs) {
		t.Fatalf("before any set: running %+v, CPUs shown %q", mc.Running, mc.CPUsShown())
	}
	oldCPUs, oldMem := cfg.CPUs, cfg.MemoryBytes
	if err := h.m.Set(cfg, map[string]string{"cpus": strconv.Itoa(oldCPUs + 1), "memory": vm.FormatSize(2 * oldMem)}); err != nil {
		t.Fatal(err)
	}
	cfg, err := h.m.Load("m1")
	if err != nil {
		t.Fatal(err)
	}
	mc := h.m.Get(ctx, cfg)
	if mc.Running == nil || mc.Running.CPUs != oldCPUs || mc.Running.MemoryBytes != oldMem {
		t.Fatalf("after set: running %+v, want %d CPUs and %d bytes", mc.Running, oldCPUs, oldMem)
	}
	if want := fmt.Sprintf("%d→%d", oldCPUs, oldCPUs+1); mc.CPUsShown() != want {
		t.Errorf("CPUs shown %q, want %q", mc.CPUsShown(), want)
	}
	if got, want := mc.MemoryShown(vm.FormatSize), vm.FormatSize(oldMem)+"→"+vm.FormatSize(2*oldMem); got != want {
		t.Errorf("memory shown %q, want %q", got, want)
	}
	if err := h.m.Restart(ctx, cfg, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if mc := h.m.Get(ctx, cfg); mc.Running != nil || mc.CPUsShown() != strconv.Itoa(oldCPUs+1) {
		t.Errorf("after restart: running %+v, CPUs shown %q", mc.Running, mc.CPUsShown())
	}
}
