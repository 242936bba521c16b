// Package layout names every file and directory machinetop keeps on the
// host, in one place (as Lima's filenames package): the data directory
// (machines, images, the guest kit cache, build journals, the SSH key), each
// machine's directory, and each running machine's private runtime
// directory (sockets). Nothing else in machinetop spells these names.
package layout

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DataDir returns machinetop's data directory: $MACHINETOP_HOME if set,
// else $XDG_DATA_HOME/machinetop, else the platform's default: on Linux
// ~/.local/share/machinetop (the XDG Base Directory specification's
// default), on macOS a directory outside the home directory (see
// defaultDataDir), because the macOS backend cannot hide it inside a
// shared home. It returns an error when no home directory can be
// determined, or when the macOS default cannot be made private.
func DataDir() (Data, error) {
	if d := os.Getenv("MACHINETOP_HOME"); d != "" {
		abs, err := filepath.Abs(d)
		return Data{Root: abs}, err
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) {
		return Data{Root: filepath.Join(d, "machinetop")}, nil
	}
	d, err := defaultDataDir()
	return Data{Root: d}, err
}

// Hidden returns the directories no machine may see, even where one of
// its shared directories contains them: the data directory and the
// runtime directory, with symbolic links resolved. Backends that can
// (driver.Features.HideState) cover them inside shares; the supervisor
// refuses a share inside one of them, and on other backends a share that
// contains one.
func (d Data) Hidden() ([]string, error) {
	rt, err := RuntimeDir()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range []string{d.Root, rt} {
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			return nil, fmt.Errorf("resolving %s: %w", p, err)
		}
		out = append(out, real)
	}
	return out, nil
}

// Contains reports whether path is dir or lies below it. Both must be
// absolute and clean (resolve symbolic links first for a real answer).
func Contains(dir, path string) bool {
	if dir == "/" {
		return true
	}
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// ConfigFile returns the user's configuration file (TOML, package
// config): $MACHINETOP_CONFIG if set, else
// $XDG_CONFIG_HOME/machinetop/config.toml, else
// ~/.config/machinetop/config.toml (the XDG default, used on macOS too
// rather than ~/Library/Application Support, so the file is where it is
// on Linux). It does not check that the file exists; it returns an error
// only when no home directory can be determined.
func ConfigFile() (string, error) {
	if p := os.Getenv("MACHINETOP_CONFIG"); p != "" {
		return filepath.Abs(p)
	}
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "machinetop", "config.toml"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cannot find a home directory for machinetop's config file (set MACHINETOP_CONFIG): %w", err)
	}
	return filepath.Join(home, ".config", "machinetop", "config.toml"), nil
}

// Data is a data directory. Root is its absolute path.
type Data struct{ Root string }

// Machines is the directory holding one directory per machine.
func (d Data) Machines() string { return filepath.Join(d.Root, "machines") }

// MachinesLock is the lock file taken by create, delete and changes of
// the default machine.
func (d Data) MachinesLock() string { return filepath.Join(d.Machines(), ".lock") }

// Staging prefixes of hidden directories in Machines: a machine being
// created, and one being deleted. Either is left over only by a crash and
// is removed under MachinesLock.
const (
	CreatingPrefix = ".create-"
	DeletingPrefix = ".delete-"
)

// Machine is the directory of the machine named name.
func (d Data) Machine(name string) Machine { return Machine{Dir: filepath.Join(d.Machines(), name)} }

// State is the data directory's own state file (the default machine).
func (d Data) State() string { return filepath.Join(d.Root, "state.json") }

// Images is the OCI image store (see package images).
func (d Data) Images() string { return filepath.Join(d.Root, "images") }

// Kit is the cache of guest kits: kernels and initramfs images (vm/kit).
func (d Data) Kit() string { return filepath.Join(d.Root, "kit") }

// Builds holds the journals of builds and pulls (images/progress).
func (d Data) Builds() string { return filepath.Join(d.Root, "builds") }

// Tmp is scratch space on the data directory's filesystem (so that
// results can be renamed into place).
func (d Data) Tmp() string { return filepath.Join(d.Root, "tmp") }

// GuestBuild is where a machinetop installed with `go install` keeps the
// guest binary it built for module version ver and linux/arch.
func (d Data) GuestBuild(ver, arch string) string {
	return filepath.Join(d.Root, "guest", ver, "machinetop-guest-linux-"+arch)
}

// SSHKey is the private key machinetop logs into machines with: an
// ed25519 key in OpenSSH's format, mode 0600.
func (d Data) SSHKey() string { return filepath.Join(d.Root, "ssh", "id_ed25519") }

// Machine is one machine's persistent directory (mode 0700). Dir is its
// path.
type Machine struct{ Dir string }

// Config is the machine's configuration (JSON, vm.Config).
func (m Machine) Config() string { return filepath.Join(m.Dir, "config.json") }

// Disk is the machine's sparse raw root disk.
func (m Machine) Disk() string { return filepath.Join(m.Dir, "disk.img") }

// ImageTar is the flattened image, attached until the guest has unpacked
// it onto Disk (a hard link into the image store when possible).
func (m Machine) ImageTar() string { return filepath.Join(m.Dir, "image.tar") }

// ConsoleLog is the guest's serial console, appended to by the VM.
func (m Machine) ConsoleLog() string { return filepath.Join(m.Dir, "console.log") }

// SupervisorLog is the supervisor's log: boot steps, VM messages, errors.
func (m Machine) SupervisorLog() string { return filepath.Join(m.Dir, "supervisor.log") }

// SupervisorLock is held by the machine's supervisor for as long as it
// runs.
func (m Machine) SupervisorLock() string { return filepath.Join(m.Dir, "supervisor.lock") }

// SSHPort keeps the host port forwarded to the guest's SSH server, so a
// machine keeps its port across boots.
func (m Machine) SSHPort() string { return filepath.Join(m.Dir, "ssh-port") }

// StartFailure keeps why the machine's latest start failed (JSON,
// vm.StartFailure); absent after a start that succeeded.
func (m Machine) StartFailure() string { return filepath.Join(m.Dir, "start-failure.json") }

// Guest keeps what the agent last reported about the image (JSON).
func (m Machine) Guest() string { return filepath.Join(m.Dir, "guest.json") }

// RuntimeDir returns a private directory (mode 0700, owned by the current
// user) for sockets: $XDG_RUNTIME_DIR/machinetop when that is set, else
// machinetop-<uid> under os.TempDir(). Unix socket paths are limited to 107
// bytes (unix(7)), so sockets live here under a short machine ID rather than
// under the data directory. It returns an error if the directory cannot be
// created or is owned by someone else or open to others.
func RuntimeDir() (string, error) {
	var dir string
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" && filepath.IsAbs(d) {
		dir = filepath.Join(d, "machinetop")
	} else {
		dir = filepath.Join(os.TempDir(), fmt.Sprintf("machinetop-%d", os.Getuid()))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("creating runtime directory: %w", err)
	}
	if err := checkPrivateDir(dir, "set XDG_RUNTIME_DIR"); err != nil {
		return "", err
	}
	return dir, nil
}

// Net is the runtime directory of a data directory's machine network
// (vm/netd): its socket and lock file. The runtime directory is shared by
// every data directory of the user, so it is named by a hash of the data
// directory's path.
type Net struct{ Dir string }

// Net returns the runtime directory of d's machine network (mode 0700,
// created), or an error when it cannot be made.
func (d Data) Net() (Net, error) {
	rt, err := RuntimeDir()
	if err != nil {
		return Net{}, err
	}
	sum := sha256.Sum256([]byte(d.Root))
	dir := filepath.Join(rt, "net-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Net{}, fmt.Errorf("creating the machine network's directory: %w", err)
	}
	return Net{Dir: dir}, nil
}

// Socket is the machine network's unix socket (mode 0600).
func (n Net) Socket() string { return filepath.Join(n.Dir, "net.sock") }

// Lock is held by the process serving the machine network.
func (n Net) Lock() string { return filepath.Join(n.Dir, "net.lock") }

// NetworkLog is the machine network process's log.
func (d Data) NetworkLog() string { return filepath.Join(d.Root, "network.log") }

// Run is a running machine's private runtime directory (mode 0700) under
// RuntimeDir, named by the machine's ID. Backends keep their own sockets
// and pid files in it too.
type Run struct{ Dir string }

// RunFor returns the runtime directory of the machine with ID id.
func RunFor(id string) (Run, error) {
	rt, err := RuntimeDir()
	if err != nil {
		return Run{}, err
	}
	return Run{Dir: filepath.Join(rt, id)}, nil
}

// Control is the supervisor's control socket (mode 0600; see vm/control).
func (r Run) Control() string { return filepath.Join(r.Dir, "ctl.sock") }

// ConfigDisk is this boot's config disk (guest/proto GuestConfig).
func (r Run) ConfigDisk() string { return filepath.Join(r.Dir, "config.img") }

// Boot keeps what the supervisor chose for this boot (JSON), for a
// supervisor that adopts the VM.
func (r Run) Boot() string { return filepath.Join(r.Dir, "boot.json") }

// Started holds the time this boot began (RFC 3339).
func (r Run) Started() string { return filepath.Join(r.Dir, "started") }
