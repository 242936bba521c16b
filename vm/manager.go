package vm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gofrs/flock"
	"github.com/shirou/gopsutil/v4/mem"
)

// ImageSource resolves image references for Create. The CLI adapts the
// local OCI store (package images) to it.
type ImageSource interface {
	// Rootfs resolves ref (name:tag or digest prefix) and returns the
	// image's canonical name:tag, its manifest digest ("sha256:…") and the
	// path of its flattened root filesystem as an uncompressed tar. It
	// returns an error naming ref when the image is unknown.
	Rootfs(ctx context.Context, ref string) (name, digest, tarPath string, err error)
}

// Manager creates, starts, stops and deletes machines stored under
// DataDir/machines. It is safe for use by several processes at once: every
// change takes a file lock and state files are written atomically.
type Manager struct {
	// DataDir is the data directory (see DataDir()).
	DataDir string
	// Backend boots machines; it is used by the supervisor process, and by
	// the Manager only to tell whether a VM outlived its supervisor.
	Backend Backend
	// Images resolves image references at create time.
	Images ImageSource
	// Executable is the machinetop binary the supervisor runs as; empty
	// means os.Executable().
	Executable string
}

// Machine states as `machine ls` shows them.
const (
	StateStopped  = "stopped"
	StateStarting = "starting"
	StateRunning  = "running"
	StateStopping = "stopping"
)

// Machine is a machine's configuration joined with its live state.
type Machine struct {
	Config
	State string `json:"status"`
	// Default is true for the default machine.
	Default bool `json:"default"`
	// IP is the guest's first IPv4 address while running, else "".
	IP string `json:"ipAddress,omitempty"`
	// DiskAllocated is the root disk file's allocated size, bytes (it is
	// sparse, so this is less than DiskBytes).
	DiskAllocated uint64 `json:"diskAllocated"`
	// Started is when the current boot began; zero when stopped.
	Started time.Time `json:"startedDate,omitzero"`
	// Accelerator is "kvm" or "tcg" (QEMU) while running.
	Accelerator string `json:"accelerator,omitempty"`
	// KernelRelease is the guest kernel's release (uname -r) while
	// running, e.g. "6.1.0-57-cloud-amd64".
	KernelRelease string `json:"kernelRelease,omitempty"`
	// Dir is the machine's directory on the host.
	Dir string `json:"dir"`
	// VMPID is the host PID of the VM process (QEMU) while running, else 0
	// (also 0 on vz, where the VM runs inside the supervisor).
	VMPID int `json:"vmPid,omitempty"`
	// SupervisorPID is the host PID of the machine's supervisor while it
	// runs, else 0.
	SupervisorPID int `json:"supervisorPid,omitempty"`
	// SSHPort is the port on the host's 127.0.0.1 forwarded to the
	// machine's SSH port while it runs (see `machine ssh-config`), else 0.
	SSHPort int `json:"sshPort,omitempty"`
	// ActiveMounts are the directories the running boot shares; changes
	// made with Set show in Mounts and HomeMount until the next boot.
	ActiveMounts []ActiveMount `json:"activeMounts,omitempty"`
	// Guest is what the agent last reported about the image (sudo, an
	// SSH server, setup problems); nil before the first boot.
	Guest *GuestFacts `json:"guest,omitempty"`
	// Notes are messages for the user about missing host integration,
	// e.g. an image without sudo or without an SSH server.
	Notes []string `json:"notes,omitempty"`
}

// CreateOptions are the parameters of Create. Zero values take defaults.
type CreateOptions struct {
	Image       string
	Name        string // default DefaultName(Image's canonical name)
	CPUs        int    // default HostCPUs()/2, at least 1
	MemoryBytes uint64 // default half the host RAM rounded down to GiB, at least 1 GiB
	DiskBytes   uint64 // default DefaultDiskBytes
	SetDefault  bool
	Kernel      string // see Config.Kernel
	// HomeMount is HomeMountRW (the default when empty), HomeMountRO or
	// HomeMountNone.
	HomeMount string
	// Mounts are `--mount` values, HOST[:GUEST][:ro] (see ParseMount).
	Mounts []string
	// Builder marks a machine that a Dockerfile build makes and deletes
	// for its RUN steps: it never becomes the default machine.
	Builder bool
}

// DefaultDiskBytes is the default root disk capacity: 64 GiB (sparse).
const DefaultDiskBytes = 64 * GiB

// MinMemoryBytes is the least guest RAM a machine may have: 256 MiB.
const MinMemoryBytes = 256 * MiB

// ErrNotFound is returned (wrapped, naming the machine) for an unknown
// machine name.
var ErrNotFound = errors.New("no such machine")

func (m *Manager) machinesDir() string        { return filepath.Join(m.DataDir, "machines") }
func (m *Manager) machineDir(n string) string { return filepath.Join(m.machinesDir(), n) }
func (m *Manager) statePath() string          { return filepath.Join(m.DataDir, "state.json") }

// Files in a machine's directory.
const (
	configFile     = "config.json"
	diskFile       = "disk.img"
	imageTarFile   = "image.tar"
	consoleLogFile = "console.log"
	superLogFile   = "supervisor.log"
	superLockFile  = "supervisor.lock"
)

// lock takes the global machines lock (create, delete, default changes).
func (m *Manager) lock() (*flock.Flock, error) {
	if err := os.MkdirAll(m.machinesDir(), 0o700); err != nil {
		return nil, err
	}
	l := flock.New(filepath.Join(m.machinesDir(), ".lock"))
	if err := l.Lock(); err != nil {
		return nil, fmt.Errorf("locking %s: %w", m.machinesDir(), err)
	}
	// Whoever made these held this lock and died before finishing.
	if stale, _ := filepath.Glob(filepath.Join(m.machinesDir(), ".create-*")); len(stale) > 0 {
		for _, d := range stale {
			os.RemoveAll(d)
		}
	}
	if stale, _ := filepath.Glob(filepath.Join(m.machinesDir(), ".delete-*")); len(stale) > 0 {
		for _, d := range stale {
			os.RemoveAll(d)
		}
	}
	return l, nil
}

// HostCPUs is the number of host CPUs.
func HostCPUs() int { return runtime.NumCPU() }

// HostMemory is the host's total RAM in bytes.
func HostMemory() (uint64, error) {
	v, err := mem.VirtualMemory()
	if err != nil {
		return 0, err
	}
	return v.Total, nil
}

// DefaultCPUs is half the host's CPUs, at least 1.
func DefaultCPUs() int { return max(HostCPUs()/2, 1) }

// DefaultMemory is half the host RAM rounded down to a whole GiB, at least
// 1 GiB.
func DefaultMemory() uint64 {
	total, err := HostMemory()
	if err != nil {
		return GiB
	}
	return max(total/2/GiB*GiB, GiB)
}

// ValidateCPUs returns nil when n virtual CPUs fit this host (1 to
// HostCPUs()), else an error naming n and the range; create and set word it
// alike.
func ValidateCPUs(n int) error {
	if n < 1 || n > HostCPUs() {
		return fmt.Errorf("cpus %d is out of range: use 1 to %d (this host has %d CPUs)", n, HostCPUs(), HostCPUs())
	}
	return nil
}

func validateResources(cpus int, memory, disk uint64) error {
	if err := ValidateCPUs(cpus); err != nil {
		return err
	}
	total, err := HostMemory()
	if err == nil && memory > total {
		return fmt.Errorf("--memory %s is more than this host's RAM (%s)", FormatSize(memory), FormatSize(total))
	}
	if memory < MinMemoryBytes {
		return fmt.Errorf("--memory %s is too small: at least %s", FormatSize(memory), FormatSize(MinMemoryBytes))
	}
	if disk < GiB {
		return fmt.Errorf("--disk %s is too small: at least 1G", FormatSize(disk))
	}
	return nil
}

func newID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Create makes a new stopped machine from opts.Image: it validates
// everything first, then builds the machine in a hidden directory (config,
// a sparse ext4 root disk made with mkfs.ext4, a hard link to the image's
// flattened tar) and renames it into place, so a failure or a crash leaves
// no machine behind, and of two concurrent creates of one name exactly one
// wins. The first machine created, or one created with SetDefault, becomes
// the default. It does not boot the machine (see Start).
func (m *Manager) Create(ctx context.Context, opts CreateOptions) (*Config, error) {
	if opts.Image == "" {
		return nil, fmt.Errorf("no image given: machinetop machine create IMAGE")
	}
	if opts.Name != "" {
		if err := ValidateName(opts.Name); err != nil {
			return nil, err
		}
	}
	cfg := &Config{
		ID: newID(), CPUs: opts.CPUs, MemoryBytes: opts.MemoryBytes, DiskBytes: opts.DiskBytes,
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
		abs, err := kernelPath(cfg.Kernel)
		if err != nil {
			return nil, fmt.Errorf("--kernel %s: %w", cfg.Kernel, err)
		}
		cfg.Kernel = abs
	}
	u, err := user.Current()
	if err != nil {
		return nil, err
	}
	home, _ := os.UserHomeDir()
	if home != "" {
		if real, err := filepath.EvalSymlinks(home); err == nil {
			home = real
		}
	}
	cfg.User = UserSetup{Username: u.Username, UID: os.Getuid(), GID: os.Getgid(),
		Shell: loginShell(u.Username), HomeDir: home}
	cfg.HomeMount = opts.HomeMount
	if cfg.HomeMount == "" {
		cfg.HomeMount = HomeMountRW
	}
	if err := ValidateHomeMount(cfg.HomeMount); err != nil {
		return nil, err
	}
	for _, spec := range opts.Mounts {
		mt, err := ParseMount(spec, home)
		if err != nil {
			return nil, err
		}
		cfg.Mounts = append(cfg.Mounts, mt)
	}
	if err := checkShares(cfg); err != nil {
		return nil, err
	}

	name, digest, tarPath, err := m.Images.Rootfs(ctx, opts.Image)
	if err != nil {
		return nil, err
	}
	cfg.Image, cfg.ImageDigest = name, digest
	cfg.Name = opts.Name
	if cfg.Name == "" {
		cfg.Name = DefaultName(name)
		if err := ValidateName(cfg.Name); err != nil {
			return nil, fmt.Errorf("cannot derive a machine name from %q (%v): pass -n NAME", name, err)
		}
	}
	if err := mkfsAvailable(); err != nil {
		return nil, err
	}

	l, err := m.lock()
	if err != nil {
		return nil, err
	}
	defer l.Unlock()
	final := m.machineDir(cfg.Name)
	if _, err := os.Lstat(final); err == nil {
		return nil, fmt.Errorf("a machine named %s already exists: choose another name with -n, or delete it with `machinetop machine rm %s`", cfg.Name, cfg.Name)
	}
	tmp, err := os.MkdirTemp(m.machinesDir(), ".create-"+cfg.Name+"-")
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o700); err != nil {
		return nil, err
	}
	if err := makeRootDisk(ctx, filepath.Join(tmp, diskFile), cfg.DiskBytes); err != nil {
		return nil, err
	}
	if err := linkOrCopy(tarPath, filepath.Join(tmp, imageTarFile)); err != nil {
		return nil, fmt.Errorf("attaching image %s: %w", name, err)
	}
	if err := writeJSONAtomic(filepath.Join(tmp, configFile), cfg); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, fmt.Errorf("creating machine %s: %w", cfg.Name, err)
	}
	ok = true
	st, _ := m.readState()
	if !opts.Builder && (opts.SetDefault || st.Default == "" || !m.exists(st.Default)) {
		st.Default = cfg.Name
		if err := writeJSONAtomic(m.statePath(), st); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// kernelPath makes a kernel file path absolute (it is stored and used
// from the supervisor, which runs in /) and checks that it is a file.
func kernelPath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%s does not exist: give the path of a kernel .deb or vmlinuz", abs)
	}
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a file: give a kernel .deb or vmlinuz", abs)
	}
	return abs, nil
}

func mkfsAvailable() error {
	for _, t := range []string{"mkfs.ext4", "e2fsck"} {
		if _, err := lookTool(t); err != nil {
			return fmt.Errorf("%s not found: install e2fsprogs (Debian/Ubuntu: sudo apt-get install e2fsprogs)", t)
		}
	}
	return nil
}

// lookTool finds a tool in PATH or in the sbin directories a non-root PATH
// often lacks.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// makeRootDisk creates a sparse file of size bytes formatted as ext4. Inode
// tables are left for lazy initialisation so the file stays small (a few
// MiB) and mkfs takes milliseconds.
func makeRootDisk(ctx context.Context, path string, size uint64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if err := f.Truncate(int64(size)); err != nil {
		f.Close()
		return err
	}
	f.Close()
	mkfs, _ := lookTool("mkfs.ext4")
	out, err := exec.CommandContext(ctx, mkfs, "-q", "-F", "-L", "machinetop",
		"-E", "lazy_itable_init=1,lazy_journal_init=1", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mkfs.ext4 failed: %v: %s", err, out)
	}
	return nil
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

type managerState struct {
	Default string `json:"default,omitempty"`
}

func (m *Manager) readState() (managerState, error) {
	var s managerState
	err := readJSON(m.statePath(), &s)
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	return s, err
}

func (m *Manager) exists(name string) bool {
	_, err := os.Stat(filepath.Join(m.machineDir(name), configFile))
	return err == nil
}

// Default returns the default machine's name, or "" when there is none.
func (m *Manager) Default() (string, error) {
	s, err := m.readState()
	if err != nil {
		return "", err
	}
	if s.Default != "" && !m.exists(s.Default) {
		return "", nil
	}
	return s.Default, nil
}

// SetDefault makes name the default machine. It returns an error wrapping
// ErrNotFound for an unknown machine.
func (m *Manager) SetDefault(name string) error {
	if _, err := m.Config(name); err != nil {
		return err
	}
	l, err := m.lock()
	if err != nil {
		return err
	}
	defer l.Unlock()
	s, _ := m.readState()
	s.Default = name
	return writeJSONAtomic(m.statePath(), s)
}

// Resolve returns name, or the default machine's name when name is empty.
// It returns an error telling the user what to do when there is no default
// or the machine does not exist.
func (m *Manager) Resolve(name string) (string, error) {
	if name == "" {
		d, err := m.Default()
		if err != nil {
			return "", err
		}
		if d == "" {
			return "", fmt.Errorf("no machine given and no default machine: pass -n NAME, or create one with `machinetop machine create IMAGE`")
		}
		return d, nil
	}
	if err := ValidateName(name); err != nil {
		return "", err
	}
	if !m.exists(name) {
		return "", fmt.Errorf("%w %q: see `machinetop machine ls`", ErrNotFound, name)
	}
	return name, nil
}

// Config reads a machine's configuration.
func (m *Manager) Config(name string) (*Config, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	var c Config
	if err := readJSON(filepath.Join(m.machineDir(name), configFile), &c); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w %q: see `machinetop machine ls`", ErrNotFound, name)
		}
		return nil, err
	}
	return &c, nil
}

// Names lists the machines' names, sorted.
func (m *Manager) Names() ([]string, error) {
	ents, err := os.ReadDir(m.machinesDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() && ValidateName(e.Name()) == nil && m.exists(e.Name()) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// List returns every machine with its live state.
func (m *Manager) List(ctx context.Context) ([]Machine, error) {
	names, err := m.Names()
	if err != nil {
		return nil, err
	}
	out := make([]Machine, 0, len(names))
	for _, n := range names {
		mc, err := m.Get(ctx, n)
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *mc)
	}
	return out, nil
}

// Get returns one machine with its live state.
func (m *Manager) Get(ctx context.Context, name string) (*Machine, error) {
	cfg, err := m.Config(name)
	if err != nil {
		return nil, err
	}
	mc := &Machine{Config: *cfg, State: StateStopped, Dir: m.machineDir(name)}
	def, _ := m.Default()
	mc.Default = def == name
	if fi, err := os.Stat(filepath.Join(mc.Dir, diskFile)); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			mc.DiskAllocated = uint64(st.Blocks) * 512
		}
	}
	st, err := m.status(ctx, cfg)
	if err == nil {
		mc.State = st.State
		mc.IP = st.IP
		mc.Started = st.Started
		mc.Accelerator = st.Accelerator
		mc.KernelRelease = st.Kernel
		mc.VMPID, mc.SupervisorPID = st.VMPID, st.PID
		mc.SSHPort, mc.ActiveMounts, mc.Guest = st.SSHPort, st.Mounts, st.Guest
	} else if m.orphanRunning(cfg) {
		mc.State = StateRunning
	}
	if mc.Guest == nil {
		var g GuestFacts
		if readJSON(filepath.Join(mc.Dir, guestFile), &g) == nil {
			mc.Guest = &g
		}
	}
	mc.Notes = notes(mc)
	return mc, nil
}

// Set changes configuration keys, applied at the next boot: cpus=N,
// memory=SIZE, kernel=PATH, home-mount=rw|ro|none, and mounts=LIST (comma
// separated `--mount` values replacing the machine's mounts; empty for
// none). It returns an error naming an unknown key or a bad value and
// changes nothing in that case.
func (m *Manager) Set(name string, kv map[string]string) error {
	cfg, err := m.Config(name)
	if err != nil {
		return err
	}
	for k, v := range kv {
		switch k {
		case "cpus":
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("cpus=%s: not a whole number", v)
			}
			cfg.CPUs = n
		case "memory":
			b, err := ParseMemory(v)
			if err != nil {
				return fmt.Errorf("memory=%s: %v", v, err)
			}
			cfg.MemoryBytes = b / MiB * MiB
		case "kernel":
			if v != "" {
				abs, err := kernelPath(v)
				if err != nil {
					return fmt.Errorf("kernel=%s: %w", v, err)
				}
				v = abs
			}
			cfg.Kernel = v
		case "home-mount":
			if err := ValidateHomeMount(v); err != nil {
				return fmt.Errorf("home-mount=%s: use rw, ro or none", v)
			}
			cfg.HomeMount = v
		case "mounts":
			cfg.Mounts = nil
			for _, spec := range strings.Split(v, ",") {
				if spec == "" {
					continue
				}
				mt, err := ParseMount(spec, cfg.User.HomeDir)
				if err != nil {
					return err
				}
				cfg.Mounts = append(cfg.Mounts, mt)
			}
		default:
			return fmt.Errorf("unknown setting %q: machine set takes cpus=N, memory=SIZE, kernel=PATH, home-mount=rw|ro|none, mounts=HOST[:GUEST][:ro],...", k)
		}
	}
	if err := validateResources(cfg.CPUs, cfg.MemoryBytes, cfg.DiskBytes); err != nil {
		return err
	}
	if err := checkShares(cfg); err != nil {
		return err
	}
	return writeJSONAtomic(filepath.Join(m.machineDir(name), configFile), cfg)
}

// Delete stops the machine if it runs, then removes its directory (disk
// included). If it was the default machine the default is cleared; the
// returned bool reports that.
func (m *Manager) Delete(ctx context.Context, name string) (wasDefault bool, err error) {
	if _, err := m.Config(name); err != nil {
		return false, err
	}
	if err := m.Stop(ctx, name, DefaultStopTimeout); err != nil {
		return false, fmt.Errorf("stopping %s before delete: %w", name, err)
	}
	l, err := m.lock()
	if err != nil {
		return false, err
	}
	defer l.Unlock()
	// Rename first so a crash mid-removal leaves no half machine visible.
	trash, err := os.MkdirTemp(m.machinesDir(), ".delete-")
	if err != nil {
		return false, err
	}
	if err := os.Rename(m.machineDir(name), filepath.Join(trash, name)); err != nil {
		os.Remove(trash)
		return false, err
	}
	if err := os.RemoveAll(trash); err != nil {
		return false, err
	}
	s, _ := m.readState()
	if s.Default == name {
		s.Default = ""
		wasDefault = true
		if err := writeJSONAtomic(m.statePath(), s); err != nil {
			return wasDefault, err
		}
	}
	return wasDefault, nil
}

// ConsoleLog returns the path of the machine's serial console log.
func (m *Manager) ConsoleLog(name string) string {
	return filepath.Join(m.machineDir(name), consoleLogFile)
}

// SupervisorLog returns the path of the machine's supervisor log (boot
// steps, QEMU messages, errors).
func (m *Manager) SupervisorLog(name string) string {
	return filepath.Join(m.machineDir(name), superLogFile)
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

// MachinesUsingImage returns the names of the machines created from the
// image with manifest digest digest (e.g. "sha256:…") or from reference
// ref (name:tag), sorted; ref may be "".
func (m *Manager) MachinesUsingImage(digest, ref string) ([]string, error) {
	names, err := m.Names()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		cfg, err := m.Config(n)
		if err != nil {
			continue // deleted meanwhile
		}
		if cfg.ImageDigest == digest || (ref != "" && cfg.Image == ref) {
			out = append(out, n)
		}
	}
	return out, nil
}
