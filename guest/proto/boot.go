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
//	/tools/bin/mke2fs      e2fsprogs' programs for the guest architecture,
//	/tools/bin/e2fsck      dynamically linked, from the Debian archive
//	/tools/lib/*           the shared libraries they need, by soname
//	                       (run them with LD_LIBRARY_PATH=/tools/lib)
//	<interpreter>          the dynamic loader, at the path the programs'
//	                       PT_INTERP names (/lib64/ld-linux-x86-64.so.2,
//	                       /lib/ld-linux-aarch64.so.1)
//	/etc/mke2fs.conf       e2fsprogs' mke2fs.conf(5)
//	/etc/e2fsck.conf       e2fsck.conf(5) with broken_system_clock set: the
//	                       guest clock is not trusted before the agent sets it
//	/dev/console, /dev/null  device nodes: /init may start before its
//	                       console's driver is loaded, without stdin, stdout
//	                       and stderr, and the Go runtime then opens /dev/null
//	                       for them
//
// Disks are virtio-blk devices told apart by their serial
// (/sys/block/vdX/serial).
const (
	ModulesDir   = "/modules"
	ModulesOrder = "/modules/order"
	ModulesVer   = "/modules/version"

	// ToolsLib holds the tools' shared libraries; Mke2fs, E2fsck and
	// Resize2fs (which grows the root filesystem after `machine set
	// disk=`) are the tools; Mke2fsConfig and E2fsckConfig their configuration files
	// (the paths they read by default, and MKE2FS_CONFIG, E2FSCK_CONFIG).
	ToolsLib     = "/tools/lib"
	Mke2fs       = "/tools/bin/mke2fs"
	E2fsck       = "/tools/bin/e2fsck"
	Resize2fs    = "/tools/bin/resize2fs"
	Mke2fsConfig = "/etc/mke2fs.conf"
	E2fsckConfig = "/etc/e2fsck.conf"

	// RootSerial marks the machine's persistent root disk: a raw sparse
	// file, blank when the machine is created. /init formats it as ext4
	// (label RootLabel) at the first boot, when it is blank and the image
	// disk is attached, and runs e2fsck -p on it before every mount.
	RootSerial = "mt-root"
	// RootLabel is the root filesystem's label.
	RootLabel = "machinetop"
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
// The network needs none: /init configures the first Ethernet interface
// by DHCP on every backend.
const (
	// ParamHostname=NAME sets the guest hostname (the machine name).
	ParamHostname = "machinetop.hostname"
	// ParamDebug=1 makes /init log verbosely to the console.
	ParamDebug = "machinetop.debug"
)

// ConfigSerial marks a small read-only disk holding the machine's
// GuestConfig as JSON, padded with zero bytes to whole 512-byte sectors.
// The host writes it fresh for every boot; /init reads it before it hands
// PID 1 to the image's init. A disk works on every backend and is not
// bound by the kernel command line's length limit (2048 bytes on x86).
const ConfigSerial = "mt-config"

// MaxConfigBytes is the largest config disk /init reads (1 MiB).
const MaxConfigBytes = 1 << 20

// Filesystem types of a GuestMount, as mount(8) names them.
const (
	FSVirtiofs = "virtiofs"
	FS9P       = "9p"
)

// Files /init writes on the root filesystem for the agent and the host.
const (
	// UserMarker exists once first-boot user setup has run; it holds the
	// user name it ran for.
	UserMarker = "/.machinetop/user-setup-done"
	// SetupReport holds a JSON SetupReport about the latest boot.
	SetupReportFile = "/.machinetop/setup-report.json"
	// LeaseFile holds the guest's current DHCP lease (JSON, package
	// guest/dhcp): /init writes it when it configured the network, the
	// agent rewrites it at every renewal and reports it (OpNetwork).
	LeaseFile = "/.machinetop/dhcp-lease.json"
	// UserSetupScript is the path at which an image may provide its own
	// user setup, run once at first boot instead of the built-in one, as
	// root, by /bin/sh, with the environment variables MACHINETOP_USER,
	// MACHINETOP_UID, MACHINETOP_GID, MACHINETOP_HOME and MACHINETOP_SHELL.
	// A non-zero exit is reported by `machinetop machine inspect`.
	UserSetupScript = "/etc/machinetop/create-user.sh"
	// AuthorizedKeysDir holds one authorized_keys file (sshd(8) format) per
	// user, named after the user; /init rewrites it at every boot, and
	// SSHDConfig points sshd at it (AuthorizedKeysFile in sshd_config(5)),
	// so machinetop never writes into a home directory that may be the
	// host's own.
	AuthorizedKeysDir = "/etc/machinetop/authorized_keys"
	// SSHDConfig is the sshd_config(5) drop-in /init writes when the image
	// has /etc/ssh/sshd_config.d.
	SSHDConfig = "/etc/ssh/sshd_config.d/machinetop.conf"
)

// GuestConfig is what the host tells /init about a boot.
type GuestConfig struct {
	// User is the host user mapped into the machine; nil when the host
	// user is root (root exists in every image).
	User *GuestUser `json:"user,omitempty"`
	// Mounts are the host directories shared with the machine, mounted
	// by /init before the image's init starts, parents first.
	Mounts []GuestMount `json:"mounts,omitempty"`
	// AuthorizedKeys are public keys in authorized_keys format (sshd(8))
	// that may log in over SSH as User (as root when User is nil).
	AuthorizedKeys []string `json:"authorizedKeys,omitempty"`
}

// GuestUser is an account to create in the machine (see passwd(5)).
type GuestUser struct {
	Name string `json:"name"`
	UID  int    `json:"uid"`
	GID  int    `json:"gid"`
	// Home is the home directory to create, /home/<name>.
	Home string `json:"home"`
	// Shell is the host user's login shell; /bin/sh is used when the
	// image lacks it.
	Shell string `json:"shell"`
}

// GuestMount is one shared directory.
type GuestMount struct {
	// Tag is the virtio-fs tag or 9p mount_tag of the device (at most
	// 31 bytes).
	Tag string `json:"tag"`
	// Path is the absolute mount point in the guest.
	Path string `json:"path"`
	// FSType is FSVirtiofs or FS9P.
	FSType   string `json:"fstype"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// DiskCheck is what /init did to the root disk before mounting it at
// the latest boot: format it when blank (first boot), then e2fsck -p
// (e2fsck(8): replay the journal, fix what is safe), then, only when that
// left errors, e2fsck -fy. A check that leaves errors stops the boot, so
// a report the agent returns is DiskClean or DiskFixed.
type DiskCheck struct {
	// Formatted is true when the disk was blank and /init made the
	// filesystem at this boot.
	Formatted bool `json:"formatted,omitempty"`
	// Result is DiskClean, DiskFixed or DiskFailed.
	Result string `json:"result"`
	// ExitCode is e2fsck -p's exit status: 0 no errors, 1 errors
	// corrected, 2 corrected (reboot wanted), 4 errors left uncorrected,
	// 8 operational error (e2fsck(8), "EXIT CODE").
	ExitCode int `json:"exitCode"`
	// RepairExitCode is e2fsck -fy's exit status when -p left errors
	// (ExitCode&4 != 0), else 0.
	RepairExitCode int `json:"repairExitCode,omitempty"`
	// JournalRecovered is true when e2fsck replayed the journal: the
	// filesystem was not unmounted cleanly (the VM was killed or lost
	// power).
	JournalRecovered bool `json:"journalRecovered,omitempty"`
	// Output is the end of e2fsck's output (at most MaxCheckOutput bytes).
	Output string `json:"output,omitempty"`
	// Millis is how long the format and the checks took, milliseconds.
	Millis int64 `json:"millis"`
}

// Results of a DiskCheck.
const (
	DiskClean  = "clean"
	DiskFixed  = "fixed"
	DiskFailed = "failed"
)

// MaxCheckOutput bounds DiskCheck.Output, bytes.
const MaxCheckOutput = 4096

// SetupReport is what /init found while preparing the latest boot; the
// agent returns it in Info.
type SetupReport struct {
	// Disk is the root disk's check at this boot.
	Disk *DiskCheck `json:"disk,omitempty"`
	// User is the mapped user name, "" when the host user is root.
	User string `json:"user,omitempty"`
	// Script is UserSetupScript when the image's own script created the
	// user, "" for the built-in setup.
	Script string `json:"script,omitempty"`
	// Problems are messages for the user about setup steps that failed
	// (a mount, the user, the SSH key); the boot went on without them.
	Problems []string `json:"problems,omitempty"`
}
