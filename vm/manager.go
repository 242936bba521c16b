package vm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"

	"github.com/gofrs/flock"
	"github.com/shirou/gopsutil/v4/mem"

	"github.com/machinetop/machinetop/guest/reclaim"
	"github.com/machinetop/machinetop/vm/control"
	"github.com/machinetop/machinetop/vm/driver"
	"github.com/machinetop/machinetop/vm/internal/atomicfile"
	"github.com/machinetop/machinetop/vm/layout"
)

// ImageSource resolves image references for Create. Package app adapts the
// local OCI store (package images) to it.
type ImageSource interface {
	// Rootfs resolves ref (name:tag or digest prefix) and returns the
	// image with the path of its flattened root filesystem. It returns an
	// error naming ref when the image is unknown.
	Rootfs(ctx context.Context, ref string) (ImageRootfs, error)
}

// ImageRootfs is an image resolved for Create.
type ImageRootfs struct {
	// Name is the image's canonical name:tag and Digest its manifest
	// digest ("sha256:…").
	Name, Digest string
	// Tar is the path of the image's flattened root filesystem, an
	// uncompressed tar.
	Tar string
	// Platform is the platform the image's config names,
	// "os/arch[/variant]" (e.g. "linux/arm64/v8"), or "" when it names
	// none; a machine's architecture must match it.
	Platform string
}

// Manager creates, starts, stops and deletes the machines of one data
// directory. It is safe for use by several processes at once: every change
// takes a file lock and state files are written atomically. The verbs take
// a machine loaded with Load or Resolve.
type Manager struct {
	// Data is the data directory (see layout.DataDir).
	Data layout.Data
	// Backend boots machines; it is used by the supervisor process, and by
	// the Manager only to tell whether a VM outlived its supervisor.
	Backend driver.Backend
	// Images resolves image references at create time.
	Images ImageSource
	// Executable is the machinetop binary the supervisor runs as; empty
	// means os.Executable().
	Executable string
	// Spawn starts the supervisor of cfg and returns a channel that
	// receives its exit; nil means running `Executable __supervise NAME`
	// in a session of its own. Tests run supervisors in-process with it.
	Spawn func(cfg *Config) (<-chan error, error)
}

// Errors of the Manager's verbs, matchable with errors.Is. The control
// errors hold for errors that came through a supervisor's control socket.
var (
	// ErrNotFound is returned (wrapped, naming the machine) for an unknown
	// machine name.
	ErrNotFound = errors.New("no such machine")
	// ErrNotRunning: the machine is stopped (e.g. an agent call to it).
	ErrNotRunning = control.ErrNotRunning
	// ErrStartFailed: the boot failed; the error says why.
	ErrStartFailed = control.ErrStartFailed
	// ErrAgentTimeout: the guest agent did not answer in time.
	ErrAgentTimeout = control.ErrAgentTimeout
	// ErrBroken is returned (wrapped, naming the machine and the file)
	// when a machine's configuration cannot be read: List shows such a
	// machine as StateBroken, and RemoveBroken deletes it.
	ErrBroken = errors.New("machine state is unreadable")
)

// Dir returns the directory layout of the machine named name.
func (m *Manager) Dir(name string) layout.Machine { return m.Data.Machine(name) }

// ConsoleLog returns the path of the machine's serial console log.
func (m *Manager) ConsoleLog(name string) string { return m.Dir(name).ConsoleLog() }

// SupervisorLog returns the path of the machine's supervisor log (boot
// steps, VM messages, errors).
func (m *Manager) SupervisorLog(name string) string { return m.Dir(name).SupervisorLog() }

// lock takes the global machines lock (create, delete, default changes)
// and removes what a crashed create or delete left behind.
func (m *Manager) lock() (*flock.Flock, error) {
	if err := os.MkdirAll(m.Data.Machines(), 0o700); err != nil {
		return nil, err
	}
	l := flock.New(m.Data.MachinesLock(), flock.SetFlag(layout.LockFlag))
	if err := l.Lock(); err != nil {
		return nil, fmt.Errorf("locking %s: %w", m.Data.Machines(), err)
	}
	// Whoever made these held this lock and died before finishing.
	for _, prefix := range []string{layout.CreatingPrefix, layout.DeletingPrefix} {
		stale, _ := filepath.Glob(filepath.Join(m.Data.Machines(), prefix+"*"))
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
// HostCPUs()), else an error naming n and the range, worded alike for
// create and set.
func ValidateCPUs(n int) error {
	if n < 1 || n > HostCPUs() {
		return fmt.Errorf("cpus %d is out of range: use 1 to %d (this host's CPUs)", n, HostCPUs())
	}
	return nil
}

// validateResources checks a machine's CPUs, memory and disk, bytes, with
// one message per problem for create and set alike.
func validateResources(cpus int, memory, disk uint64) error {
	if err := ValidateCPUs(cpus); err != nil {
		return err
	}
	total, err := HostMemory()
	if err == nil && memory > total {
		return fmt.Errorf("memory %s is more than this host's RAM (%s)", FormatSize(memory), FormatSize(total))
	}
	if memory < MinMemoryBytes {
		return fmt.Errorf("memory %s is too small: at least %s", FormatSize(memory), FormatSize(MinMemoryBytes))
	}
	if disk < GiB {
		return fmt.Errorf("disk %s is too small: at least 1G", FormatSize(disk))
	}
	return nil
}

type managerState struct {
	Default string `json:"default,omitempty"`
}

// readState reads the data directory's state. A missing file is no
// state; so is a corrupt one (a crash cannot make one, since it is written
// atomically, but a disk error or a hand edit can): it only names the
// default machine, and the next SetDefault writes it anew.
func (m *Manager) readState() (managerState, error) {
	var s managerState
	err := atomicfile.ReadJSON(m.Data.State(), &s)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, atomicfile.ErrCorrupt) {
		return managerState{}, nil
	}
	return s, err
}

func (m *Manager) exists(name string) bool {
	_, err := os.Stat(m.Dir(name).Config())
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

// SetDefault makes cfg's machine the default.
func (m *Manager) SetDefault(cfg *Config) error {
	l, err := m.lock()
	if err != nil {
		return err
	}
	defer l.Unlock()
	if !m.exists(cfg.Name) {
		return fmt.Errorf("%w %q: see `machinetop machine ls`", ErrNotFound, cfg.Name)
	}
	s, _ := m.readState()
	s.Default = cfg.Name
	return atomicfile.WriteJSON(m.Data.State(), s)
}

// Resolve loads the machine name, or the default machine when name is
// empty. It returns an error telling the user what to do when there is no
// default, or one wrapping ErrNotFound when the machine does not exist.
func (m *Manager) Resolve(name string) (*Config, error) {
	if name == "" {
		d, err := m.Default()
		if err != nil {
			return nil, err
		}
		if d == "" {
			return nil, fmt.Errorf("no machine given and no default machine: name one, or create one with `machinetop machine create IMAGE`")
		}
		name = d
	}
	return m.Load(name)
}

// Load reads the configuration of the machine name. It returns an error
// wrapping ErrNotFound for an unknown machine, and one naming the file
// when it is corrupt.
func (m *Manager) Load(name string) (*Config, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	var c Config
	if err := atomicfile.ReadJSON(m.Dir(name).Config(), &c); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w %q: see `machinetop machine ls`", ErrNotFound, name)
		}
		return nil, fmt.Errorf("machine %s: %w: %v; delete it with `machinetop machine rm %s`", name, ErrBroken, err, name)
	}
	if c.Name != name || c.ID == "" {
		return nil, fmt.Errorf("machine %s: %w: %s names machine %q with ID %q; delete it with `machinetop machine rm %s`", name, ErrBroken, m.Dir(name).Config(), c.Name, c.ID, name)
	}
	if c.MemoryReclaim == "" {
		c.MemoryReclaim = string(reclaim.DefaultMode)
	}
	return &c, nil
}

// Update changes the stored configuration of cfg's machine with fn, under
// the machine's lock-free atomic replace (read, fn, write): the supervisor
// uses it for what a boot learns (the disk is populated). cfg is updated
// to match.
func (m *Manager) Update(cfg *Config, fn func(*Config)) error {
	cur, err := m.Load(cfg.Name)
	if err != nil {
		return err
	}
	fn(cur)
	if err := atomicfile.WriteJSON(m.Dir(cfg.Name).Config(), cur); err != nil {
		return err
	}
	*cfg = *cur
	return nil
}

// Names lists the machines' names, sorted.
func (m *Manager) Names() ([]string, error) {
	ents, err := os.ReadDir(m.Data.Machines())
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
		cfg, err := m.Load(n)
		if err != nil {
			continue // deleted meanwhile
		}
		if cfg.ImageDigest == digest || (ref != "" && cfg.Image == ref) {
			out = append(out, n)
		}
	}
	return out, nil
}
