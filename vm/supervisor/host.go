package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/vm"
	"github.com/machinetop/machinetop/vm/control"
	"github.com/machinetop/machinetop/vm/driver"
	"github.com/machinetop/machinetop/vm/internal/atomicfile"
	"github.com/machinetop/machinetop/vm/kit"
	"github.com/machinetop/machinetop/vm/layout"
	"github.com/machinetop/machinetop/vm/netd"
)

// bootInfo is what a supervisor chose for a boot, kept in the run
// directory so that a supervisor adopting the VM reports the same.
type bootInfo struct {
	SSHPort int                   `json:"sshPort,omitempty"`
	Mounts  []control.ActiveMount `json:"mounts,omitempty"`
	// CPUs and Memory (bytes) are the machine's configuration at boot.
	CPUs   int    `json:"cpus,omitempty"`
	Memory uint64 `json:"memory,omitempty"`
}

// kit returns the guest kit for this boot from Options.Kit or KitFor.
func (s *supervisor) kit(ctx context.Context) (*kit.Kit, error) {
	log := &stageWriter{s: s, w: s.logw}
	if s.opts.Kit != nil {
		return s.opts.Kit(ctx, s.cfg, log)
	}
	return KitFor(ctx, s.m, s.cfg, log)
}

// KitFor returns the guest kit (kernel and initramfs) for a boot of cfg,
// for the machine's architecture, building it into the data directory's
// kit cache on first use (progress to log). The kernel is the machine's
// own, else $MACHINETOP_KERNEL, else Debian's generic kernel when the
// machine shares directories over 9p (the cloud kernel has no 9p), else
// the cloud kernel; the guest binary is the one for linux/<arch>
// (kit.GuestBinary).
func KitFor(ctx context.Context, m *vm.Manager, cfg *vm.Config, log io.Writer) (*kit.Kit, error) {
	src, err := kitSource(m.Backend.Features(), cfg)
	if err != nil {
		return nil, err
	}
	gb, err := kit.GuestBinary(src.Arch)
	if err != nil {
		return nil, err
	}
	return kit.Ensure(ctx, m.Data.Kit(), src, gb, log)
}

// kitSource picks the guest kernel for cfg (see KitFor).
func kitSource(feat driver.Features, cfg *vm.Config) (kit.Source, error) {
	src := kit.Source{Arch: cfg.GuestArch()}
	k := cfg.Kernel
	if k == "" {
		k = os.Getenv("MACHINETOP_KERNEL")
	}
	switch {
	case strings.HasSuffix(k, ".deb"):
		src.Deb = k
	case k != "":
		src.Kernel = k
	case len(cfg.Shares()) > 0 && feat.ShareFS == driver.Share9P:
		pkg, err := kit.GenericPackageFor(src.Arch)
		if err != nil {
			return src, err
		}
		src.Package = pkg
	}
	return src, nil
}

// bootFiles are the files a boot hands the backend, opened with
// layout.OpenBeneath (nothing a machine could have planted is followed)
// and closed once the backend has started.
type bootFiles struct {
	kernel, initramfs, console, disk, image, config *os.File
	// network is the connection to the machine network and mac the
	// machine's interface address on it (Features.MachineNet).
	network *os.File
	mac     string
}

func (f *bootFiles) close() {
	for _, x := range []*os.File{f.kernel, f.initramfs, f.console, f.disk, f.image, f.config, f.network} {
		if x != nil {
			x.Close()
		}
	}
}

// openDisk opens the machine's root disk read-write.
func (s *supervisor) openDisk(f *bootFiles) (err error) {
	f.disk, err = s.dir.Open(s.dir.Disk(), os.O_RDWR, 0)
	return err
}

// openBootFiles opens the kit's kernel and initramfs, the console log
// (created if missing), the image tar while the disk is not populated,
// and this boot's config disk.
func (s *supervisor) openBootFiles(f *bootFiles, k *kit.Kit) error {
	var err error
	if f.kernel, err = s.openKit(k.Kernel); err != nil {
		return err
	}
	if f.initramfs, err = s.openKit(k.Initramfs); err != nil {
		return err
	}
	if f.console, err = s.dir.Open(s.dir.ConsoleLog(), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err != nil {
		return err
	}
	if !s.cfg.Populated {
		if f.image, err = s.dir.Open(s.dir.ImageTar(), os.O_RDONLY, 0); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("the image of %s was never unpacked and its copy is gone: delete and re-create the machine", s.cfg.Name)
		} else if err != nil {
			return err
		}
	}
	f.config, err = s.run.Open(s.run.ConfigDisk(), os.O_RDONLY, 0)
	return err
}

// openKit opens a kit file: beneath the data directory for the kit cache,
// as given for a kernel the user named outside it.
func (s *supervisor) openKit(path string) (*os.File, error) {
	root := s.m.Data.Root
	if rel, err := filepath.Rel(root, path); err == nil && layout.Contains(root, path) {
		return layout.OpenBeneath(root, rel, os.O_RDONLY, 0)
	}
	return os.Open(path)
}

// prepareHost writes the config disk for this boot and picks its shares
// (checked against machinetop's own directories, see checkShare) and SSH
// port; it returns the boot's choices.
func (s *supervisor) prepareHost() (bootInfo, error) {
	var bi bootInfo
	fsType := s.feat.ShareFS
	gc := proto.GuestConfig{}
	u := s.cfg.User
	if u.UID != 0 && u.Username != "" {
		gc.User = &proto.GuestUser{Name: u.Username, UID: u.UID, GID: u.GID, Home: u.GuestHome(), Shell: u.Shell}
	}
	var shares []driver.Share
	mounts := s.cfg.Shares()
	if len(mounts) > 0 && fsType == "" {
		return bi, fmt.Errorf("the %s backend cannot share directories: use `machinetop machine set -n %s home-mount=none mounts=`", s.be.Name(), s.cfg.Name)
	}
	hidden, err := s.m.Data.Hidden()
	if err != nil {
		return bi, err
	}
	s.hidden = hidden
	home := len(mounts) - len(s.cfg.Mounts) // the home share comes first, if any
	for i, mt := range mounts {
		if err := s.checkShare(mt, i < home); err != nil {
			return bi, err
		}
		tag := fmt.Sprintf("mt%d", i)
		shares = append(shares, driver.Share{Tag: tag, HostPath: mt.Host, ReadOnly: mt.ReadOnly})
		gc.Mounts = append(gc.Mounts, proto.GuestMount{Tag: tag, Path: mt.Guest, FSType: fsType, ReadOnly: mt.ReadOnly})
		bi.Mounts = append(bi.Mounts, control.ActiveMount{Host: mt.Host, Guest: mt.Guest, ReadOnly: mt.ReadOnly, FSType: fsType})
	}
	s.shares = shares
	if _, pub, err := s.m.SSHKey(); err != nil {
		s.log.Warn("no SSH key", "err", err)
	} else {
		gc.AuthorizedKeys = []string{pub}
	}
	b, err := json.Marshal(gc)
	if err != nil {
		return bi, err
	}
	if len(b) > proto.MaxConfigBytes {
		return bi, fmt.Errorf("the machine's configuration is %d bytes, more than %d: share fewer directories", len(b), proto.MaxConfigBytes)
	}
	// Whole 512-byte sectors, zero padded.
	padded := make([]byte, (len(b)+511)/512*512)
	copy(padded, b)
	if err := atomicfile.WriteFile(s.run.ConfigDisk(), padded, 0o600); err != nil {
		return bi, err
	}
	bi.SSHPort = s.pickSSHPort()
	bi.CPUs, bi.Memory = s.cfg.CPUs, s.cfg.MemoryBytes
	return bi, nil
}

// checkShare refuses a shared directory that is gone, a --mount whose
// path now passes through a symbolic link (its links were resolved when
// it was given; a machine sharing a parent may have swapped one in, to
// have this share show something else; the home directory is the
// system's and may lie behind links), or one that would show the machine
// machinetop's own directories: one inside them always, one containing
// them on a backend that cannot hide them.
func (s *supervisor) checkShare(mt vm.Mount, isHome bool) error {
	if fi, err := os.Stat(mt.Host); err != nil || !fi.IsDir() {
		return fmt.Errorf("shared directory %s is gone: create it again, or change the machine's mounts with `machinetop machine set -n %s mounts=...` or home-mount=none", mt.Host, s.cfg.Name)
	}
	real, err := filepath.EvalSymlinks(mt.Host)
	if err != nil {
		return err
	}
	if real != mt.Host && !isHome {
		return fmt.Errorf("shared directory %s now leads through a symbolic link to %s; machinetop does not follow it (a machine may have planted it): put the directory back, or change the machine's mounts with `machinetop machine set -n %s mounts=...`", mt.Host, real, s.cfg.Name)
	}
	for _, h := range s.hidden {
		if layout.Contains(h, real) {
			return fmt.Errorf("shared directory %s is inside machinetop's own %s, which no machine may see: change the machine's mounts with `machinetop machine set -n %s mounts=...`", mt.Host, h, s.cfg.Name)
		}
		if layout.Contains(real, h) && !s.feat.HideState {
			return fmt.Errorf("shared directory %s contains machinetop's own %s, and the %s backend cannot hide it from the machine: move machinetop's data out of it (MACHINETOP_HOME=/elsewhere) or share less (`machinetop machine set -n %s home-mount=none mounts=...`)", mt.Host, h, s.be.Name(), s.cfg.Name)
		}
	}
	return nil
}

// pickSSHPort returns the machine's SSH port from its last boot when that
// port is free on 127.0.0.1, else a free port chosen by the kernel, and
// records it for the next boot.
func (s *supervisor) pickSSHPort() int {
	path := s.dir.SSHPort()
	if b, err := os.ReadFile(path); err == nil {
		if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && p > 0 && p < 65536 {
			if ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))); err == nil {
				ln.Close()
				return p
			}
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.log.Warn("no free port for SSH", "err", err)
		return 0
	}
	p := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	atomicfile.WriteFile(path, []byte(strconv.Itoa(p)+"\n"), 0o600)
	return p
}

// saveBootInfo and loadBootInfo keep bootInfo in the run directory.
func (s *supervisor) saveBootInfo(bi bootInfo) {
	b, _ := json.Marshal(bi)
	atomicfile.WriteFile(s.run.Boot(), b, 0o600)
}

func (s *supervisor) loadBootInfo() bootInfo {
	var bi bootInfo
	atomicfile.ReadJSON(s.run.Boot(), &bi)
	return bi
}

// joinNetwork connects the machine to the data directory's machine
// network (starting the network's process when none runs), with the
// machine's address (allocated now for a machine that has none); the
// connection goes to the backend.
func (s *supervisor) joinNetwork(ctx context.Context, f *bootFiles) error {
	id, err := s.m.EnsureNetwork(s.cfg)
	if err != nil {
		return err
	}
	nd, err := s.m.Data.Net()
	if err != nil {
		return err
	}
	h := netd.Hello{Name: s.cfg.Name, IP: id.IP, MAC: id.MAC}
	conn, err := netd.Connect(ctx, nd.Socket(), h, s.m.StartNetwork)
	if err != nil {
		return fmt.Errorf("%w (see %s)", err, s.m.Data.NetworkLog())
	}
	f.network, f.mac = conn, id.MAC
	s.log.Info("joined the machine network", "ip", id.IP, "mac", id.MAC)
	return nil
}
