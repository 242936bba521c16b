package vm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/machinetop/machinetop/guest/reclaim"
	"github.com/machinetop/machinetop/vm/internal/atomicfile"
	"github.com/machinetop/machinetop/vm/layout"
)

// CreateOptions are the parameters of Create. Zero values take defaults.
type CreateOptions struct {
	Image       string
	Name        string // default DefaultName(Image's canonical name)
	CPUs        int    // default HostCPUs()/2, at least 1
	MemoryBytes uint64 // default half the host RAM rounded down to GiB, at least 1 GiB
	DiskBytes   uint64 // default DefaultDiskBytes
	SetDefault  bool
	Kernel      string // see Config.Kernel
	// Arch is the guest architecture, as ParseArch takes it; empty means
	// the host's. The image must be for it, and the backend must run it.
	Arch string
	// HomeMount is HomeMountRW (the default when empty), HomeMountRO or
	// HomeMountNone.
	HomeMount string
	// Mounts are `--mount` values, HOST[:GUEST][:ro] (see ParseMount).
	Mounts []string
	// Publish are `--publish` values (see ParsePublish).
	Publish []string
	// PortForwarding is PortForwardingOn (the default when empty) or
	// PortForwardingOff.
	PortForwarding string
	// Builder marks a machine that a Dockerfile build makes and deletes
	// for its RUN steps: it never becomes the default machine.
	Builder bool
}

// DefaultDiskBytes is the default root disk capacity: 64 GiB (sparse).
const DefaultDiskBytes = 64 * GiB

// MinMemoryBytes is the least guest RAM a machine may have: 256 MiB.
const MinMemoryBytes = 256 * MiB

// Create makes a new stopped machine from opts.Image: it validates
// everything first (newConfig, then that the backend runs the machine's
// architecture), resolves the image and checks that it is for that
// architecture, then builds the machine in a hidden directory
// (materialize) and renames it into place, so a failure or a crash leaves
// no machine behind, and of two concurrent creates of one name exactly one
// wins. The first machine created, or one created with SetDefault, becomes
// the default. It does not boot the machine (see Start).
func (m *Manager) Create(ctx context.Context, opts CreateOptions) (*Config, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	if m.Backend != nil {
		if err := checkBackendArch(m.Backend.Name(), m.Backend.Features().Archs, cfg.Arch); err != nil {
			return nil, err
		}
	}
	img, err := m.Images.Rootfs(ctx, opts.Image)
	if err != nil {
		return nil, err
	}
	if err := checkImagePlatform(img.Name, img.Platform, cfg.Arch); err != nil {
		return nil, err
	}
	name, tarPath := img.Name, img.Tar
	cfg.Image, cfg.ImageDigest = name, img.Digest
	if cfg.Name == "" {
		cfg.Name = DefaultName(name)
		if err := ValidateName(cfg.Name); err != nil {
			return nil, fmt.Errorf("cannot derive a machine name from %q (%v): pass -n NAME", name, err)
		}
	}
	l, err := m.lock()
	if err != nil {
		return nil, err
	}
	defer l.Unlock()
	if err := m.checkPublishFree(cfg); err != nil {
		return nil, err
	}
	if err := m.allocateNetwork(cfg); err != nil {
		return nil, err
	}
	if err := m.materialize(ctx, cfg, tarPath); err != nil {
		return nil, err
	}
	st, _ := m.readState()
	if !opts.Builder && (opts.SetDefault || st.Default == "" || !m.exists(st.Default)) {
		st.Default = cfg.Name
		if err := atomicfile.WriteJSON(m.Data.State(), st); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// newConfig validates opts and returns the configuration they describe,
// with defaults filled in and the calling user recorded; the image and
// (when opts has none) the name are left to Create.
func newConfig(opts CreateOptions) (*Config, error) {
	if opts.Image == "" {
		return nil, fmt.Errorf("no image given: machinetop machine create IMAGE")
	}
	if opts.Name != "" {
		if err := ValidateName(opts.Name); err != nil {
			return nil, err
		}
	}
	arch, err := ParseArch(opts.Arch)
	if err != nil {
		return nil, err
	}
	cfg := &Config{
		ID: newID(), Name: opts.Name, Arch: arch, CPUs: opts.CPUs, MemoryBytes: opts.MemoryBytes, DiskBytes: opts.DiskBytes,
		Kernel: opts.Kernel, Created: time.Now().UTC().Truncate(time.Second),
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = DefaultCPUs()
	}
	if cfg.MemoryBytes == 0 {
		cfg.MemoryBytes = DefaultMemory()
	}
	cfg.MemoryBytes = cfg.MemoryBytes / MiB * MiB
	if cfg.DiskBytes == 0 {
		cfg.DiskBytes = DefaultDiskBytes
	}
	if err := validateResources(cfg.CPUs, cfg.MemoryBytes, cfg.DiskBytes); err != nil {
		return nil, err
	}
	if cfg.Kernel != "" {
		abs, err := checkKernel(cfg.Kernel)
		if err != nil {
			return nil, err
		}
		cfg.Kernel = abs
	}
	u, err := currentUser()
	if err != nil {
		return nil, err
	}
	cfg.User = u
	cfg.MemoryReclaim = string(reclaim.DefaultMode)
	cfg.HomeMount = opts.HomeMount
	if cfg.HomeMount == "" {
		cfg.HomeMount = HomeMountRW
	}
	if err := ValidateHomeMount(cfg.HomeMount); err != nil {
		return nil, err
	}
	for _, spec := range opts.Mounts {
		mt, err := ParseMount(spec, u.HomeDir)
		if err != nil {
			return nil, err
		}
		cfg.Mounts = append(cfg.Mounts, mt)
	}
	if err := checkShares(cfg); err != nil {
		return nil, err
	}
	for _, spec := range opts.Publish {
		p, err := ParsePublish(spec)
		if err != nil {
			return nil, err
		}
		cfg.Publish = append(cfg.Publish, p)
	}
	if err := checkPublish(cfg); err != nil {
		return nil, err
	}
	if opts.PortForwarding != "" {
		if err := ValidatePortForwarding(opts.PortForwarding); err != nil {
			return nil, fmt.Errorf("--port-forwarding %q: use on or off", opts.PortForwarding)
		}
		cfg.PortForwarding = opts.PortForwarding
	}
	return cfg, nil
}

// checkKernel returns the absolute path of a kernel given by the user (a
// kernel .deb or a vmlinuz), or an error naming it when it is not a file.
func checkKernel(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("kernel %s: %s does not exist: give the path of a kernel .deb or vmlinuz", path, abs)
	}
	if err != nil {
		return "", fmt.Errorf("kernel %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("kernel %s is not a file: give a kernel .deb or a vmlinuz", path)
	}
	return abs, nil
}

// currentUser describes the calling host user for the machine: name, ids,
// login shell and home directory (symlinks resolved).
func currentUser() (UserSetup, error) {
	u, err := user.Current()
	if err != nil {
		return UserSetup{}, err
	}
	home, _ := os.UserHomeDir()
	if home != "" {
		if real, err := filepath.EvalSymlinks(home); err == nil {
			home = real
		}
	}
	return UserSetup{Username: u.Username, UID: os.Getuid(), GID: os.Getgid(),
		Shell: loginShell(u.Username), HomeDir: home}, nil
}

// materialize writes cfg's machine into a hidden staging directory (root
// disk, image link, config) and renames it into place; the caller holds
// the machines lock. On any error nothing is left behind.
func (m *Manager) materialize(ctx context.Context, cfg *Config, tarPath string) error {
	final := m.Dir(cfg.Name)
	if _, err := os.Lstat(final.Dir); err == nil {
		return fmt.Errorf("a machine named %s already exists: choose another name with -n, or delete it with `machinetop machine rm %s`", cfg.Name, cfg.Name)
	}
	tmp, err := os.MkdirTemp(m.Data.Machines(), layout.CreatingPrefix+cfg.Name+"-")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	staged := layout.Machine{Dir: tmp}
	if err := os.Chmod(tmp, 0o700); err != nil {
		return err
	}
	if err := makeRootDisk(staged.Disk(), cfg.DiskBytes); err != nil {
		return err
	}
	if err := linkOrCopy(tarPath, staged.ImageTar()); err != nil {
		return fmt.Errorf("attaching image %s: %w", cfg.Image, err)
	}
	if err := atomicfile.WriteJSON(staged.Config(), cfg); err != nil {
		return err
	}
	if err := os.Rename(tmp, final.Dir); err != nil {
		return fmt.Errorf("creating machine %s: %w", cfg.Name, err)
	}
	ok = true
	return nil
}

func newID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// makeRootDisk creates the root disk: a blank sparse file of size bytes,
// which takes no space until written. The guest formats it at its first
// boot (guest/proto RootSerial), so the host needs no filesystem tools.
func makeRootDisk(path string, size uint64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if err := f.Truncate(int64(size)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := out.ReadFrom(in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// loginShell returns the login shell of user name from the host's
// /etc/passwd (passwd(5)), else $SHELL, else /bin/sh.
func loginShell(name string) string {
	if b, err := os.ReadFile("/etc/passwd"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Split(line, ":")
			if len(f) >= 7 && f[0] == name && f[6] != "" {
				return f[6]
			}
		}
	}
	if s := os.Getenv("SHELL"); filepath.IsAbs(s) {
		return s
	}
	return "/bin/sh"
}
