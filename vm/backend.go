package vm

import (
	"context"
	"net"
)

// Backend starts virtual machines. One implementation exists per
// hypervisor: vm/qemu (Linux, QEMU with KVM or TCG) and vm/vz (macOS,
// Apple's Virtualization framework). A Backend is used by the supervisor
// process that owns a running machine.
type Backend interface {
	// Name is a short name for logs and `inspect`: "qemu" or "vz".
	Name() string
	// Accelerator reports the accelerator Start will use ("kvm", "tcg",
	// "hvf"), probing the host in bounded time if it must.
	// kernel is the guest kernel image, which a backend may boot to prove
	// that an accelerator really works.
	Accelerator(ctx context.Context, kernel string) (string, error)
	// Start boots the VM described by spec and returns once the hypervisor
	// runs it (not when the guest is ready). The VM keeps running when ctx
	// ends; ctx bounds only the start itself.
	Start(ctx context.Context, spec *Spec) (Instance, error)
}

// Spec describes one boot of a machine.
type Spec struct {
	Name        string
	CPUs        int
	MemoryBytes uint64 // guest RAM, bytes, a multiple of 1 MiB
	Kernel      string // path of the kernel image (bzImage / Image)
	Initramfs   string // path of the newc initramfs
	Cmdline     string // kernel command line
	Disks       []Disk // virtio-blk disks in order
	// ConsoleLog is the file the serial console (hvc0/ttyS0) is appended to.
	ConsoleLog string
	// RunDir is a private directory (0700) for the backend's sockets and
	// pid files; paths in it stay under the unix(7) socket path limit.
	RunDir string
	// StateDir is the machine's persistent directory (private to the
	// machine, kept across boots). Backends keep per-machine hardware
	// identity there (vz: the machine identifier and the MAC address).
	// Empty means the backend falls back to RunDir, which may not survive
	// a host reboot.
	StateDir string
	// Shares are host directories to share with the guest, with the
	// filesystem the backend's ShareFS chose.
	Shares []Share
	// SSHPort, when non-zero, is a TCP port on the host's 127.0.0.1 that
	// the backend forwards to the guest's port 22 (backends that
	// implement SSHForwarder).
	SSHPort int
}

// Share is one host directory shared with the guest for a boot.
type Share struct {
	// Tag names the device to the guest (virtio-fs tag, 9p mount_tag):
	// at most 31 bytes.
	Tag      string
	HostPath string
	ReadOnly bool
}

// ShareFS is implemented by backends that share host directories. ShareFS
// returns the filesystem the guest mounts shares with for a machine
// started by this process: "virtiofs" or "9p" (guest/proto FSVirtiofs,
// FS9P). A backend without it shares over virtio-fs.
type ShareFS interface {
	ShareFS() string
}

// SSHForwarder is implemented by backends that forward Spec.SSHPort on
// the host's loopback interface to the guest's SSH port.
type SSHForwarder interface {
	ForwardsSSH() bool
}

// Disk is a raw disk image attached as a virtio-blk device. Serial is the
// virtio-blk serial the guest finds it by (see guest/proto).
type Disk struct {
	Path     string
	Serial   string
	ReadOnly bool
}

// Instance is a VM started by a Backend.
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
	// SetBalloon sets the balloon target: the guest memory, bytes, the
	// guest may keep.
	SetBalloon(ctx context.Context, bytes uint64) error
	// PID is the host process running the VM (QEMU), or 0 if the VM runs
	// inside the supervisor itself (vz).
	PID() int
}
