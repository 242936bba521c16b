package vm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Home mount modes (`--home-mount`), as Apple's container machine.
const (
	HomeMountRW   = "rw"
	HomeMountRO   = "ro"
	HomeMountNone = "none"
)

// Mount is a host directory shared with a machine.
type Mount struct {
	// Host is the absolute host path of the directory (symlinks
	// resolved at the time it was given).
	Host string `json:"host"`
	// Guest is the absolute path it is mounted at in the machine.
	Guest    string `json:"guest"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// String renders m in the HOST:GUEST[:ro] form ParseMount reads.
func (m Mount) String() string {
	s := m.Host
	if m.Guest != m.Host {
		s += ":" + m.Guest
	}
	if m.ReadOnly {
		s += ":ro"
	}
	return s
}

// ValidateHomeMount returns nil for "rw", "ro" and "none".
func ValidateHomeMount(mode string) error {
	switch mode {
	case HomeMountRW, HomeMountRO, HomeMountNone:
		return nil
	}
	return fmt.Errorf("--home-mount %q: use rw, ro or none", mode)
}

// ParseMount parses a `--mount` value, HOST[:GUEST][:ro|:rw]. A leading
// "~/" in HOST is the user's home (home). HOST must be an existing
// directory; it is made absolute and its symlinks resolved. GUEST defaults
// to that path and must pass ValidateGuestPath. Errors name the value and
// what is wrong with it.
func ParseMount(spec, home string) (Mount, error) {
	parts := strings.Split(spec, ":")
	var m Mount
	if n := len(parts); n > 1 && (parts[n-1] == "ro" || parts[n-1] == "rw") {
		m.ReadOnly = parts[n-1] == "ro"
		parts = parts[:n-1]
	}
	if len(parts) == 0 || len(parts) > 2 || parts[0] == "" {
		return Mount{}, fmt.Errorf("--mount %q: use HOST[:GUEST][:ro], e.g. ~/src or ~/src:/src:ro", spec)
	}
	host := parts[0]
	if host == "~" || strings.HasPrefix(host, "~/") {
		if home == "" {
			return Mount{}, fmt.Errorf("--mount %q: no home directory to expand ~ with", spec)
		}
		host = filepath.Join(home, strings.TrimPrefix(host, "~"))
	}
	abs, err := filepath.Abs(host)
	if err != nil {
		return Mount{}, fmt.Errorf("--mount %q: %w", spec, err)
	}
	fi, err := os.Stat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return Mount{}, fmt.Errorf("--mount %q: host directory %s does not exist", spec, abs)
	}
	if err != nil {
		return Mount{}, fmt.Errorf("--mount %q: %w", spec, err)
	}
	if !fi.IsDir() {
		return Mount{}, fmt.Errorf("--mount %q: %s is not a directory (only directories can be shared)", spec, abs)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	m.Host = abs
	m.Guest = abs
	if len(parts) == 2 && parts[1] != "" {
		m.Guest = parts[1]
	}
	if err := ValidateGuestPath(m.Guest); err != nil {
		return Mount{}, fmt.Errorf("--mount %q: %w", spec, err)
	}
	return m, nil
}

// systemDirs may not be mount points in a machine: covering them would
// hide the image's own system.
var systemDirs = []string{"/bin", "/boot", "/etc", "/lib", "/lib32", "/lib64", "/libx32",
	"/sbin", "/usr", "/var", "/home", "/mnt", "/media", "/opt", "/srv", "/tmp"}

// kernelDirs hold the kernel's and the init system's own filesystems;
// nothing may be mounted in or under them.
var kernelDirs = []string{"/proc", "/sys", "/dev", "/run", "/.machinetop"}

// ValidateGuestPath returns nil when p can be a mount point in a machine:
// absolute and clean, not "/", not one of the image's top-level system
// directories (/etc, /usr, /home, ...; their subdirectories are fine), and
// not in or under /proc, /sys, /dev, /run or machinetop's own /.machinetop.
func ValidateGuestPath(p string) error {
	if !filepath.IsAbs(p) {
		return fmt.Errorf("guest path %q is relative: give an absolute path such as /src", p)
	}
	if filepath.Clean(p) != p {
		return fmt.Errorf("guest path %q is not clean: write it as %s", p, filepath.Clean(p))
	}
	if p == "/" {
		return fmt.Errorf("guest path / would hide the machine's root filesystem: choose a directory such as /src")
	}
	for _, d := range kernelDirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return fmt.Errorf("guest path %s is inside %s, which the kernel or the init system owns: choose another directory", p, d)
		}
	}
	for _, d := range systemDirs {
		if p == d {
			return fmt.Errorf("guest path %s would hide the machine's own %s: choose a directory below it or elsewhere", p, d)
		}
	}
	return nil
}

// Shares returns the directories a boot of c shares, in order: the host
// home (unless HomeMount is none or empty) at its own path, then Mounts.
func (c *Config) Shares() []Mount {
	var out []Mount
	if c.HomeMount == HomeMountRW || c.HomeMount == HomeMountRO {
		if c.User.HomeDir != "" {
			out = append(out, Mount{Host: c.User.HomeDir, Guest: c.User.HomeDir, ReadOnly: c.HomeMount == HomeMountRO})
		}
	}
	return append(out, c.Mounts...)
}

// checkShares returns an error when two shares of c use one guest path or
// the home directory to share is unusable.
func checkShares(c *Config) error {
	if c.HomeMount != "" {
		if err := ValidateHomeMount(c.HomeMount); err != nil {
			return err
		}
	}
	if c.HomeMount == HomeMountRW || c.HomeMount == HomeMountRO {
		if c.User.HomeDir == "" {
			return fmt.Errorf("no host home directory known: use --home-mount none")
		}
		if err := ValidateGuestPath(c.User.HomeDir); err != nil {
			return fmt.Errorf("cannot share the home directory %s at the same path: %v; use --home-mount none and --mount %s:/SOMEWHERE", c.User.HomeDir, err, c.User.HomeDir)
		}
		if fi, err := os.Stat(c.User.HomeDir); err != nil || !fi.IsDir() {
			return fmt.Errorf("home directory %s is not a directory: use --home-mount none", c.User.HomeDir)
		}
	}
	seen := map[string]bool{}
	for _, m := range c.Shares() {
		if seen[m.Guest] {
			return fmt.Errorf("two shared directories use the guest path %s: give one of them another GUEST path (HOST:GUEST)", m.Guest)
		}
		seen[m.Guest] = true
	}
	return nil
}

// GuestDir maps a host directory to the guest path where a share shows
// it: for the longest share whose Host contains dir. ok is false when no
// share contains dir.
func GuestDir(shares []Mount, dir string) (string, bool) {
	best, bestLen := "", -1
	for _, m := range shares {
		rel, err := filepath.Rel(m.Host, dir)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			continue
		}
		if len(m.Host) > bestLen {
			best, bestLen = filepath.Join(m.Guest, rel), len(m.Host)
		}
	}
	return best, bestLen >= 0
}
