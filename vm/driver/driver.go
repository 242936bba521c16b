// Package driver is the contract between machinetop and a hypervisor, as
// Lima's pkg/driver is: a Backend boots virtual machines from a Spec and
// says in one Features value what it can do, and an Instance is one running
// VM. vm/qemu (Linux) and vm/vz (macOS) implement it; vm/fake is an
// in-process implementation for tests. The supervisor (vm/supervisor) is
// the only user of a running Instance; nothing above this package knows
// which hypervisor runs a machine or names its options.
package driver

import (
	"context"
	"errors"
	"net"
	"os"
	"runtime"
)

// Backend starts virtual machines. A Backend is used by the supervisor
// process that owns a running machine, and by the Manager only to tell
// whether a VM outlived its supervisor (Running).
type Backend interface {
	// Name is a short name for logs and `inspect`: "qemu", "vz", "fake".
	Name() string
	// Features describes what this backend does for machines started by
	// the calling process (it may depend on privileges, e.g. virtio-fs
	// needs root on Linux).
	Features() Features
	// Accelerator reports the accelerator Start will use ("kvm", "tcg",
	// "hvf") for a guest of architecture arch (a GOARCH name, "" for the
	// host's), probing the host in bounded time if it must. kernel is the
	// guest kernel image, which a backend may boot to prove that an
	// accelerator really works. A guest of another architecture than the
	// host's is never hardware-accelerated. It returns an error for an
	// accelerator forced by configuration that cannot run arch.
	Accelerator(ctx context.Context, arch, kernel string) (string, error)
	// Start boots the VM described by spec and returns once the hypervisor
	// runs it (not when the guest is ready). The VM keeps running when ctx
	// ends; ctx bounds only the start itself.
	Start(ctx context.Context, spec *Spec) (Instance, error)
	// Running reports whether a VM started for the machine named name with
	// run directory runDir is alive without a supervisor. It is always
	// false when Features().Adopt is false.
	Running(runDir, name string) bool
	// Adopt attaches to the VM that Running found, for a supervisor that
	// replaces a killed one. It returns an error wrapping ErrUnsupported
	// when Features().Adopt is false.
	Adopt(ctx context.Context, spec *Spec) (Instance, error)
}

// ErrUnsupported is returned (wrapped) by a Backend asked for something
// its Features do not offer.
var ErrUnsupported = errors.New("not supported by this backend")

// Share filesystems (Features.ShareFS); the guest's /init mounts shares
// with the same names (see guest/proto FSVirtiofs and FS9P).
const (
	ShareVirtiofs = "virtiofs"
	Share9P       = "9p"
)

// Features is what a backend can do, as data (Lima's DriverFeatures): the
// supervisor and the Manager decide by it, never by the backend's type.
// What every backend must do is not listed: give the guest a network
// that serves DHCP (the machine network, QEMU's user network and the Virtualization
// framework's NAT do), since the guest configures its first Ethernet
// interface by DHCP and reports the lease.
type Features struct {
	// ShareFS is the filesystem host directories are shared with:
	// ShareVirtiofs or Share9P; "" when the backend cannot share.
	ShareFS string
	// Adopt is true when VMs run in a process of their own (QEMU) and so
	// can outlive a supervisor killed with SIGKILL: a new supervisor adopts
	// the running VM instead of booting another (see Running and Adopt).
	Adopt bool
	// FreePageReporting is true when pages the guest frees go back to the
	// host by themselves (virtio-balloon free page reporting).
	FreePageReporting bool
	// Balloon is true when the backend has a memory balloon device.
	Balloon bool
	// Vsock is true when the agent channel is a virtio socket (vz);
	// false for a virtio-serial port (QEMU).
	Vsock bool
	// Archs are the guest architectures the backend can run on this host,
	// as GOARCH names ("amd64", "arm64"); a machine of another
	// architecture cannot be created (see Spec.Arch).
	Archs []string
	// MachineNet is true when the backend attaches the machine to the
	// machine network (vm/netd) through Spec.Network, instead of a
	// network of its own; the supervisor then connects it.
	MachineNet bool
	// HideState is true when the backend keeps Spec.Hidden invisible to
	// the guest inside every share, enforced on the host: the process
	// serving the share cannot see them (QEMU: a mount namespace in which
	// they are covered, see vm/hostns). When it is false the supervisor
	// refuses to share a directory that contains one.
	HideState bool
}

// Spec describes one boot of a machine.
//
// Every file of a Spec is opened by the supervisor, with
// layout.OpenBeneath (no symbolic link followed, a regular file of the
// user's), because a machine may have been able to plant links in the
// directories they live in. Backends hand the open files to the
// hypervisor (QEMU inherits them by number) and never open their paths
// again; a hypervisor API that takes only a path (vz) gets f.Name(),
// checked afterwards with layout.SameFile. The supervisor closes the files
// once Start has returned: a backend that needs one for longer keeps a
// duplicate.
type Spec struct {
	Name string
	// Arch is the guest architecture as a GOARCH name ("amd64", "arm64"),
	// one of Features.Archs; "" means the host's. The kernel and the
	// initramfs must be built for it.
	Arch        string
	CPUs        int
	MemoryBytes uint64 // guest RAM, bytes, a multiple of 1 MiB
	// Kernel is the kernel image (bzImage / Image) and Initramfs the newc
	// initramfs, both opened read-only.
	Kernel    *os.File
	Initramfs *os.File
	Cmdline   string // kernel command line
	Disks     []Disk // virtio-blk disks in order
	// Console is the file the serial console (hvc0/ttyS0) is appended to,
	// opened write-only for appending.
	Console *os.File
	// RunDir is a private directory (0700) for the backend's sockets and
	// pid files; paths in it stay under the unix(7) socket path limit.
	// Every socket a backend makes there is mode 0600
	// (layout.ListenUnix).
	RunDir string
	// StateDir is the machine's persistent directory (private to the
	// machine, kept across boots). Backends keep per-machine hardware
	// identity there (vz: the machine identifier and the MAC address),
	// opened with layout.OpenBeneath. Empty means the backend falls back
	// to RunDir, which may not survive a host reboot.
	StateDir string
	// Shares are host directories to share with the guest over
	// Features.ShareFS.
	Shares []Share
	// Hidden are host directories no guest may see (machinetop's data and
	// runtime directories, layout.Data.Hidden, symbolic links resolved).
	// A backend with Features.HideState covers those that lie inside a
	// share; the supervisor never gives another backend a share that
	// contains one.
	Hidden []string
	// Network, with Features.MachineNet, is the machine's connection to
	// the machine network (a unix stream socket carrying Ethernet frames,
	// each prefixed with its length as 4 bytes big endian: vm/netd), and
	// MAC the address its network interface must have, e.g.
	// "5a:94:ef:a8:7f:02", for which the network's DHCP server has the
	// machine's address.
	Network *os.File
	MAC     string
}

// GuestArch returns s.Arch, or the host's architecture (runtime.GOARCH)
// when s.Arch is empty.
func (s *Spec) GuestArch() string {
	if s.Arch != "" {
		return s.Arch
	}
	return runtime.GOARCH
}

// Share is one host directory shared with the guest for a boot.
type Share struct {
	// Tag names the device to the guest (virtio-fs tag, 9p mount_tag):
	// at most 31 bytes.
	Tag      string
	HostPath string
	ReadOnly bool
}

// Disk is a raw disk image attached as a virtio-blk device. Serial is the
// virtio-blk serial the guest finds it by (see guest/proto).
type Disk struct {
	// File is the image, opened read-write, or read-only when ReadOnly.
	File     *os.File
	Serial   string
	ReadOnly bool
}

// Instance is a VM started (or adopted) by a Backend.
type Instance interface {
	// DialAgent opens a new connection to the guest agent's channel
	// (virtio-serial on QEMU, vsock on vz). Only one connection may be open
	// at a time; a new one replaces the old.
	DialAgent(ctx context.Context) (net.Conn, error)
	// RequestStop asks the guest to power off through ACPI; it returns at
	// once.
	RequestStop(ctx context.Context) error
	// Kill stops the VM at once, as pulling the plug.
	Kill() error
	// Wait blocks until the VM has exited and returns nil for a guest
	// power-off, an error describing any other exit.
	Wait() error
	// PID is the host process running the VM (QEMU), or 0 if the VM runs
	// inside the supervisor itself (vz, fake).
	PID() int
}
