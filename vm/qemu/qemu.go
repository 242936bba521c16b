//go:build linux

// Package qemu is the Linux backend: it runs each machine in its own
// qemu-system process with direct kernel boot, virtio-blk disks, user-mode
// networking, a virtio-serial agent channel, virtio-balloon with free page
// reporting, virtio-rng, the serial console in a log file and QMP on a unix
// socket (QEMU's docs: system/invocation, interop/qmp-spec). Guests are
// x86_64 (qemu-system-x86_64, the q35 board) or arm64
// (qemu-system-aarch64, the virt board); one of another architecture than
// the host's runs under TCG.
package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
	"golang.org/x/sys/unix"

	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/vm/driver"
)

// Backend runs machines under qemu-system-<arch>.
type Backend struct {
	// Binary is the QEMU system emulator for guests of the host's
	// architecture; empty means the one Emulator names, from PATH.
	// Guests of another architecture always use theirs from PATH.
	Binary string
	// Accel is "auto" (probe KVM, fall back to TCG), "kvm" or "tcg";
	// empty means $MACHINETOP_ACCEL, else "auto". It applies to guests of
	// the host's architecture: others always run under TCG.
	Accel string
	// ProbeCacheDir holds the result of the KVM probe for this host boot;
	// empty disables caching.
	ProbeCacheDir string
}

var _ driver.Backend = (*Backend)(nil)

// GuestNet is the guest's address on QEMU's user-mode network (slirp's
// fixed 10.0.2.0/24: the guest is .15, the gateway .2, DNS .3).
const GuestNet = "10.0.2.15/24,10.0.2.2,10.0.2.3"

// emulator is the QEMU system emulator for one guest architecture.
type emulator struct {
	binary string // as installed in PATH
	pkg    string // the Debian/Ubuntu package that ships it
}

// emulators are the guest architectures (GOARCH names) the backend runs.
var emulators = map[string]emulator{
	"amd64": {"qemu-system-x86_64", "qemu-system-x86"},
	"arm64": {"qemu-system-aarch64", "qemu-system-arm"},
}

// Emulator returns the name of the QEMU system emulator for guests of the
// GOARCH arch ("qemu-system-x86_64", "qemu-system-aarch64"), and false for
// an architecture the backend cannot run.
func Emulator(arch string) (string, bool) {
	e, ok := emulators[arch]
	return e.binary, ok
}

// Features describes the QEMU backend: shares over ShareFS(), SSH
// forwarded by user-mode networking's hostfwd, VMs that outlive their
// supervisor, free page reporting and a balloon, virtio-serial for the
// agent, a fixed guest address, and as Archs the host's architecture plus
// every other one whose emulator is in PATH (an arm64 guest on an x86
// host runs under TCG, and the other way round).
func (b *Backend) Features() driver.Features {
	archs := []string{runtime.GOARCH}
	for _, a := range []string{"amd64", "arm64"} {
		if a == runtime.GOARCH {
			continue
		}
		if _, err := exec.LookPath(emulators[a].binary); err == nil {
			archs = append(archs, a)
		}
	}
	return driver.Features{
		ShareFS:           b.ShareFS(),
		SSHForward:        true,
		Adopt:             true,
		FreePageReporting: true,
		Balloon:           true,
		Archs:             archs,
		GuestNet:          GuestNet,
	}
}

// Name returns "qemu".
func (b *Backend) Name() string { return "qemu" }

// binary returns the path of the emulator for guests of arch.
func (b *Backend) binary(arch string) (string, error) {
	e, ok := emulators[arch]
	if !ok {
		return "", fmt.Errorf("the QEMU backend cannot run %s guests: use amd64 or arm64", arch)
	}
	name := e.binary
	if b.Binary != "" && arch == runtime.GOARCH {
		name = b.Binary
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found, which runs %s machines: install QEMU (Debian/Ubuntu: sudo apt-get install %s) or run the README's setup command", name, arch, e.pkg)
	}
	return p, nil
}

// Accelerator returns "kvm" when KVM is usable for a guest of arch, else
// "tcg". KVM runs only guests of the host's architecture, so any other is
// "tcg" without a probe. With Accel "auto" it boots kernel under KVM and
// waits at most 3 s for it to get through its boot, because on nested
// hosts /dev/kvm exists but guests hang. Accel "kvm" for a guest of
// another architecture is an error.
func (b *Backend) Accelerator(ctx context.Context, arch, kernel string) (string, error) {
	if arch == "" {
		arch = runtime.GOARCH
	}
	accel := b.Accel
	if accel == "" {
		accel = os.Getenv("MACHINETOP_ACCEL")
	}
	switch accel {
	case "tcg":
		return accel, nil
	case "kvm":
		if arch != runtime.GOARCH {
			return "", fmt.Errorf("KVM cannot run an %s guest on this %s host: set the accelerator to auto or tcg (MACHINETOP_ACCEL)", arch, runtime.GOARCH)
		}
		return accel, nil
	case "", "auto":
	default:
		return "", fmt.Errorf("unknown accelerator %q: use auto, kvm or tcg", accel)
	}
	if arch != runtime.GOARCH {
		return "tcg", nil
	}
	bin, err := b.binary(arch)
	if err != nil {
		return "", err
	}
	return probeAccel(ctx, bin, kernel, b.ProbeCacheDir), nil
}

// machineArgs are the board and CPU for a guest of arch.
func machineArgs(arch, accel string) []string {
	if arch == "arm64" {
		// virt is QEMU's generic arm64 board: PCIe for the virtio-*-pci
		// devices, a PL011 UART (ttyAMA0), PSCI to power off; booted
		// without firmware, the kernel gets a device tree.
		if accel == "kvm" {
			return []string{"-machine", "virt,gic-version=max", "-cpu", "host"}
		}
		// -cpu max is every feature TCG emulates. Its pointer
		// authentication defaults to the architected QARMA5 cipher, so
		// costly to emulate that Debian's kernel took 6.6 s instead of
		// 1.5 s to reach /init; pauth-impdef=on keeps the feature with
		// QEMU's cheap implementation-defined algorithm.
		return []string{"-machine", "virt,gic-version=max", "-cpu", "max,pauth-impdef=on"}
	}
	// -cpu max under TCG gives the guest modern instructions; under KVM we
	// keep QEMU's default model, since host/max abort on some nested hosts.
	if accel == "tcg" {
		return []string{"-machine", "q35", "-cpu", "max"}
	}
	return []string{"-machine", "q35"}
}

// consoleDevice is the guest's serial console for arch: the PL011 UART of
// the virt board, or the PC's first 16550 UART. Both drivers are built into
// Debian's kernels, so /dev/console works from the first instruction of
// /init.
func consoleDevice(arch string) string {
	if arch == "arm64" {
		return "ttyAMA0"
	}
	return "ttyS0"
}

// Socket and pid file names inside Spec.RunDir.
const (
	agentSock = "agent.sock"
	qmpSock   = "qmp.sock"
	pidFile   = "qemu.pid"
)

// Args returns the QEMU command line (without the binary) for spec with
// the given accelerator. It is exported for the benchmark and tests.
func (b *Backend) Args(spec *driver.Spec, accel string) []string {
	memMiB := spec.MemoryBytes >> 20
	args := []string{
		"-name", "machinetop-" + spec.Name,
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-accel", accelOpt(accel),
	}
	arch := spec.GuestArch()
	args = append(args, machineArgs(arch, accel)...)
	args = append(args,
		"-smp", strconv.Itoa(spec.CPUs),
		"-m", fmt.Sprintf("%dM", memMiB),
		"-kernel", spec.Kernel,
		"-initrd", spec.Initramfs,
		"-append", "console="+consoleDevice(arch)+" "+spec.Cmdline,
		"-chardev", "file,id=console,append=on,path="+spec.ConsoleLog,
		"-serial", "chardev:console",
		"-netdev", netdev(spec),
		// romfile= drops the iPXE option ROM: we boot the kernel directly and
		// the ROM costs about a second under TCG.
		"-device", "virtio-net-pci,netdev=net0,romfile=",
		"-device", "virtio-serial-pci,id=vser",
		"-chardev", "socket,id=agent,path="+filepath.Join(spec.RunDir, agentSock)+",server=on,wait=off",
		"-device", "virtserialport,chardev=agent,name="+proto.PortName,
		"-device", "virtio-balloon-pci,id=balloon,free-page-reporting=on",
		"-object", "rng-random,id=rng,filename=/dev/urandom",
		"-device", "virtio-rng-pci,rng=rng",
		"-qmp", "unix:"+filepath.Join(spec.RunDir, qmpSock)+",server=on,wait=off",
		"-pidfile", filepath.Join(spec.RunDir, pidFile),
		"-monitor", "none",
	)
	args = append(args, shareArgs(spec, b.ShareFS())...)
	for i, d := range spec.Disks {
		drive := fmt.Sprintf("file=%s,if=none,id=disk%d,format=raw,discard=unmap,detect-zeroes=unmap", d.Path, i)
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		args = append(args, "-drive", drive,
			"-device", fmt.Sprintf("virtio-blk-pci,drive=disk%d,serial=%s", i, d.Serial))
	}
	return args
}

// netdev is QEMU user-mode networking, with the SSH port forwarded from
// the host's loopback interface only.
func netdev(spec *driver.Spec) string {
	n := "user,id=net0"
	if spec.SSHPort > 0 {
		n += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:22", spec.SSHPort)
	}
	return n
}

func accelOpt(accel string) string {
	if accel == "tcg" {
		// One host thread per vCPU; the default on x86 hosts anyway.
		return "tcg,thread=multi"
	}
	return accel
}

// Start launches QEMU for spec in its own session, so that signals to the
// caller's terminal or process group do not reach it, and returns once the
// QMP socket answers (at most 10 s).
func (b *Backend) Start(ctx context.Context, spec *driver.Spec) (driver.Instance, error) {
	bin, err := b.binary(spec.GuestArch())
	if err != nil {
		return nil, err
	}
	accel, err := b.Accelerator(ctx, spec.GuestArch(), spec.Kernel)
	if err != nil {
		return nil, err
	}
	for _, f := range []string{agentSock, qmpSock, pidFile} {
		os.Remove(filepath.Join(spec.RunDir, f))
	}
	var daemons []*os.Process
	if len(spec.Shares) > 0 && b.ShareFS() == proto.FSVirtiofs {
		if daemons, err = startVirtiofsd(ctx, spec); err != nil {
			return nil, err
		}
	}
	killDaemons := func() {
		for _, p := range daemons {
			p.Kill()
		}
	}
	cmd := exec.Command(bin, b.Args(spec, accel)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stdout = os.Stderr // QEMU's own messages go to the supervisor log
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		killDaemons()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	inst := &instance{runDir: spec.RunDir, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		if err != nil {
			inst.err = fmt.Errorf("qemu exited: %w", err)
		}
		close(inst.done)
	}()
	if err := inst.waitSocket(ctx, qmpSock, 10*time.Second); err != nil {
		inst.Kill()
		<-inst.done
		killDaemons()
		if inst.err != nil {
			return nil, fmt.Errorf("%v (see the supervisor log)", inst.err)
		}
		return nil, err
	}
	return inst, nil
}

// Adopt attaches to a QEMU process that an earlier supervisor started for
// the same RunDir and that outlived it. It returns an error when the pid
// file names no live QEMU of this machine.
func (b *Backend) Adopt(ctx context.Context, spec *driver.Spec) (driver.Instance, error) {
	pid, ok := RunningPID(spec.RunDir, spec.Name)
	if !ok {
		return nil, fmt.Errorf("no running QEMU for %s", spec.Name)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("watching qemu pid %d: %w", pid, err)
	}
	inst := &instance{runDir: spec.RunDir, pid: pid, done: make(chan struct{})}
	go func() {
		defer unix.Close(fd)
		for {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if _, err := unix.Poll(fds, -1); err != nil && !errors.Is(err, unix.EINTR) {
				break
			}
			if fds[0].Revents != 0 {
				break
			}
		}
		close(inst.done)
	}()
	return inst, nil
}

// RunningPID returns the pid of the live QEMU process started for the
// machine named name with run directory runDir, read from its pid file and
// checked against /proc/PID/cmdline.
func RunningPID(runDir, name string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(runDir, pidFile))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0, false
	}
	args := strings.Split(string(cl), "\x00")
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-name" && args[i+1] == "machinetop-"+name {
			return pid, true
		}
	}
	return 0, false
}

type instance struct {
	runDir string
	pid    int
	done   chan struct{}
	err    error
}

func (i *instance) PID() int { return i.pid }

func (i *instance) waitSocket(ctx context.Context, name string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	path := filepath.Join(i.runDir, name)
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-i.done:
			return fmt.Errorf("qemu exited during start")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("qemu did not open %s within %v", name, limit)
		}
	}
}

func (i *instance) DialAgent(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", filepath.Join(i.runDir, agentSock))
}

func (i *instance) qmp(cmd string) error {
	mon, err := qmp.NewSocketMonitor("unix", filepath.Join(i.runDir, qmpSock), 2*time.Second)
	if err != nil {
		return fmt.Errorf("connecting to QMP: %w", err)
	}
	if err := mon.Connect(); err != nil {
		return fmt.Errorf("QMP handshake: %w", err)
	}
	defer mon.Disconnect()
	if _, err := mon.Run([]byte(cmd)); err != nil {
		return fmt.Errorf("QMP %s: %w", cmd, err)
	}
	return nil
}

func (i *instance) RequestStop(ctx context.Context) error {
	return i.qmp(`{"execute":"system_powerdown"}`)
}

func (i *instance) Kill() error {
	err := syscall.Kill(i.pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

func (i *instance) Wait() error {
	<-i.done
	return i.err
}

// Running reports whether a QEMU started for machine name with run
// directory runDir is alive (driver.Backend).
func (b *Backend) Running(runDir, name string) bool {
	_, ok := RunningPID(runDir, name)
	return ok
}
