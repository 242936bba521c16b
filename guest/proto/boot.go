package proto

// The boot contract between the host (guest kit builder and backends) and the
// guest binary running as the initramfs /init.
//
// The initramfs (newc cpio, see the kernel's
// Documentation/driver-api/early-userspace/buffer-format.rst) holds:
//
//	/init                  the static guest binary
//	/modules/*.ko          kernel modules, uncompressed
//	/modules/order         module file names, one a line, in load order
//	                       (dependencies first, computed from each module's
//	                       .modinfo "depends=")
//	/modules/version       the kernel release the modules belong to (uname -r)
//
// Disks are virtio-blk devices told apart by their serial
// (/sys/block/vdX/serial).
const (
	ModulesDir   = "/modules"
	ModulesOrder = "/modules/order"
	ModulesVer   = "/modules/version"

	// RootSerial marks the machine's persistent root disk: a raw file
	// formatted as ext4 by the host at create time.
	RootSerial = "mt-root"
	// ImageSerial marks a read-only disk holding the image's flattened
	// root filesystem as an uncompressed tar stream (POSIX/PAX, xattrs as
	// SCHILY.xattr.* records). It is attached until the guest has
	// populated the root disk from it.
	ImageSerial = "mt-image"

	// PopulatedMarker is created on the root filesystem once the image has
	// been unpacked onto it; its absence makes /init unpack again.
	PopulatedMarker = "/.machinetop/populated"
	// AgentInstallPath is where /init copies the guest binary on the root
	// filesystem before handing PID 1 to the image's init.
	AgentInstallPath = "/.machinetop/agent"
)

// Kernel command line parameters read by /init (from /proc/cmdline).
const (
	// ParamHostname=NAME sets the guest hostname (the machine name).
	ParamHostname = "machinetop.hostname"
	// ParamNet=ADDR/PREFIX,GATEWAY,DNS configures the first Ethernet
	// interface statically; QEMU user networking uses
	// 10.0.2.15/24,10.0.2.2,10.0.2.3.
	ParamNet = "machinetop.net"
	// ParamDebug=1 makes /init log verbosely to the console.
	ParamDebug = "machinetop.debug"
)
