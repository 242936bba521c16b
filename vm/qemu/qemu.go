//go:build linux

// Package qemu is the Linux backend: it runs each machine in its own
// qemu-system process with direct kernel boot, virtio-blk disks, the
// machine network (vm/netd) or QEMU's user-mode network, a virtio-serial
// agent channel, virtio-balloon with free page reporting, virtio-rng, the serial console in a log file and QMP on a unix
// socket (QEMU's docs: system/invocation, interop/qmp-spec). Guests are
// x86_64 (qemu-system-x86_64, the q35 board) or arm64
// (qemu-system-aarch64, the virt board); one of another architecture than
// the host's runs under TCG.
package qemu

import (
	"bufio"
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
	"github.com/google/renameio/v2"
	"golang.org/x/sys/unix"

	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/vm/driver"
	"github.com/machinetop/machinetop/vm/hostns"
	"github.com/machinetop/machinetop/vm/layout"
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
	// Net selects the guest's network: "machine" for the machine network
	// (vm/netd, through Spec.Network: Features.MachineNet), "user" for
	// QEMU's user-mode network on its default subnet 10.0.2.0/24, or an
	// IPv4 subnet for the user-mode network, e.g. "10.0.9.0/24", whose
	// DHCP server gives the guest the 16th address (.15) with the gateway
	// at .2 and DNS at .3 (QEMU's -netdev user,net=); the prefix must
	// leave room for those addresses (/28 or shorter). Empty means
	// $MACHINETOP_QEMU_NET, else "machine".
	Net string
}

var _ driver.Backend = (*Backend)(nil)

// NetEnv is the environment variable that sets Backend.Net.
const NetEnv = "MACHINETOP_QEMU_NET"

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

// Features describes the QEMU backend: shares over ShareFS() with
// machinetop's own directories hidden inside them, VMs that outlive their supervisor, free
// page reporting and a balloon, virtio-serial for the agent, and as Archs the host's architecture plus
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
		HideState:         true,
		MachineNet:        b.machineNet(),
		Adopt:             true,
		FreePageReporting: true,
		Balloon:           true,
		Archs:             archs,
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
		return "", fmt.Errorf("%s not found, which runs %s machines: install QEMU with your package manager (%s), or run `make deps`", name, arch, qemuPackages(name))
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

// launch collects a QEMU command line and the open files it names by
// number: files[i] is descriptor 3+i in QEMU (exec.Cmd.ExtraFiles).
type launch struct {
	args  []string
	files []*os.File
	sets  int // fd sets used so far (-add-fd)
	// owned are files launch opened or made itself, closed by release.
	owned []*os.File
}

// release closes the files launch made; QEMU keeps its own copies.
func (l *launch) release() {
	for _, f := range l.owned {
		f.Close()
	}
}

// fd passes f to QEMU and returns its descriptor number there.
func (l *launch) fd(f *os.File) int {
	l.files = append(l.files, f)
	return 2 + len(l.files)
}

// fdset puts files in a new fd set (-add-fd) and returns the path QEMU
// opens them by: QEMU picks the descriptor whose access mode matches the
// open it makes (QEMU's docs: system/invocation, -add-fd).
func (l *launch) fdset(files ...*os.File) string {
	l.sets++
	for _, f := range files {
		l.args = append(l.args, "-add-fd", fmt.Sprintf("fd=%d,set=%d", l.fd(f), l.sets))
	}
	return fmt.Sprintf("/dev/fdset/%d", l.sets)
}

// listen makes the unix socket name in runDir (mode 0600) and returns a
// descriptor of it for QEMU, which serves it; the socket file stays for
// the supervisor (and a later one) to connect to.
func (l *launch) listen(runDir, name string) (int, error) {
	ln, err := layout.ListenUnix(filepath.Join(runDir, name))
	if err != nil {
		return 0, err
	}
	ln.SetUnlinkOnClose(false)
	f, err := ln.File()
	ln.Close()
	if err != nil {
		return 0, err
	}
	l.owned = append(l.owned, f)
	return l.fd(f), nil
}

// Command returns the QEMU process for spec under accelerator accel, not
// started, and a function that closes the caller's copies of what it
// made (call it once the process has started, or instead of starting it).
// QEMU opens nothing of machinetop's by path: spec's files, the agent and
// QMP sockets (made here in spec.RunDir, mode 0600, served by QEMU from the
// inherited descriptors) and, through Start, the virtio-fs daemons'
// connections are passed to it as descriptors, so QEMU runs unchanged in a
// namespace where machinetop's directories are hidden (see Start). A spec
// with virtio-fs shares needs Start, which runs the daemons.
func (b *Backend) Command(spec *driver.Spec, accel string) (*exec.Cmd, func(), error) {
	if len(spec.Shares) > 0 && b.ShareFS() == driver.ShareVirtiofs {
		return nil, nil, fmt.Errorf("qemu: a spec with virtio-fs shares is started only by Start")
	}
	return b.command(spec, accel, nil)
}

// checkFiles refuses a spec whose files are not open.
func checkFiles(spec *driver.Spec) error {
	if spec.Kernel == nil || spec.Initramfs == nil || spec.Console == nil {
		return fmt.Errorf("qemu: the spec of %s has no kernel, initramfs or console file", spec.Name)
	}
	for i, d := range spec.Disks {
		if d.File == nil {
			return fmt.Errorf("qemu: disk %d of %s is not open", i, spec.Name)
		}
	}
	return nil
}

// command is Command with the virtio-fs daemons' connections, one per
// share (nil for 9p).
func (b *Backend) command(spec *driver.Spec, accel string, fsConns []*os.File) (*exec.Cmd, func(), error) {
	bin, err := b.binary(spec.GuestArch())
	if err != nil {
		return nil, nil, err
	}
	if err := checkFiles(spec); err != nil {
		return nil, nil, err
	}
	// A bad Backend.Net is left out here (QEMU's default subnet is used);
	// Start reports it.
	subnet, _ := b.subnet()
	l := &launch{}
	fail := func(err error) (*exec.Cmd, func(), error) {
		l.release()
		return nil, nil, err
	}
	agentFD, err := l.listen(spec.RunDir, agentSock)
	if err != nil {
		return fail(err)
	}
	qmpFD, err := l.listen(spec.RunDir, qmpSock)
	if err != nil {
		return fail(err)
	}
	memMiB := spec.MemoryBytes >> 20
	l.args = append(l.args,
		"-name", "machinetop-"+spec.Name,
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-accel", accelOpt(accel),
	)
	arch := spec.GuestArch()
	l.args = append(l.args, machineArgs(arch, accel)...)
	console := l.fdset(spec.Console)
	l.args = append(l.args,
		"-smp", strconv.Itoa(spec.CPUs),
		"-m", fmt.Sprintf("%dM", memMiB),
		// QEMU reads the kernel and initramfs with fopen(3), which knows
		// no fd sets: /proc/self/fd/N reopens the very file passed.
		"-kernel", fmt.Sprintf("/proc/self/fd/%d", l.fd(spec.Kernel)),
		"-initrd", fmt.Sprintf("/proc/self/fd/%d", l.fd(spec.Initramfs)),
		"-append", "console="+consoleDevice(arch)+" "+spec.Cmdline,
		"-chardev", "file,id=console,append=on,path="+console,
		"-serial", "chardev:console",
	)
	if spec.Network != nil {
		// A stream socket's frames carry a 4-byte big-endian length:
		// the machine network's framing (vm/netd).
		l.args = append(l.args,
			"-netdev", fmt.Sprintf("socket,id=net0,fd=%d", l.fd(spec.Network)),
			"-device", "virtio-net-pci,netdev=net0,romfile=,mac="+spec.MAC)
	} else {
		l.args = append(l.args,
			"-netdev", netdev(subnet),
			// romfile= drops the iPXE option ROM: we boot the kernel directly and
			// the ROM costs about a second under TCG.
			"-device", "virtio-net-pci,netdev=net0,romfile=")
	}
	l.args = append(l.args,
		"-device", "virtio-serial-pci,id=vser",
		"-chardev", fmt.Sprintf("socket,id=agent,fd=%d,server=on,wait=off", agentFD),
		"-device", "virtserialport,chardev=agent,name="+proto.PortName,
		"-device", "virtio-balloon-pci,id=balloon,free-page-reporting=on",
		"-object", "rng-random,id=rng,filename=/dev/urandom",
		"-device", "virtio-rng-pci,rng=rng",
		"-chardev", fmt.Sprintf("socket,id=qmp,fd=%d,server=on,wait=off", qmpFD),
		"-mon", "chardev=qmp,mode=control",
		"-monitor", "none",
	)
	l.args = append(l.args, shareArgs(spec, b.ShareFS(), fsConns, l)...)
	for i, d := range spec.Disks {
		files := []*os.File{d.File}
		if !d.ReadOnly {
			// QEMU opens a writable image read-only first and reopens it
			// read-write when the device takes it: the set needs both.
			ro, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", d.File.Fd()), os.O_RDONLY, 0)
			if err != nil {
				return fail(fmt.Errorf("qemu: disk %s: %w", d.File.Name(), err))
			}
			l.owned = append(l.owned, ro)
			files = append(files, ro)
		}
		drive := fmt.Sprintf("file=%s,if=none,id=disk%d,format=raw,discard=unmap,detect-zeroes=unmap", l.fdset(files...), i)
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		l.args = append(l.args, "-drive", drive,
			"-device", fmt.Sprintf("virtio-blk-pci,drive=disk%d,serial=%s", i, d.Serial))
	}
	cmd := exec.Command(bin, l.args...)
	cmd.ExtraFiles = l.files
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stdout = os.Stderr // QEMU's own messages go to the supervisor log
	cmd.Stderr = os.Stderr
	return cmd, l.release, nil
}

// netSetting returns Backend.Net, else $MACHINETOP_QEMU_NET, and where
// it came from.
func (b *Backend) netSetting() (v, from string) {
	if b.Net != "" {
		return b.Net, "the QEMU backend's Net"
	}
	return os.Getenv(NetEnv), "$" + NetEnv
}

// machineNet reports whether guests join the machine network (Net is
// "machine" or unset).
func (b *Backend) machineNet() bool {
	v, _ := b.netSetting()
	return v == "" || v == "machine"
}

// subnet returns the user network's subnet (Backend.Net, else
// $MACHINETOP_QEMU_NET) in CIDR form, "" for QEMU's default (and for the
// machine network), or an error naming the setting that is neither a
// network's name nor a usable IPv4 subnet.
func (b *Backend) subnet() (string, error) {
	v, from := b.netSetting()
	if v == "" || v == "machine" || v == "user" {
		return "", nil
	}
	p, err := netip.ParsePrefix(v)
	if err != nil || !p.Addr().Is4() {
		return "", fmt.Errorf("%s=%q is neither \"machine\", \"user\" nor an IPv4 subnet in CIDR form (e.g. 10.0.2.0/24)", from, v)
	}
	if p.Bits() > 28 {
		return "", fmt.Errorf("%s=%q is too small: the user network needs at least a /28 (the guest is its .15)", from, v)
	}
	return p.Masked().String(), nil
}

// netdev is QEMU user-mode networking on subnet (QEMU's default when "").
// It forwards no port: SSH and the guest's ports reach the host through
// the agent channel (vm/portfwd).
func netdev(subnet string) string {
	n := "user,id=net0"
	if subnet != "" {
		n += ",net=" + subnet
	}
	return n
}

// DefaultTBSizeMiB caps TCG's translation cache (QEMU's -accel
// tcg,tb-size=, MiB). QEMU's own default reserves 1 GiB for it, and an
// idle guest's translated code fills a few hundred MiB of host memory that
// the guest never uses; a full cache is flushed and translation starts
// over, which costs nothing measurable at this size (tests/bench-memory.sh
// prints both figures).
const DefaultTBSizeMiB = 128

// tbSizeMiB is the translation cache cap: $MACHINETOP_TCG_TB_SIZE (MiB; 0
// means QEMU's default), else DefaultTBSizeMiB.
func tbSizeMiB() int {
	if v := os.Getenv("MACHINETOP_TCG_TB_SIZE"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			return n
		}
	}
	return DefaultTBSizeMiB
}

func accelOpt(accel string) string {
	if accel == "tcg" {
		// One host thread per vCPU; the default on x86 hosts anyway.
		opt := "tcg,thread=multi"
		if n := tbSizeMiB(); n > 0 {
			opt += ",tb-size=" + strconv.Itoa(n)
		}
		return opt
	}
	return accel
}

// Start launches QEMU for spec in its own session, so that signals to the
// caller's terminal or process group do not reach it, and returns once QMP
// answers (at most 10 s). When QEMU serves 9p shares that contain
// spec.Hidden directories, it runs in a mount namespace where they are
// covered (vm/hostns); virtio-fs daemons always do.
func (b *Backend) Start(ctx context.Context, spec *driver.Spec) (driver.Instance, error) {
	if err := checkFiles(spec); err != nil {
		return nil, err
	}
	accel, err := b.Accelerator(ctx, spec.GuestArch(), spec.Kernel.Name())
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
	var fsConns []*os.File
	plan := hostns.Plan{}
	if len(spec.Shares) > 0 {
		if b.ShareFS() == driver.ShareVirtiofs {
			if daemons, fsConns, err = startVirtiofsd(spec); err != nil {
				return nil, err
			}
		} else if plan, err = hostns.PlanFor(hostShares(spec.Shares, false), spec.Hidden); err != nil {
			return nil, err
		}
	}
	killDaemons := func() {
		for _, p := range daemons {
			p.Kill()
		}
	}
	defer func() {
		for _, f := range fsConns {
			f.Close()
		}
	}()
	cmd, release, err := b.command(spec, accel, fsConns)
	if err != nil {
		killDaemons()
		return nil, err
	}
	bin := cmd.Path
	err = hostns.Start(cmd, plan)
	release()
	if err != nil {
		killDaemons()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	pid := cmd.Process.Pid
	// The pid file is the supervisor's, not QEMU's (-pidfile would have
	// QEMU open a path in the run directory).
	if err := renameio.WriteFile(filepath.Join(spec.RunDir, pidFile), []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		killDaemons()
		return nil, err
	}
	inst := &instance{runDir: spec.RunDir, pid: pid, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		if err != nil {
			inst.err = fmt.Errorf("qemu exited: %w", err)
		}
		close(inst.done)
	}()
	if err := inst.waitQMP(ctx, 10*time.Second); err != nil {
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

// waitQMP waits until QEMU greets on its QMP socket: QEMU has parsed its
// command line, opened everything and entered its main loop. The socket
// accepts connections before that (it was made for QEMU), so only the
// greeting tells.
func (i *instance) waitQMP(ctx context.Context, limit time.Duration) error {
	c, err := net.Dial("unix", filepath.Join(i.runDir, qmpSock))
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(limit))
	greeted := make(chan error, 1)
	go func() {
		_, err := bufio.NewReader(c).ReadString('\n')
		greeted <- err
	}()
	select {
	case err := <-greeted:
		if err != nil {
			select {
			case <-i.done:
				return fmt.Errorf("qemu exited during start")
			case <-time.After(time.Second):
			}
			return fmt.Errorf("qemu did not answer on %s within %v: %w", qmpSock, limit, err)
		}
		return nil
	case <-i.done:
		return fmt.Errorf("qemu exited during start")
	case <-ctx.Done():
		return ctx.Err()
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
