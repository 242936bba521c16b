// Package vm is machinetop's machine store and its verbs, the part both
// front ends call (as Lima's pkg/store and pkg/instance): a machine's
// configuration (Config) and validation, the machines of a data directory
// (Manager: Create, Load, Resolve, List, Get, Set, Delete, the default
// machine), and the lifecycle verbs Start, Stop, Restart and Agent, which
// take a loaded machine and talk to its supervisor process over the
// control socket (vm/control). The supervisor itself is vm/supervisor, the
// hypervisor contract vm/driver, file names vm/layout.
package vm

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/docker/go-units"
)

// MaxNameLen is the longest machine name, in bytes (as Apple's container
// machine: 64 minus a 7-character suffix).
const MaxNameLen = 57

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// ValidateName returns nil when name is a valid machine name: lowercase
// letters, digits and hyphens, starting and ending with a letter or digit, at
// most MaxNameLen bytes. Otherwise it returns an error naming the problem.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("machine name is empty")
	case len(name) > MaxNameLen:
		return fmt.Errorf("machine name %q is %d characters long; the limit is %d", name, len(name), MaxNameLen)
	case !nameRE.MatchString(name):
		return fmt.Errorf("invalid machine name %q: use lowercase letters, digits and hyphens, starting and ending with a letter or digit", name)
	}
	return nil
}

// DefaultName derives a machine name from an image reference the way Apple's
// tool does: the last path element of the repository, a hyphen, the tag
// (`debian:bookworm` → `debian-bookworm`, `example.com/a/b` → `b-latest`).
// Characters not allowed in names become hyphens; the result is cut to
// MaxNameLen.
func DefaultName(imageRef string) string {
	ref := imageRef
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	tag := "latest"
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref, tag = ref[:i], ref[i+1:]
	}
	if i := strings.LastIndex(ref, "/"); i >= 0 {
		ref = ref[i+1:]
	}
	s := strings.ToLower(ref + "-" + tag)
	var b strings.Builder
	for _, r := range s {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-")
	if len(out) > MaxNameLen {
		out = strings.TrimRight(out[:MaxNameLen], "-")
	}
	return out
}

// Size units in bytes.
const (
	KiB uint64 = 1 << 10
	MiB uint64 = 1 << 20
	GiB uint64 = 1 << 30
	TiB uint64 = 1 << 40
)

// ParseSize parses a size such as "8G", "512M", "1.5GiB", "64gb" or "1024"
// (bytes) into bytes, as Docker's --memory flag takes them (docker/go-units
// RAMInBytes: K, M, G, T and P are binary, with or without "i" and "B",
// case-insensitively). It returns an error naming the input when it cannot
// parse it or the value is zero.
func ParseSize(s string) (uint64, error) {
	v, err := units.RAMInBytes(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: use a number with an optional unit, e.g. 512M, 8G, 64G", s)
	}
	if v <= 0 {
		return 0, fmt.Errorf("invalid size %q: must be greater than zero", s)
	}
	return uint64(v), nil
}

// ParseMemory parses a memory size like ParseSize, but refuses values
// under 1 MiB with a hint, since "4096" there is almost always meant as
// MiB, not bytes.
func ParseMemory(s string) (uint64, error) {
	b, err := ParseSize(s)
	if err != nil {
		return 0, err
	}
	if b < MiB {
		return 0, fmt.Errorf("%q is %d bytes; add a unit, e.g. %sM or %sG", s, b, strings.TrimSpace(s), strings.TrimSpace(s))
	}
	return b, nil
}

// FormatSize renders bytes the way `machine ls` shows them: 16G, 1.5G, 75M,
// 512K, 0B (one decimal below 10, binary units).
func FormatSize(b uint64) string {
	units := []struct {
		s string
		v uint64
	}{{"T", TiB}, {"G", GiB}, {"M", MiB}, {"K", KiB}}
	for _, u := range units {
		if b >= u.v {
			f := float64(b) / float64(u.v)
			if f < 10 && b%u.v != 0 {
				return strings.TrimSuffix(strconv.FormatFloat(f, 'f', 1, 64), ".0") + u.s
			}
			return strconv.FormatUint(uint64(f), 10) + u.s
		}
	}
	return strconv.FormatUint(b, 10) + "B"
}

// Config is a machine's persistent configuration, stored as config.json in
// its directory. Changes made with `machine set` take effect at next boot.
type Config struct {
	// ID is a random 12-hex-digit identifier, fixed at create; it names
	// the machine's runtime directory (sockets).
	ID   string `json:"id"`
	Name string `json:"name"`
	// Image is the reference the machine was created from (name:tag) and
	// ImageDigest the manifest digest it resolved to then.
	Image       string `json:"image"`
	ImageDigest string `json:"imageDigest"`
	// Arch is the guest architecture as a GOARCH name (ArchAMD64,
	// ArchARM64), fixed at create; "" in machines made before it existed,
	// which have the host's (see GuestArch).
	Arch string `json:"arch,omitempty"`
	// CPUs is the number of virtual CPUs; MemoryBytes the guest RAM in
	// bytes (a whole number of MiB); DiskBytes the root disk's capacity in
	// bytes.
	CPUs        int       `json:"cpus"`
	MemoryBytes uint64    `json:"memory"`
	DiskBytes   uint64    `json:"diskSize"`
	Created     time.Time `json:"createdDate"`
	// Kernel selects the guest kernel: empty for the default (the
	// distribution's cloud kernel), or a path to a kernel .deb or vmlinuz.
	Kernel string `json:"kernel,omitempty"`
	// Populated is set once the guest has unpacked the image onto the root
	// disk; until then the flattened image is attached at boot.
	Populated bool `json:"populated"`
	// User is the host user recorded at create time.
	User UserSetup `json:"userSetup"`
	// HomeMount shares the host user's home directory at the same path:
	// HomeMountRW, HomeMountRO, or HomeMountNone (also meant by "", for
	// machines made before it existed).
	HomeMount string `json:"homeMount,omitempty"`
	// Mounts are further host directories shared with the machine.
	Mounts []Mount `json:"mounts,omitempty"`
	// Publish are the ports published with `--publish`, forwarded from
	// the host while the machine runs.
	Publish []PortMapping `json:"publish,omitempty"`
	// PortForwarding is PortForwardingOff to forward no guest port
	// automatically; PortForwardingOn or "" forwards every listening
	// TCP port to the host's loopback (see AutoForward).
	PortForwarding string `json:"portForwarding,omitempty"`
	// Network is the machine's address on the machine network, allocated
	// at create (or, for a machine made before the network existed, at
	// its first boot on it: EnsureNetwork) and kept for its life.
	Network *NetIdentity `json:"network,omitempty"`
	// MemoryReclaim is the guest's idle page-cache reclaim policy:
	// "off", "gradual" or "aggressive" (package guest/reclaim); Load
	// fills in "gradual" for machines made before it existed. Unlike the
	// other settings, a change applies to a running machine at once.
	MemoryReclaim string `json:"memoryReclaim"`
	// FileEvents is FileEventsOff to stop host changes in shared
	// directories from reaching inotify watchers in the machine (see
	// vm/supervisor/fswatch and guest/fsreplay); FileEventsOn or "" (the
	// default) bridges them.
	FileEvents string `json:"fileEvents,omitempty"`
}

// Values of Config.FileEvents (`machine set NAME file-events=on|off`).
const (
	FileEventsOn  = "on"
	FileEventsOff = "off"
)

// FileEventsEnabled reports whether host file events reach the machine.
func (c *Config) FileEventsEnabled() bool { return c.FileEvents != FileEventsOff }

// UserSetup is the host user mapped into the machine.
type UserSetup struct {
	Username string `json:"username"`
	UID      int    `json:"uid"`
	GID      int    `json:"gid"`
	// Shell is the host user's login shell (passwd(5)); the machine
	// falls back to /bin/sh when its image lacks it.
	Shell string `json:"shell,omitempty"`
	// HomeDir is the host user's home directory ($HOME at create time).
	HomeDir string `json:"homeDir,omitempty"`
}

// GuestHome is the user's home directory inside the machine: /root for
// root, else /home/<user>.
func (u UserSetup) GuestHome() string {
	if u.UID == 0 {
		return "/root"
	}
	return "/home/" + u.Username
}
