package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/vm"
	"github.com/machinetop/machinetop/vm/control"
	"github.com/machinetop/machinetop/vm/driver"
	"github.com/machinetop/machinetop/vm/internal/atomicfile"
	"github.com/machinetop/machinetop/vm/kit"
)

// bootInfo is what a supervisor chose for a boot, kept in the run
// directory so that a supervisor adopting the VM reports the same.
type bootInfo struct {
	SSHPort int                   `json:"sshPort,omitempty"`
	Mounts  []control.ActiveMount `json:"mounts,omitempty"`
}

// kit returns the guest kit for this boot from Options.Kit or KitFor.
func (s *supervisor) kit(ctx context.Context) (*kit.Kit, error) {
	if s.opts.Kit != nil {
		return s.opts.Kit(ctx, s.cfg, s.logw)
	}
	return KitFor(ctx, s.m, s.cfg, s.logw)
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

// checkDisk runs e2fsck -p (preen: replay the journal, fix what is safe)
// on a stopped machine's disk; exit statuses 0–2 mean the filesystem is
// fine or was fixed (e2fsck(8)).
func checkDisk(ctx context.Context, path string) error {
	fsck, err := vm.LookTool("e2fsck")
	if err != nil {
		return fmt.Errorf("e2fsck not found: install e2fsprogs")
	}
	out, err := exec.CommandContext(ctx, fsck, "-p", path).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() <= 2 {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking the root disk failed (e2fsck -p %s): %w: %s", path, err, out)
	}
	return nil
}

// prepareHost writes the config disk for this boot and picks its shares
// and SSH port; it returns the disk to attach and the boot's choices.
func (s *supervisor) prepareHost() (driver.Disk, bootInfo, error) {
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
		return driver.Disk{}, bi, fmt.Errorf("the %s backend cannot share directories: use `machinetop machine set -n %s home-mount=none mounts=`", s.be.Name(), s.cfg.Name)
	}
	for i, mt := range mounts {
		if fi, err := os.Stat(mt.Host); err != nil || !fi.IsDir() {
			return driver.Disk{}, bi, fmt.Errorf("shared directory %s is gone: create it again, or change the machine's mounts with `machinetop machine set -n %s mounts=...` or home-mount=none", mt.Host, s.cfg.Name)
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
		return driver.Disk{}, bi, err
	}
	if len(b) > proto.MaxConfigBytes {
		return driver.Disk{}, bi, fmt.Errorf("the machine's configuration is %d bytes, more than %d: share fewer directories", len(b), proto.MaxConfigBytes)
	}
	// Whole 512-byte sectors, zero padded.
	padded := make([]byte, (len(b)+511)/512*512)
	copy(padded, b)
	p := s.run.ConfigDisk()
	if err := atomicfile.WriteFile(p, padded, 0o600); err != nil {
		return driver.Disk{}, bi, err
	}
	if s.feat.SSHForward {
		bi.SSHPort = s.pickSSHPort()
	}
	return driver.Disk{Path: p, Serial: proto.ConfigSerial, ReadOnly: true}, bi, nil
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
