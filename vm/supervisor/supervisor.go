// Package supervisor is the process that owns one running machine, as
// Lima's host agent owns an instance: it boots the VM through a
// driver.Backend (or adopts one that outlived a killed supervisor), keeps a
// session with the guest agent (reconnecting when the channel drops),
// keeps the guest's clock in step, forwards host loopback ports to the
// guest through the agent (SSH, --publish, and every port the guest
// listens on; vm/portfwd), and serves the machine's control socket
// (vm/control): status, a pushed status stream, agent calls spliced to the
// guest, and stop. The hidden `machinetop __supervise NAME` command runs
// it in a process of its own; vm.Manager starts that process and talks to
// it only through the socket.
package supervisor

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/gofrs/flock"
	"github.com/hashicorp/yamux"

	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/vm"
	"github.com/machinetop/machinetop/vm/control"
	"github.com/machinetop/machinetop/vm/driver"
	"github.com/machinetop/machinetop/vm/internal/atomicfile"
	"github.com/machinetop/machinetop/vm/kit"
	"github.com/machinetop/machinetop/vm/layout"
	"github.com/machinetop/machinetop/vm/portfwd"
)

// Options configure Run.
type Options struct {
	// Manager is the machine store the machine belongs to; its Backend
	// boots the VM.
	Manager *vm.Manager
	// Kit returns the guest kernel and initramfs for a boot of cfg; nil
	// means KitFor (Debian's kernel, built and cached under the data
	// directory). Tests over a fake backend pass one that builds nothing.
	Kit func(ctx context.Context, cfg *vm.Config, log io.Writer) (*kit.Kit, error)
	// Log receives the supervisor's log lines (its supervisor.log when run
	// as a process); nil means os.Stderr.
	Log io.Writer
}

// supervisor owns one running machine.
type supervisor struct {
	m    *vm.Manager
	be   driver.Backend
	feat driver.Features
	opts Options
	cfg  *vm.Config
	dir  layout.Machine
	run  layout.Run
	inst driver.Instance
	log  *slog.Logger
	logw io.Writer
	// done is closed when the VM has exited or the supervisor is told to
	// go (its context ended): every goroutine of the supervisor ends then.
	done chan struct{}
	// shares and hidden are this boot's shared directories and the
	// directories no machine may see (prepareHost).
	shares   []driver.Share
	hidden   []string
	bootInfo bootInfo
	// consoleFrom is where this boot's output starts in the console log.
	consoleFrom int64

	mu      sync.Mutex
	st      control.Status
	changed chan struct{} // closed and replaced at every status change
	sess    *yamux.Session
	readyCh chan struct{} // closed while the agent is ready; replaced when it drops
	stopped chan struct{} // closed when the VM has exited
	stopWG  sync.WaitGroup
	// stopBoot makes a boot in progress give up (a stop came during it);
	// booted is closed once boot has returned, with s.inst set or not.
	stopBoot context.CancelFunc
	booted   chan struct{}
	// everReady is true once the agent answered during this boot.
	everReady bool
	// fwd forwards host ports to the guest (ports.go); set once the VM
	// runs.
	fwd *portfwd.Forwarder
}

// Run runs the supervisor of cfg's machine in the calling goroutine until
// the VM exits or ctx ends. When ctx ends first, Run returns leaving the VM
// as it is, as a supervisor killed with SIGKILL would (a backend with
// Features.Adopt lets the next supervisor adopt it). Run returns nil at
// once when another supervisor already owns the machine, and the boot's
// error when the VM could not be started (it is also written to the log
// as a line starting "error: ", which vm.Manager reports).
func Run(ctx context.Context, cfg *vm.Config, opts Options) error {
	m := opts.Manager
	dir := m.Dir(cfg.Name)
	lock := flock.New(dir.SupervisorLock(), flock.SetFlag(layout.LockFlag))
	ok, err := lock.TryLock()
	if err != nil {
		return fmt.Errorf("locking %s: %w", cfg.Name, err)
	}
	if !ok {
		return nil
	}
	defer lock.Unlock()
	run, err := layout.RunFor(cfg.ID)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(run.Dir, 0o700); err != nil {
		return err
	}
	logw := opts.Log
	if logw == nil {
		logw = os.Stderr
	}
	bootCtx, stopBoot := context.WithCancel(ctx)
	defer stopBoot()
	s := &supervisor{
		m: m, be: m.Backend, feat: m.Backend.Features(), opts: opts, cfg: cfg, dir: dir, run: run,
		log:      slog.New(slog.NewTextHandler(logw, nil)).With("machine", cfg.Name),
		logw:     logw,
		done:     make(chan struct{}),
		changed:  make(chan struct{}),
		readyCh:  make(chan struct{}),
		stopped:  make(chan struct{}),
		stopBoot: stopBoot,
		booted:   make(chan struct{}),
	}
	s.st = control.Status{State: control.StateStarting, PID: os.Getpid(), Backend: s.be.Name()}

	ln, err := control.Listen(run.Control())
	if err != nil {
		return err
	}
	defer ln.Close()
	go s.serve(ln)

	if err := s.boot(bootCtx); err != nil {
		if bootCtx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("stopped while starting")
		}
		s.log.Error("start failed", "err", err)
		fmt.Fprintf(logw, "error: %v\n", err)
		s.setStatus(func(st *control.Status) { st.State = control.StateStopped; st.Error = err.Error() })
		close(s.booted)
		// Watchers have been told; give a plain status poller a moment
		// to read the error before the socket goes.
		time.Sleep(200 * time.Millisecond)
		close(s.done)
		if !s.be.Running(run.Dir, cfg.Name) {
			// No VM, so nothing to adopt (one that could not be adopted
			// keeps what the next supervisor needs to try again).
			os.RemoveAll(run.Dir)
		}
		return err
	}
	close(s.booted)
	s.startForwards()
	go s.agentLoop()
	exited := make(chan error, 1)
	go func() { exited <- s.inst.Wait() }()
	select {
	case werr := <-exited:
		s.log.Info("vm exited", "err", werr)
		s.mu.Lock()
		ready := s.everReady
		s.mu.Unlock()
		fatal := ""
		if !ready {
			// The guest gave up before its agent ran: say why.
			if fatal = guestFatal(s.dir.ConsoleLog(), s.consoleFrom); fatal != "" {
				fmt.Fprintf(logw, "error: the guest stopped during boot: %s\n", fatal)
			}
		}
		s.setStatus(func(st *control.Status) {
			st.State = control.StateStopped
			st.AgentReady = false
			if fatal != "" {
				st.Error = "the guest stopped during boot: " + fatal
			}
		})
		close(s.stopped)
		close(s.done)
		s.stopWG.Wait()
	case <-ctx.Done():
		s.log.Warn("supervisor told to go; leaving the vm running", "err", ctx.Err())
		close(s.done)
	}
	s.fwd.Close()
	if s.vmExited() {
		// Nothing is left to adopt: the runtime directory goes with
		// the VM (a stopped machine leaves none behind).
		os.RemoveAll(run.Dir)
	} else {
		os.Remove(run.Control())
	}
	return nil
}

// vmExited reports whether the VM this supervisor ran has exited (rather
// than being left running for the next supervisor to adopt).
func (s *supervisor) vmExited() bool {
	select {
	case <-s.stopped:
		return true
	default:
		return false
	}
}

// setStatus changes the status under the lock and wakes every watcher.
func (s *supervisor) setStatus(f func(*control.Status)) {
	s.mu.Lock()
	f(&s.st)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// status returns the current status and a channel closed at its next
// change.
func (s *supervisor) status() (control.Status, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st, s.changed
}

// spec describes a boot of the machine with its files f; f is nil when
// adopting.
func (s *supervisor) spec(f *bootFiles) *driver.Spec {
	cmdline := fmt.Sprintf("quiet panic=-1 %s=%s", proto.ParamHostname, s.cfg.Name)
	sp := &driver.Spec{
		Name: s.cfg.Name, Arch: s.cfg.GuestArch(), CPUs: s.cfg.CPUs, MemoryBytes: s.cfg.MemoryBytes,
		Cmdline:  cmdline,
		RunDir:   s.run.Dir,
		StateDir: s.dir.Dir,
		Shares:   s.shares,
		Hidden:   s.hidden,
	}
	if f != nil {
		sp.Kernel, sp.Initramfs, sp.Console = f.kernel, f.initramfs, f.console
		sp.Disks = []driver.Disk{{File: f.disk, Serial: proto.RootSerial}}
		if f.image != nil {
			sp.Disks = append(sp.Disks, driver.Disk{File: f.image, Serial: proto.ImageSerial, ReadOnly: true})
		}
		sp.Disks = append(sp.Disks, driver.Disk{File: f.config, Serial: proto.ConfigSerial, ReadOnly: true})
		sp.Network, sp.MAC = f.network, f.mac
	}
	return sp
}

// boot adopts a VM that outlived its supervisor, or starts a new one.
func (s *supervisor) boot(ctx context.Context) error {
	if s.feat.Adopt && s.be.Running(s.run.Dir, s.cfg.Name) {
		if err := s.adopt(ctx); err == nil {
			return nil
		} else {
			s.log.Warn("cannot adopt vm", "err", err)
		}
	}
	s.stage("preparing the guest kernel")
	k, err := s.kit(ctx)
	if err != nil {
		return err
	}
	s.stage("checking the accelerator")
	accel, err := s.be.Accelerator(ctx, s.cfg.GuestArch(), k.Kernel)
	if err != nil {
		return err
	}
	s.setStatus(func(st *control.Status) { st.Accelerator, st.Kernel = accel, k.KernelRelease })
	var files bootFiles
	defer files.close()
	if err := s.openDisk(&files); err != nil {
		return err
	}
	bi, err := s.prepareHost()
	if err != nil {
		return err
	}
	if err := s.openBootFiles(&files, k); err != nil {
		return err
	}
	if s.feat.MachineNet {
		s.stage("joining the machine network")
		if err := s.joinNetwork(ctx, &files); err != nil {
			return err
		}
	}
	s.bootInfo = bi
	s.saveBootInfo(bi)
	s.stage("starting the VM")
	s.consoleFrom = consoleSize(s.dir.ConsoleLog())
	inst, err := s.be.Start(ctx, s.spec(&files))
	if err != nil {
		return err
	}
	s.inst = inst
	now := time.Now()
	atomicfile.WriteFile(s.run.Started(), []byte(now.Format(time.RFC3339Nano)), 0o600)
	s.log.Info("vm started", "pid", inst.PID(), "accel", accel, "kernel", k.KernelRelease)
	s.running(now, bi)
	s.stage("booting")
	go s.tailConsole(s.consoleFrom)
	return nil
}

// adopt attaches to the running VM and restores what its boot chose.
func (s *supervisor) adopt(ctx context.Context) error {
	inst, err := s.be.Adopt(ctx, s.spec(nil))
	if err != nil {
		return err
	}
	s.log.Info("adopted running vm", "pid", inst.PID())
	s.inst = inst
	s.consoleFrom = consoleSize(s.dir.ConsoleLog())
	started := time.Now()
	if b, err := os.ReadFile(s.run.Started()); err == nil {
		started, _ = time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
	}
	s.bootInfo = s.loadBootInfo()
	s.running(started, s.bootInfo)
	return nil
}

// running records a running VM in the status.
func (s *supervisor) running(started time.Time, bi bootInfo) {
	s.setStatus(func(st *control.Status) {
		st.State = control.StateRunning
		st.VMPID = s.inst.PID()
		st.Started = started
		st.SSHPort, st.Mounts = bi.SSHPort, bi.Mounts
		st.CPUs, st.Memory = bi.CPUs, bi.Memory
	})
}
