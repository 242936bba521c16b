//go:build darwin

package vz

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	avf "github.com/Code-Hex/vz/v3"

	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/vm/driver"
	"github.com/machinetop/machinetop/vm/netd"
)

// MinMacOS is the oldest macOS the backend runs on: 13 (Ventura) is the
// first with VZGenericMachineIdentifier, which keeps a machine's identity
// across boots; everything else the backend uses (block device
// identifiers, disk caching modes, VZVirtualMachine stop) came earlier.
const MinMacOS = 13.0

// Backend runs machines with Apple's Virtualization framework inside the
// calling (supervisor) process. The VM ends when that process exits, so
// there is nothing to adopt (Features.Adopt is false). The binary must be signed with the
// com.apple.security.virtualization entitlement.
type Backend struct{}

var _ driver.Backend = (*Backend)(nil)

// Name returns "vz".
func (b *Backend) Name() string { return "vz" }

// Features returns Features().
func (b *Backend) Features() driver.Features { return Features() }

// Running reports false: a vz VM never outlives its supervisor.
func (b *Backend) Running(runDir, name string) bool { return false }

// Adopt returns an error wrapping driver.ErrUnsupported.
func (b *Backend) Adopt(ctx context.Context, spec *driver.Spec) (driver.Instance, error) {
	return nil, fmt.Errorf("vz: adopting a running VM: %w", driver.ErrUnsupported)
}

// Accelerator returns "hvf" (Hypervisor.framework, which the
// Virtualization framework runs on). It returns an error for a guest of
// another architecture than the Mac's (the framework does not emulate),
// when macOS is older than MinMacOS or the host has no hypervisor support
// (sysctl kern.hv_support, for example inside a VM without nested
// virtualization).
func (b *Backend) Accelerator(ctx context.Context, arch, kernel string) (string, error) {
	if arch != "" && arch != runtime.GOARCH {
		return "", fmt.Errorf("vz: the Virtualization framework runs only %s guests on this Mac, not %s", runtime.GOARCH, arch)
	}
	if err := checkHost(); err != nil {
		return "", err
	}
	return "hvf", nil
}

func checkHost() error {
	ver, err := syscall.Sysctl("kern.osproductversion")
	if err != nil {
		return fmt.Errorf("vz: reading the macOS version: %w", err)
	}
	if v := majorMinor(ver); v < MinMacOS {
		return fmt.Errorf("vz: macOS %s is too old: machinetop needs macOS %.0f or later", ver, MinMacOS)
	}
	if hv, err := syscall.SysctlUint32("kern.hv_support"); err != nil || hv != 1 {
		return errors.New("vz: this Mac offers no hypervisor (sysctl kern.hv_support is not 1); inside a VM, enable nested virtualization")
	}
	return nil
}

// majorMinor parses "14.6.1" as 14.6; it returns 0 when ver is malformed.
func majorMinor(ver string) float64 {
	parts := strings.SplitN(strings.TrimSpace(ver), ".", 3)
	s := parts[0]
	if len(parts) > 1 {
		s += "." + parts[1]
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0
	}
	return f
}

// Start builds the VM configuration for spec (see the package comment for
// the devices), has the framework validate it
// (-[VZVirtualMachineConfiguration validateWithError:]) and starts the VM
// (-[VZVirtualMachine startWithCompletionHandler:], which vz runs on the
// VM's dispatch queue). It returns once the VM runs. If ctx ends first,
// Start returns ctx's error and stops the VM as soon as it has started.
func (b *Backend) Start(ctx context.Context, spec *driver.Spec) (driver.Instance, error) {
	if err := checkHost(); err != nil {
		return nil, err
	}
	cfg, keep, err := configure(spec)
	if err != nil {
		return nil, err
	}
	closeKeep := func() {
		for _, f := range keep {
			f.Close()
		}
	}
	machine, err := avf.NewVirtualMachine(cfg)
	if err != nil {
		closeKeep()
		return nil, fmt.Errorf("vz: creating the virtual machine: %w", err)
	}
	if !machine.CanStart() {
		closeKeep()
		return nil, fmt.Errorf("vz: the virtual machine cannot start in state %v", machine.State())
	}
	started := make(chan error, 1)
	go func() { started <- machine.Start() }()
	select {
	case err := <-started:
		if err != nil {
			closeKeep()
			return nil, fmt.Errorf("vz: starting the virtual machine: %w", err)
		}
	case <-ctx.Done():
		go func() {
			if <-started == nil {
				machine.Stop()
			}
			closeKeep()
		}()
		return nil, ctx.Err()
	}
	// The framework has opened the paths it was given: they must still be
	// the files the supervisor opened.
	if err := checkPaths(spec); err != nil {
		machine.Stop()
		closeKeep()
		return nil, err
	}
	inst := &instance{vm: machine, memory: spec.MemoryBytes, done: make(chan struct{}), keep: keep}
	go inst.watch()
	return inst, nil
}

// configure returns the validated framework configuration for spec, and
// the files the VM keeps open while it runs (the console's), which the
// caller closes when the VM has stopped (or on error).
func configure(spec *driver.Spec) (*avf.VirtualMachineConfiguration, []*os.File, error) {
	var keep []*os.File
	cfg, err := configureKeeping(spec, &keep)
	if err != nil {
		for _, f := range keep {
			f.Close()
		}
		return nil, nil, err
	}
	return cfg, keep, nil
}

// checkPaths checks that every file of spec that the framework was given
// by path is still the file the supervisor opened (frameworkPath).
func checkPaths(spec *driver.Spec) error {
	files := []*os.File{spec.Initramfs}
	if runtime.GOARCH != "arm64" {
		files = append(files, spec.Kernel)
	}
	for _, d := range spec.Disks {
		files = append(files, d.File)
	}
	for _, f := range files {
		if _, err := frameworkPath(f); err != nil {
			return err
		}
	}
	return nil
}

func configureKeeping(spec *driver.Spec, keep *[]*os.File) (*avf.VirtualMachineConfiguration, error) {
	if err := checkSpec(spec); err != nil {
		return nil, err
	}
	minCPU, maxCPU := avf.VirtualMachineConfigurationMinimumAllowedCPUCount(), avf.VirtualMachineConfigurationMaximumAllowedCPUCount()
	if n := uint(spec.CPUs); n < minCPU || n > maxCPU {
		return nil, fmt.Errorf("vz: %d CPUs requested; this Mac allows %d to %d", spec.CPUs, minCPU, maxCPU)
	}
	minMem, maxMem := avf.VirtualMachineConfigurationMinimumAllowedMemorySize(), avf.VirtualMachineConfigurationMaximumAllowedMemorySize()
	if spec.MemoryBytes < minMem || spec.MemoryBytes > maxMem {
		return nil, fmt.Errorf("vz: %d MiB of memory requested; this Mac allows %d to %d MiB",
			spec.MemoryBytes/mib, minMem/mib, maxMem/mib)
	}

	kernel, err := linuxKernel(spec.Kernel, spec.RunDir, spec.GuestArch())
	if err != nil {
		return nil, err
	}
	initrd, err := frameworkPath(spec.Initramfs)
	if err != nil {
		return nil, err
	}
	boot, err := avf.NewLinuxBootLoader(kernel,
		avf.WithCommandLine(commandLine(spec.Cmdline)),
		avf.WithInitrd(initrd),
	)
	if err != nil {
		return nil, fmt.Errorf("vz: Linux boot loader: %w", err)
	}
	cfg, err := avf.NewVirtualMachineConfiguration(boot, uint(spec.CPUs), spec.MemoryBytes)
	if err != nil {
		return nil, fmt.Errorf("vz: VM configuration: %w", err)
	}

	platform, err := platformConfig(stateDir(spec))
	if err != nil {
		return nil, err
	}
	cfg.SetPlatformVirtualMachineConfiguration(platform)

	storage, err := storageDevices(spec.Disks)
	if err != nil {
		return nil, err
	}
	cfg.SetStorageDevicesVirtualMachineConfiguration(storage)

	nic, err := networkDevice(stateDir(spec), spec, keep)
	if err != nil {
		return nil, err
	}
	cfg.SetNetworkDevicesVirtualMachineConfiguration([]*avf.VirtioNetworkDeviceConfiguration{nic})

	console, err := consoleDevice(spec.Console, keep)
	if err != nil {
		return nil, err
	}
	cfg.SetSerialPortsVirtualMachineConfiguration([]*avf.VirtioConsoleDeviceSerialPortConfiguration{console})

	entropy, err := avf.NewVirtioEntropyDeviceConfiguration()
	if err != nil {
		return nil, fmt.Errorf("vz: entropy device: %w", err)
	}
	cfg.SetEntropyDevicesVirtualMachineConfiguration([]*avf.VirtioEntropyDeviceConfiguration{entropy})

	// The traditional balloon is attached, but machinetop never inflates
	// it (SetTargetVirtualMachineMemorySize): inflating the VZ balloon was
	// measured elsewhere to free nothing on the host, and the framework
	// has no free page reporting. The guest agent's idle reclaim (package
	// guest/reclaim) still trims the page cache, which keeps the guest from
	// touching new host memory; whether macOS takes back the pages it frees
	// is up to macOS, and `machine reclaim` reports the supervisor's
	// footprint before and after as it is.
	balloon, err := avf.NewVirtioTraditionalMemoryBalloonDeviceConfiguration()
	if err != nil {
		return nil, fmt.Errorf("vz: memory balloon: %w", err)
	}
	cfg.SetMemoryBalloonDevicesVirtualMachineConfiguration([]avf.MemoryBalloonDeviceConfiguration{balloon})

	vsock, err := avf.NewVirtioSocketDeviceConfiguration()
	if err != nil {
		return nil, fmt.Errorf("vz: socket device: %w", err)
	}
	cfg.SetSocketDevicesVirtualMachineConfiguration([]avf.SocketDeviceConfiguration{vsock})

	// One virtio-fs device per shared directory; the framework enforces
	// read-only shares on the host side.
	var shares []directoryShare
	for _, sh := range spec.Shares {
		shares = append(shares, directoryShare{Tag: sh.Tag, Path: sh.HostPath, ReadOnly: sh.ReadOnly})
	}
	fsDevs, err := directorySharingDevices(shares)
	if err != nil {
		return nil, err
	}
	if len(fsDevs) > 0 {
		cfg.SetDirectorySharingDevicesVirtualMachineConfiguration(fsDevs)
	}

	if ok, err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("vz: the framework rejected the VM configuration: %w", err)
	} else if !ok {
		return nil, errors.New("vz: the framework rejected the VM configuration")
	}
	return cfg, nil
}

// platformConfig returns a generic platform whose machine identifier is
// read from dir/MachineIDFile, or created and saved there on first boot,
// so that the guest sees the same machine on every boot.
func platformConfig(dir string) (*avf.GenericPlatformConfiguration, error) {
	path := filepath.Join(dir, MachineIDFile)
	data, err := loadOrCreate(dir, MachineIDFile, func() ([]byte, error) {
		id, err := avf.NewGenericMachineIdentifier()
		if err != nil {
			return nil, err
		}
		return id.DataRepresentation(), nil
	})
	if err != nil {
		return nil, fmt.Errorf("vz: machine identifier: %w", err)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("vz: machine identifier %s is empty: delete it to make a new one", path)
	}
	id, err := avf.NewGenericMachineIdentifierWithData(data)
	if err != nil {
		return nil, fmt.Errorf("vz: machine identifier %s: %w", path, err)
	}
	p, err := avf.NewGenericPlatformConfiguration(avf.WithGenericMachineIdentifier(id))
	if err != nil {
		return nil, fmt.Errorf("vz: platform configuration: %w", err)
	}
	return p, nil
}

// storageDevices attaches each disk as a virtio-blk device whose block
// device identifier is the disk's serial. The framework opens disk images
// by path (frameworkPath; VZDiskBlockDeviceStorageDeviceAttachment takes a
// descriptor, but only of a block device). Disk images use the host's page
// cache with fsync on guest flushes (VZDiskImageCachingModeCached,
// VZDiskImageSynchronizationModeFsync): the framework's automatic
// (uncached) mode has corrupted guest filesystems, and fsync makes a guest
// flush durable for the guest's journal.
func storageDevices(disks []driver.Disk) ([]avf.StorageDeviceConfiguration, error) {
	var devs []avf.StorageDeviceConfiguration
	for _, d := range disks {
		path, err := frameworkPath(d.File)
		if err != nil {
			return nil, err
		}
		att, err := avf.NewDiskImageStorageDeviceAttachmentWithCacheAndSync(path, d.ReadOnly,
			avf.DiskImageCachingModeCached, avf.DiskImageSynchronizationModeFsync)
		if err != nil {
			return nil, fmt.Errorf("vz: disk %s: %w", path, err)
		}
		blk, err := avf.NewVirtioBlockDeviceConfiguration(att)
		if err != nil {
			return nil, fmt.Errorf("vz: disk %s: %w", path, err)
		}
		if err := blk.SetBlockDeviceIdentifier(d.Serial); err != nil {
			return nil, fmt.Errorf("vz: disk %s: serial %q: %w", path, d.Serial, err)
		}
		devs = append(devs, blk)
	}
	return devs, nil
}

// networkDevice returns a virtio-net device on the machine network when
// the spec has a connection to it (see machineNetwork), else on the
// framework's NAT (VZNATNetworkDeviceAttachment); the guest gets its
// address by DHCP either way. Its MAC address is spec.MAC on the machine
// network, else the machine's own (macAddress).
func networkDevice(dir string, spec *driver.Spec, keep *[]*os.File) (*avf.VirtioNetworkDeviceConfiguration, error) {
	var att avf.NetworkDeviceAttachment
	var hw net.HardwareAddr
	if spec.Network != nil {
		var err error
		if hw, err = net.ParseMAC(spec.MAC); err != nil {
			return nil, fmt.Errorf("vz: MAC address %q: %w", spec.MAC, err)
		}
		a, err := machineNetwork(spec.Network, keep)
		if err != nil {
			return nil, err
		}
		att = a
	} else {
		var err error
		if hw, err = macAddress(dir, spec.Name); err != nil {
			return nil, err
		}
		nat, err := avf.NewNATNetworkDeviceAttachment()
		if err != nil {
			return nil, fmt.Errorf("vz: NAT network: %w", err)
		}
		att = nat
	}
	nic, err := avf.NewVirtioNetworkDeviceConfiguration(att)
	if err != nil {
		return nil, fmt.Errorf("vz: network device: %w", err)
	}
	mac, err := avf.NewMACAddress(hw)
	if err != nil {
		return nil, fmt.Errorf("vz: MAC address %s: %w", hw, err)
	}
	nic.SetMACAddress(mac)
	return nic, nil
}

// machineNetwork attaches the VM to the machine network as vfkit does: the
// framework's file-handle attachment takes one end of a datagram
// socketpair (one Ethernet frame per datagram), and RelayDatagrams copies
// the frames between the other end and network, the connection to the
// machine network (duplicated, since the supervisor closes the spec's
// files after Start). The socketpair's buffers are made large (1 MiB to
// send, 4 MiB to receive, vfkit's figures) so bursts are not dropped.
// The files go to keep: closing them when the VM has stopped ends the
// relay.
func machineNetwork(network *os.File, keep *[]*os.File) (avf.NetworkDeviceAttachment, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_DGRAM, 0)
	if err != nil {
		return nil, fmt.Errorf("vz: machine network socketpair: %w", err)
	}
	for _, fd := range fds {
		syscall.CloseOnExec(fd)
		syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, 1<<20)
		syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<20)
	}
	vmEnd := os.NewFile(uintptr(fds[0]), "machine network (VM)")
	syscall.SetNonblock(fds[1], true)
	relayEnd := os.NewFile(uintptr(fds[1]), "machine network (relay)")
	*keep = append(*keep, vmEnd, relayEnd)
	nfd, err := syscall.Dup(int(network.Fd()))
	if err != nil {
		return nil, fmt.Errorf("vz: machine network: %w", err)
	}
	syscall.CloseOnExec(nfd)
	syscall.SetNonblock(nfd, true)
	stream := os.NewFile(uintptr(nfd), "machine network")
	*keep = append(*keep, stream)
	att, err := avf.NewFileHandleNetworkDeviceAttachment(vmEnd)
	if err != nil {
		return nil, fmt.Errorf("vz: machine network attachment: %w", err)
	}
	go netd.RelayDatagrams(relayEnd, stream)
	return att, nil
}

// consoleDevice returns a virtio console port (the guest's hvc0) writing
// to log, the console log the supervisor opened for appending, through a
// duplicate of it that the VM keeps (added to keep); the guest reads
// nothing from it (/dev/null).
func consoleDevice(log *os.File, keep *[]*os.File) (*avf.VirtioConsoleDeviceSerialPortConfiguration, error) {
	fd, err := syscall.Dup(int(log.Fd()))
	if err != nil {
		return nil, fmt.Errorf("vz: console log %s: %w", log.Name(), err)
	}
	syscall.CloseOnExec(fd)
	w := os.NewFile(uintptr(fd), log.Name())
	*keep = append(*keep, w)
	r, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("vz: console input: %w", err)
	}
	*keep = append(*keep, r)
	att, err := avf.NewFileHandleSerialPortAttachment(r, w)
	if err != nil {
		return nil, fmt.Errorf("vz: console log %s: %w", log.Name(), err)
	}
	port, err := avf.NewVirtioConsoleDeviceSerialPortConfiguration(att)
	if err != nil {
		return nil, fmt.Errorf("vz: console: %w", err)
	}
	return port, nil
}

// directoryShare is one host directory shared with the guest over
// virtio-fs; the guest mounts it with `mount -t virtiofs TAG DIR`.
type directoryShare struct {
	Tag      string
	Path     string
	ReadOnly bool
}

// directorySharingDevices returns one virtio-fs device
// (VZVirtioFileSystemDeviceConfiguration with a VZSingleDirectoryShare) per
// share.
func directorySharingDevices(shares []directoryShare) ([]avf.DirectorySharingDeviceConfiguration, error) {
	var devs []avf.DirectorySharingDeviceConfiguration
	for _, s := range shares {
		dir, err := avf.NewSharedDirectory(s.Path, s.ReadOnly)
		if err != nil {
			return nil, fmt.Errorf("vz: shared directory %s: %w", s.Path, err)
		}
		single, err := avf.NewSingleDirectoryShare(dir)
		if err != nil {
			return nil, fmt.Errorf("vz: shared directory %s: %w", s.Path, err)
		}
		dev, err := avf.NewVirtioFileSystemDeviceConfiguration(s.Tag)
		if err != nil {
			return nil, fmt.Errorf("vz: virtio-fs tag %q: %w", s.Tag, err)
		}
		dev.SetDirectoryShare(single)
		devs = append(devs, dev)
	}
	return devs, nil
}

// instance is a running VZVirtualMachine.
type instance struct {
	vm     *avf.VirtualMachine
	memory uint64 // configured guest memory, bytes

	done chan struct{} // closed when the VM has stopped
	err  error         // why; set before done closes

	keep []*os.File // files the VM uses, closed when it has stopped

	mu     sync.Mutex
	killed bool
	conn   net.Conn // the open agent connection
}

// watch follows the VM's state changes (VZVirtualMachine.state, observed
// by vz) until the VM stops, then records why and closes done.
func (i *instance) watch() {
	err := errors.New("vz: state notifications ended while the virtual machine ran")
loop:
	for st := range i.vm.StateChangedNotify() {
		switch st {
		case avf.VirtualMachineStateStopped:
			err = nil
			i.mu.Lock()
			if i.killed {
				err = errors.New("vz: the virtual machine was stopped by force")
			}
			i.mu.Unlock()
			break loop
		case avf.VirtualMachineStateError:
			err = errors.New("vz: the virtual machine stopped with an internal error (see the console log)")
			break loop
		}
	}
	i.mu.Lock()
	if i.conn != nil {
		i.conn.Close()
		i.conn = nil
	}
	i.mu.Unlock()
	for _, f := range i.keep {
		f.Close()
	}
	i.err = err
	close(i.done)
}

// PID returns 0: the VM runs inside the calling process.
func (i *instance) PID() int { return 0 }

// DialAgent connects to the guest agent on vsock port proto.VsockPort
// (-[VZVirtioSocketDevice connectToPort:completionHandler:]) and closes
// the previous connection, if any. It fails while the VM is not running
// or the guest does not listen yet.
func (i *instance) DialAgent(ctx context.Context) (net.Conn, error) {
	if st := i.vm.State(); st != avf.VirtualMachineStateRunning {
		return nil, fmt.Errorf("vz: the virtual machine is not running (%v)", st)
	}
	devs := i.vm.SocketDevices()
	if len(devs) == 0 {
		return nil, errors.New("vz: the virtual machine has no socket device")
	}
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := devs[0].Connect(proto.VsockPort)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		ch <- result{c, nil}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("vz: connecting to the agent on vsock port %d: %w", proto.VsockPort, r.err)
		}
		i.mu.Lock()
		old := i.conn
		i.conn = r.conn
		i.mu.Unlock()
		if old != nil {
			old.Close()
		}
		return r.conn, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// RequestStop asks the guest to power off
// (-[VZVirtualMachine requestStopWithError:], which the guest sees as an
// ACPI-like power button press) and returns at once.
func (i *instance) RequestStop(ctx context.Context) error {
	if !i.vm.CanRequestStop() {
		return fmt.Errorf("vz: cannot ask the guest to stop in state %v", i.vm.State())
	}
	ok, err := i.vm.RequestStop()
	if err != nil {
		return fmt.Errorf("vz: asking the guest to stop: %w", err)
	}
	if !ok {
		return errors.New("vz: the framework refused to ask the guest to stop")
	}
	return nil
}

// Kill stops the VM at once (-[VZVirtualMachine stopWithCompletionHandler:]),
// without the guest's involvement. It returns nil if the VM has already
// stopped.
func (i *instance) Kill() error {
	select {
	case <-i.done:
		return nil
	default:
	}
	if !i.vm.CanStop() {
		return nil
	}
	i.mu.Lock()
	i.killed = true
	i.mu.Unlock()
	if err := i.vm.Stop(); err != nil {
		return fmt.Errorf("vz: stopping the virtual machine: %w", err)
	}
	return nil
}

// Wait blocks until the VM has stopped. It returns nil when the guest
// powered off, an error after Kill or when the framework stopped the VM
// with an error.
func (i *instance) Wait() error {
	<-i.done
	return i.err
}
