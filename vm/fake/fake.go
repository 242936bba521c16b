//go:build linux

// Package fake is an in-process driver.Backend for tests of the supervisor
// and the Manager: its VMs are goroutines of the calling process, and each
// VM's guest agent is the real one (guest/agent) serving the agent channel,
// so everything above the driver runs its real code without a hypervisor.
//
// A Script says how the backend and its guests behave: the Features it
// reports, how long a guest takes before its agent answers, whether guests
// obey power-off requests, and whether Start fails. An Instance can be made
// to drop its agent channel (DropAgent) or to die (Crash). Running VMs are
// kept by run directory, so a VM outlives the supervisor that started it,
// as a QEMU process does, and a new supervisor finds it with Running and
// attaches to it with Adopt.
//
// The guest agent runs on the host, as the test's user: agent calls act on
// the host (an Exec runs a host process, Ping reports the host's kernel,
// and SetTime would set the host's clock; the supervisor's clock check
// never calls it here, as guest and host share one clock). Its power-off
// is replaced: a guest powering off only ends its Instance. The package
// is linux-only because guest/agent is.
package fake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/machinetop/machinetop/guest/agent"
	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/vm/driver"
)

// Script describes how a Backend and the guests it boots behave. The
// backend reads it at each call, so a change (Backend.SetScript) applies
// from the next call on, also to VMs already running.
type Script struct {
	// Features is what the backend reports (Backend.Features) and
	// enforces: Start refuses Spec.Shares without ShareFS, and Running and Adopt find VMs only with Adopt.
	Features driver.Features
	// StartDelay is how long Start takes before the VM exists, as QEMU's
	// Start waits for its monitor socket; Start gives up with ctx's error
	// when ctx ends first.
	StartDelay time.Duration
	// BootDelay is how long a guest takes from Start until its agent
	// serves the agent channel; until then the host's handshake goes
	// unanswered, as while a real guest boots.
	BootDelay time.Duration
	// IgnoreStop makes guests ignore power-off requests: the agent
	// acknowledges its shutdown call but the guest keeps running, and
	// RequestStop (ACPI) does nothing. Only Kill stops such a VM.
	IgnoreStop bool
	// StartErr, when non-nil, makes Start fail (after StartDelay) with an
	// error wrapping it, booting nothing.
	StartErr error
	// Listeners, when set, is what the guest's agent reports as its
	// listening TCP sockets (proto.OpPorts); nil reports none. A guest
	// port is dialled on the host, where the agent runs.
	Listeners func() ([]proto.Listener, error)
}

// DefaultFeatures returns the features of a QEMU-like backend: directories
// shared over virtio-fs, VMs that outlive their supervisor
// (Adopt), free page reporting and a balloon, an agent channel that is not
// vsock, the host's architecture, and a guest network configured by DHCP.
func DefaultFeatures() driver.Features {
	return driver.Features{
		ShareFS:           driver.ShareVirtiofs,
		Adopt:             true,
		FreePageReporting: true,
		Balloon:           true,
		Archs:             []string{runtime.GOARCH},
	}
}

// Errors a VM's Wait returns for an exit that is not a power-off.
var (
	// ErrKilled is what Wait returns after Kill.
	ErrKilled = errors.New("fake: vm killed")
	// ErrCrashed is what Wait returns after Crash.
	ErrCrashed = errors.New("fake: vm crashed")
)

// errExited is returned by calls to a VM that has exited.
var errExited = errors.New("fake: the vm has exited")

// Backend is a driver.Backend whose VMs run in the calling process. It is
// safe for concurrent use; make one with New.
type Backend struct {
	mu     sync.Mutex
	script Script
	vms    map[string]*Instance // running VMs by Spec.RunDir
	boots  int
	// started is closed and replaced at every boot.
	started chan struct{}
}

var _ driver.Backend = (*Backend)(nil)

// New returns a Backend that behaves as s says.
func New(s Script) *Backend {
	return &Backend{script: s, vms: map[string]*Instance{}, started: make(chan struct{})}
}

// Script returns the backend's current script.
func (b *Backend) Script() Script {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.script
}

// SetScript replaces the backend's script; see Script for when it applies.
func (b *Backend) SetScript(s Script) {
	b.mu.Lock()
	b.script = s
	b.mu.Unlock()
}

// Name returns "fake".
func (b *Backend) Name() string { return "fake" }

// Features returns Script.Features.
func (b *Backend) Features() driver.Features { return b.Script().Features }

// Accelerator returns "fake": there is nothing to probe.
func (b *Backend) Accelerator(ctx context.Context, arch, kernel string) (string, error) {
	return "fake", ctx.Err()
}

// Start checks spec as a hypervisor would (kernel, initramfs and disks
// exist, resources are set, shares match the Features),
// takes Script.StartDelay, then records the VM under spec.RunDir, appends
// a boot line with the kernel command line to spec.ConsoleLog and boots
// the guest: its agent serves the channel after Script.BootDelay. It
// fails with an error wrapping Script.StartErr when that is set, one
// wrapping driver.ErrUnsupported for a spec the Features do not allow, and
// another when a VM already runs in spec.RunDir (QEMU could not lock the
// disks).
func (b *Backend) Start(ctx context.Context, spec *driver.Spec) (driver.Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := b.Script()
	if err := checkSpec(spec, s.Features); err != nil {
		return nil, fmt.Errorf("fake: starting %s: %w", spec.Name, err)
	}
	if s.StartDelay > 0 {
		t := time.NewTimer(s.StartDelay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("fake: starting %s: %w", spec.Name, ctx.Err())
		}
	}
	if s.StartErr != nil {
		return nil, fmt.Errorf("fake: starting %s: %w", spec.Name, s.StartErr)
	}
	b.mu.Lock()
	if old := b.vms[spec.RunDir]; old != nil {
		b.mu.Unlock()
		return nil, fmt.Errorf("fake: starting %s: a vm already runs in %s", spec.Name, spec.RunDir)
	}
	inst := newInstance(b, *spec)
	b.vms[spec.RunDir] = inst
	b.boots++
	close(b.started)
	b.started = make(chan struct{})
	b.mu.Unlock()
	if spec.Console != nil {
		// The supervisor closes its copy once Start returns, as QEMU
		// keeps its own: write the boot line now.
		fmt.Fprintf(spec.Console, "fake: booting %s: %s\n", spec.Name, spec.Cmdline)
	}
	go inst.boot(s.BootDelay)
	return inst, nil
}

// checkSpec refuses what a hypervisor would refuse to boot.
func checkSpec(spec *driver.Spec, feat driver.Features) error {
	if spec.Name == "" || spec.CPUs < 1 || spec.MemoryBytes == 0 || spec.MemoryBytes%(1<<20) != 0 {
		return fmt.Errorf("bad spec: name %q, %d cpus, %d bytes of memory", spec.Name, spec.CPUs, spec.MemoryBytes)
	}
	if fi, err := os.Stat(spec.RunDir); err != nil || !fi.IsDir() {
		return fmt.Errorf("run directory %q is not a directory", spec.RunDir)
	}
	for _, f := range []*os.File{spec.Kernel, spec.Initramfs} {
		if f == nil {
			return fmt.Errorf("kernel or initramfs is not open")
		}
		if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("kernel or initramfs %q is not a file", f.Name())
		}
	}
	for _, d := range spec.Disks {
		if d.File == nil {
			return fmt.Errorf("disk %s is not open", d.Serial)
		}
		if _, err := d.File.Stat(); err != nil {
			return fmt.Errorf("disk %s: %w", d.Serial, err)
		}
	}
	if len(spec.Shares) > 0 && feat.ShareFS == "" {
		return fmt.Errorf("sharing directories: %w", driver.ErrUnsupported)
	}
	return nil
}

// Running reports whether a VM of the machine name runs in runDir; it is
// false when Script.Features.Adopt is false.
func (b *Backend) Running(runDir, name string) bool {
	return b.Features().Adopt && b.running(runDir, name) != nil
}

func (b *Backend) running(runDir, name string) *Instance {
	b.mu.Lock()
	defer b.mu.Unlock()
	if i := b.vms[runDir]; i != nil && i.spec.Name == name {
		return i
	}
	return nil
}

// Adopt returns the VM running in spec.RunDir (the same Instance that
// Start returned). It fails with an error wrapping driver.ErrUnsupported
// when Script.Features.Adopt is false, and with another error when no VM
// of spec.Name runs there.
func (b *Backend) Adopt(ctx context.Context, spec *driver.Spec) (driver.Instance, error) {
	if !b.Features().Adopt {
		return nil, fmt.Errorf("fake: adopting %s: %w", spec.Name, driver.ErrUnsupported)
	}
	i := b.running(spec.RunDir, spec.Name)
	if i == nil {
		return nil, fmt.Errorf("fake: no running vm for %s in %s", spec.Name, spec.RunDir)
	}
	i.mu.Lock()
	i.adoptions++
	i.mu.Unlock()
	return i, nil
}

// VM returns the VM running in runDir, or nil when none runs there.
func (b *Backend) VM(runDir string) *Instance {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.vms[runDir]
}

// WaitVM waits until a VM runs in runDir and returns it; it returns ctx's
// error when ctx ends first.
func (b *Backend) WaitVM(ctx context.Context, runDir string) (*Instance, error) {
	for {
		b.mu.Lock()
		i, started := b.vms[runDir], b.started
		b.mu.Unlock()
		if i != nil {
			return i, nil
		}
		select {
		case <-started:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Boots returns how many VMs Start has booted.
func (b *Backend) Boots() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.boots
}

// KillAll kills every running VM and waits until they have exited, for a
// test's cleanup.
func (b *Backend) KillAll() {
	b.mu.Lock()
	var vms []*Instance
	for _, i := range b.vms {
		vms = append(vms, i)
	}
	b.mu.Unlock()
	for _, i := range vms {
		i.Kill()
		i.Wait()
	}
}

// Instance is one VM of a Backend: a real guest agent serving a channel
// that the host reaches with DialAgent. Its methods are safe for
// concurrent use.
type Instance struct {
	b    *Backend
	spec driver.Spec
	// guest ends when the VM exits; the agent serves until then.
	guest  context.Context
	cancel context.CancelFunc
	// pending holds the guest end of the newest channel until the agent
	// takes it.
	pending chan io.ReadWriteCloser
	done    chan struct{} // closed when the VM has exited
	once    sync.Once

	mu         sync.Mutex
	host       net.Conn // host end of the current channel
	guestEnd   io.Closer
	dials      int
	adoptions  int
	agentStart time.Time
	err        error // why the VM exited; nil for a power-off
}

var _ driver.Instance = (*Instance)(nil)

func newInstance(b *Backend, spec driver.Spec) *Instance {
	ctx, cancel := context.WithCancel(context.Background())
	return &Instance{b: b, spec: spec, guest: ctx, cancel: cancel,
		pending: make(chan io.ReadWriteCloser, 1), done: make(chan struct{})}
}

// boot runs the guest: after delay its agent serves the channel until the
// VM exits.
func (i *Instance) boot(delay time.Duration) {
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-i.guest.Done():
		return
	}
	i.mu.Lock()
	i.agentStart = time.Now()
	i.mu.Unlock()
	srv := &agent.Server{Shutdown: i.guestShutdown, Listeners: i.listeners}
	srv.ServeChannel(i.guest, i.openChannel)
}

// listeners is what the guest listens on: Script.Listeners, else
// nothing (the agent runs on the host, whose own sockets are no guest's).
func (i *Instance) listeners() ([]proto.Listener, error) {
	if l := i.b.Script().Listeners; l != nil {
		return l()
	}
	return nil, nil
}

// openChannel waits for the host to dial and returns the guest end, as
// the agent opening its virtio-serial port would.
func (i *Instance) openChannel() (io.ReadWriteCloser, error) {
	select {
	case ch := <-i.pending:
		return ch, nil
	case <-i.guest.Done():
		return nil, i.guest.Err()
	}
}

// guestShutdown is the agent's power-off: the VM exits as after a guest
// power-off (Wait returns nil). A reboot ends the VM too, as QEMU run with
// -no-reboot does. With Script.IgnoreStop nothing happens.
func (i *Instance) guestShutdown(reboot bool) error {
	if i.b.Script().IgnoreStop {
		return nil
	}
	i.exit(nil)
	return nil
}

// DialAgent opens a new agent channel: a unix socket pair whose guest end
// the agent serves (after the boot delay). It closes the previous channel,
// as a new connection replaces the old one. It fails once the VM exited.
func (i *Instance) DialAgent(ctx context.Context) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	hf := os.NewFile(uintptr(fds[0]), "fake-agent-host")
	host, err := net.FileConn(hf)
	hf.Close()
	if err != nil {
		syscall.Close(fds[1])
		return nil, err
	}
	// Non-blocking, so that Close interrupts the agent's Read.
	syscall.SetNonblock(fds[1], true)
	g := &socketEnd{os.NewFile(uintptr(fds[1]), "fake-agent-guest")}

	i.mu.Lock()
	defer i.mu.Unlock()
	select {
	case <-i.done:
		host.Close()
		g.Close()
		return nil, errExited
	default:
	}
	i.closeChannelLocked()
	select {
	case old := <-i.pending:
		old.Close()
	default:
	}
	i.pending <- g
	i.host, i.guestEnd = host, g
	i.dials++
	return host, nil
}

// closeChannelLocked closes both ends of the current channel; i.mu is held.
func (i *Instance) closeChannelLocked() {
	if i.host != nil {
		i.host.Close()
		i.guestEnd.Close()
		i.host, i.guestEnd = nil, nil
	}
}

// socketEnd is the guest end of the channel. A socket's EOF means the host
// end is gone for good (unlike a virtio-serial port's, which the agent
// polls through), so it is reported as io.ErrUnexpectedEOF and the agent
// goes back to waiting for a new channel.
type socketEnd struct{ *os.File }

func (s *socketEnd) Read(p []byte) (int, error) {
	n, err := s.File.Read(p)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// DropAgent breaks the current agent channel, as a flaky virtio-serial
// reconnect does; the VM keeps running and the agent serves the next
// channel the host dials.
func (i *Instance) DropAgent() {
	i.mu.Lock()
	i.closeChannelLocked()
	i.mu.Unlock()
}

// RequestStop is the ACPI power button: the guest powers off (Wait returns
// nil) shortly after, unless Script.IgnoreStop. It returns at once, and
// fails once the VM has exited.
func (i *Instance) RequestStop(ctx context.Context) error {
	select {
	case <-i.done:
		return errExited
	default:
	}
	if !i.b.Script().IgnoreStop {
		go i.exit(nil)
	}
	return nil
}

// Kill stops the VM at once; Wait then returns ErrKilled. Killing an
// exited VM does nothing.
func (i *Instance) Kill() error {
	i.exit(ErrKilled)
	return nil
}

// Crash makes the VM die as if the hypervisor crashed; Wait then returns
// ErrCrashed.
func (i *Instance) Crash() { i.exit(ErrCrashed) }

// exit ends the VM once: the agent stops, the channel closes, the VM
// leaves the backend's registry (so Running is false by the time Wait
// returns) and Wait returns err.
func (i *Instance) exit(err error) {
	i.once.Do(func() {
		i.cancel()
		i.mu.Lock()
		i.err = err
		i.closeChannelLocked()
		i.mu.Unlock()
		i.b.mu.Lock()
		if i.b.vms[i.spec.RunDir] == i {
			delete(i.b.vms, i.spec.RunDir)
		}
		i.b.mu.Unlock()
		close(i.done)
	})
}

// Wait blocks until the VM has exited; it returns nil after a guest
// power-off, ErrKilled or ErrCrashed otherwise. Any number of callers may
// wait.
func (i *Instance) Wait() error {
	<-i.done
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.err
}

// Exited returns a channel closed when the VM has exited.
func (i *Instance) Exited() <-chan struct{} { return i.done }

// PID returns 0: the VM runs inside the calling process.
func (i *Instance) PID() int { return 0 }

// Spec returns the spec the VM was started with.
func (i *Instance) Spec() driver.Spec { return i.spec }

// Dials returns how many agent channels the host has opened.
func (i *Instance) Dials() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.dials
}

// Adoptions returns how many times Adopt has returned this VM.
func (i *Instance) Adoptions() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.adoptions
}

// AgentStarted returns when the guest's agent began serving, or the zero
// time while the guest is still booting.
func (i *Instance) AgentStarted() time.Time {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.agentStart
}
