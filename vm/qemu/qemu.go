//go:build linux

// Package qemu is the Linux backend: it runs each machine in its own
// qemu-system process with direct kernel boot, virtio-blk disks, user-mode
// networking, a virtio-serial agent channel, virtio-balloon with free page
// reporting, virtio-rng, the serial console in a log file and QMP on a unix
// socket (QEMU's docs: system/invocation, interop/qmp-spec).
package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
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
	// Binary is the QEMU system emulator; empty means qemu-system-x86_64
	// or qemu-system-aarch64 from PATH, by host architecture.
	Binary string
	// Accel is "auto" (probe KVM, fall back to TCG), "kvm" or "tcg";
	// empty means $MACHINETOP_ACCEL, else "auto".
	Accel string
	// ProbeCacheDir holds the result of the KVM probe for this host boot;
	// empty disables caching.
	ProbeCacheDir string
	// Net is the IPv4 subnet of the user-mode network, e.g.
	// "10.0.2.0/24", whose DHCP server gives the guest the 16th address
	// (.15) with the gateway at .2 and DNS at .3 (QEMU's -netdev
	// user,net=); empty means $MACHINETOP_QEMU_NET, else QEMU's default
	// 10.0.2.0/24. The prefix must leave room for those addresses (/28
	// or shorter).
	Net string
}

var _ driver.Backend = (*Backend)(nil)

// NetEnv is the environment variable that sets Backend.Net.
const NetEnv = "MACHINETOP_QEMU_NET"

// Features describes the QEMU backend: shares over ShareFS(), SSH
// forwarded by user-mode networking's hostfwd, VMs that outlive their
// supervisor, free page reporting and a balloon, virtio-serial for the
// agent, guests of the host's architecture.
func (b *Backend) Features() driver.Features {
	return driver.Features{
		ShareFS:           b.ShareFS(),
		SSHForward:        true,
		Adopt:             true,
		FreePageReporting: true,
		Balloon:           true,
		Archs:             []string{runtime.GOARCH},
	}
}

// Name returns "qemu".
func (b *Backend) Name() string { return "qemu" }

func (b *Backend) binary() (string, error) {
	name := b.Binary
	if name == "" {
		name = "qemu-system-x86_64"
		if runtime.GOARCH == "arm64" {
			name = "qemu-system-aarch64"
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found: install QEMU with your package manager (%s), or run `make deps`", name, qemuPackages(name))
	}
	return p, nil
}

// qemuPackages names the packages holding the QEMU binary name on the
// common Linux distributions.
func qemuPackages(name string) string {
	if name == "qemu-system-aarch64" {
		return "Debian and Ubuntu: qemu-system-arm; Fedora: qemu-system-aarch64-core; Arch: qemu-system-aarch64; openSUSE: qemu-arm; Alpine: qemu-system-aarch64"
	}
	return "Debian, Ubuntu and Arch: qemu-system-x86; Fedora: qemu-system-x86-core; openSUSE: qemu-x86; Alpine: qemu-system-x86_64"
}

// Accelerator returns "kvm" when KVM is usable, else "tcg". With Accel
// "auto" it boots kernel under KVM and waits at most 3 s for it to get
// through its boot, because on nested hosts /dev/kvm exists but guests hang.
func (b *Backend) Accelerator(ctx context.Context, kernel string) (string, error) {
	accel := b.Accel
	if accel == "" {
		accel = os.Getenv("MACHINETOP_ACCEL")
	}
	switch accel {
	case "kvm", "tcg":
		return accel, nil
	case "", "auto":
	default:
		return "", fmt.Errorf("unknown accelerator %q: use auto, kvm or tcg", accel)
	}
	bin, err := b.binary()
	if err != nil {
		return "", err
	}
	return probeAccel(ctx, bin, kernel, b.ProbeCacheDir), nil
}

func (b *Backend) machineArgs(accel string) []string {
	if runtime.GOARCH == "arm64" {
		cpu := "max"
		if accel == "kvm" {
			cpu = "host"
		}
		return []string{"-machine", "virt,gic-version=max", "-cpu", cpu}
	}
	// -cpu max under TCG gives the guest modern instructions; under KVM we
	// keep QEMU's default model, since host/max abort on some nested hosts.
	if accel == "tcg" {
		return []string{"-machine", "q35", "-cpu", "max"}
	}
	return []string{"-machine", "q35"}
}

func consoleDevice() string {
	if runtime.GOARCH == "arm64" {
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
// the given accelerator. It is exported for the benchmark and tests. A
// bad Backend.Net is left out here (QEMU's default subnet is used); Start
// reports it.
func (b *Backend) Args(spec *driver.Spec, accel string) []string {
	subnet, _ := b.subnet()
	memMiB := spec.MemoryBytes >> 20
	args := []string{
		"-name", "machinetop-" + spec.Name,
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-accel", accelOpt(accel),
	}
	args = append(args, b.machineArgs(accel)...)
	args = append(args,
		"-smp", strconv.Itoa(spec.CPUs),
		"-m", fmt.Sprintf("%dM", memMiB),
		"-kernel", spec.Kernel,
		"-initrd", spec.Initramfs,
		"-append", "console="+consoleDevice()+" "+spec.Cmdline,
		"-chardev", "file,id=console,append=on,path="+spec.ConsoleLog,
		"-serial", "chardev:console",
		"-netdev", netdev(spec, subnet),
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

// subnet returns the user network's subnet (Backend.Net, else
// $MACHINETOP_QEMU_NET) in CIDR form, "" for QEMU's default, or an error
// naming the setting that is not a usable IPv4 subnet.
func (b *Backend) subnet() (string, error) {
	v, from := b.Net, "the QEMU backend's Net"
	if v == "" {
		v, from = os.Getenv(NetEnv), "$"+NetEnv
	}
	if v == "" {
		return "", nil
	}
	p, err := netip.ParsePrefix(v)
	if err != nil || !p.Addr().Is4() {
		return "", fmt.Errorf("%s=%q is not an IPv4 subnet in CIDR form (e.g. 10.0.2.0/24)", from, v)
	}
	if p.Bits() > 28 {
		return "", fmt.Errorf("%s=%q is too small: the user network needs at least a /28 (the guest is its .15)", from, v)
	}
	return p.Masked().String(), nil
}

// netdev is QEMU user-mode networking on subnet (QEMU's default when ""),
// with the SSH port forwarded from the host's loopback interface only.
func netdev(spec *driver.Spec, subnet string) string {
	n := "user,id=net0"
	if subnet != "" {
		n += ",net=" + subnet
	}
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
	bin, err := b.binary()
	if err != nil {
		return nil, err
	}
	accel, err := b.Accelerator(ctx, spec.Kernel)
	if err != nil {
		return nil, err
	}
	if _, err := b.subnet(); err != nil {
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
