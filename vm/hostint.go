package vm

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/machinetop/machinetop/guest/client"
	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/vm/kit"
)

// Files for host integration: configDiskFile and bootFile in the run
// directory (per boot), sshPortFile and guestFile in the machine directory
// (kept across boots).
const (
	configDiskFile = "config.img"
	bootFile       = "boot.json"
	sshPortFile    = "ssh-port"
	guestFile      = "guest.json"
)

// ActiveMount is a shared directory as the current boot has it.
type ActiveMount struct {
	Mount
	// FSType is "virtiofs" or "9p".
	FSType string `json:"fstype"`
}

// GuestFacts is what the agent last reported about the image's support
// for host integration; kept in the machine directory so that a stopped
// machine can still say it.
type GuestFacts struct {
	// Sudo is false when the image has no sudo (no passwordless sudo for
	// the mapped user then).
	Sudo bool `json:"sudo"`
	// SSHD is false when the image has no SSH server.
	SSHD bool `json:"sshd"`
	// Problems are setup steps that failed at the latest boot (user,
	// mounts, SSH key), as /init reported them.
	Problems []string `json:"problems,omitempty"`
}

// bootInfo is what a supervisor chose for a boot, kept in the run
// directory so that a supervisor adopting the VM reports the same.
type bootInfo struct {
	SSHPort int           `json:"sshPort,omitempty"`
	Mounts  []ActiveMount `json:"mounts,omitempty"`
}

// shareFS is the filesystem this process's backend shares directories
// with.
func (m *Manager) shareFS() string {
	if s, ok := m.Backend.(ShareFS); ok {
		return s.ShareFS()
	}
	return proto.FSVirtiofs
}

// kitSource picks the guest kernel for cfg: the machine's own kernel, else
// $MACHINETOP_KERNEL, else Debian's generic kernel when the machine
// shares directories over 9p (the cloud kernel has no 9p), else the
// default cloud kernel.
func (m *Manager) kitSource(cfg *Config) (kit.Source, error) {
	var src kit.Source
	k := cfg.Kernel
	if k == "" {
		k = os.Getenv("MACHINETOP_KERNEL")
	}
	switch {
	case strings.HasSuffix(k, ".deb"):
		src.Deb = k
	case k != "":
		src.Kernel = k
	case len(cfg.Shares()) > 0 && m.shareFS() == proto.FS9P:
		pkg, err := kit.GenericPackage()
		if err != nil {
			return src, err
		}
		src.Package = pkg
	}
	return src, nil
}

// prepareHost writes the config disk for a boot of s's machine and picks
// its SSH port; it returns the disk to attach and the boot's choices.
func (s *supervisor) prepareHost() (Disk, bootInfo, error) {
	var bi bootInfo
	fsType := s.m.shareFS()
	gc := proto.GuestConfig{}
	u := s.cfg.User
	if u.UID != 0 && u.Username != "" {
		gc.User = &proto.GuestUser{Name: u.Username, UID: u.UID, GID: u.GID, Home: u.GuestHome(), Shell: u.Shell}
	}
	var shares []Share
	for i, mt := range s.cfg.Shares() {
		if fi, err := os.Stat(mt.Host); err != nil || !fi.IsDir() {
			return Disk{}, bi, fmt.Errorf("shared directory %s is gone: create it again, or change the machine's mounts with `machinetop machine set -n %s mounts=...` or home-mount=none", mt.Host, s.cfg.Name)
		}
		tag := fmt.Sprintf("mt%d", i)
		shares = append(shares, Share{Tag: tag, HostPath: mt.Host, ReadOnly: mt.ReadOnly})
		gc.Mounts = append(gc.Mounts, proto.GuestMount{Tag: tag, Path: mt.Guest, FSType: fsType, ReadOnly: mt.ReadOnly})
		bi.Mounts = append(bi.Mounts, ActiveMount{Mount: mt, FSType: fsType})
	}
	s.shares = shares
	if _, pub, err := s.m.SSHKey(); err != nil {
		s.log.Warn("no SSH key", "err", err)
	} else {
		gc.AuthorizedKeys = []string{pub}
	}
	b, err := json.Marshal(gc)
	if err != nil {
		return Disk{}, bi, err
	}
	if len(b) > proto.MaxConfigBytes {
		return Disk{}, bi, fmt.Errorf("the machine's configuration is %d bytes, more than %d: share fewer directories", len(b), proto.MaxConfigBytes)
	}
	// Whole 512-byte sectors, zero padded.
	padded := make([]byte, (len(b)+511)/512*512)
	copy(padded, b)
	p := filepath.Join(s.run, configDiskFile)
	if err := writeFileAtomic(p, padded, 0o600); err != nil {
		return Disk{}, bi, err
	}
	if f, ok := s.m.Backend.(SSHForwarder); ok && f.ForwardsSSH() {
		bi.SSHPort = s.pickSSHPort()
	}
	return Disk{Path: p, Serial: proto.ConfigSerial, ReadOnly: true}, bi, nil
}

// pickSSHPort returns the machine's SSH port from its last boot when that
// port is free on 127.0.0.1, else a free port chosen by the kernel, and
// records it for the next boot.
func (s *supervisor) pickSSHPort() int {
	path := filepath.Join(s.dir, sshPortFile)
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
	writeFileAtomic(path, []byte(strconv.Itoa(p)+"\n"), 0o600)
	return p
}

// saveBootInfo and loadBootInfo keep bootInfo in the run directory.
func (s *supervisor) saveBootInfo(bi bootInfo) {
	b, _ := json.Marshal(bi)
	writeFileAtomic(filepath.Join(s.run, bootFile), b, 0o600)
}

func (s *supervisor) loadBootInfo() bootInfo {
	var bi bootInfo
	readJSON(filepath.Join(s.run, bootFile), &bi)
	return bi
}

// recordGuest keeps what the agent reported in the status and in the
// machine directory.
func (s *supervisor) recordGuest(info *proto.Info) {
	g := &GuestFacts{Sudo: info.Sudo, SSHD: info.SSHD}
	if info.Setup != nil {
		g.Problems = info.Setup.Problems
	}
	s.setStatus(func(st *status) { st.Guest = g })
	writeJSONAtomic(filepath.Join(s.dir, guestFile), g)
}

// Clock checks: how often the supervisor compares the guest's clock with
// the host's, and the drift that makes it set the guest's clock.
const (
	clockInterval = 10 * time.Second
	clockMaxDrift = time.Second
)

// syncClock sets the guest clock from the host's whenever they differ by
// more than clockMaxDrift (after the host slept, the guest's clock lags
// by the time slept), checking every clockInterval, or at once when the
// host's wall clock jumped against its monotonic clock (a resume), until
// done is closed. One check is one small agent call.
func (s *supervisor) syncClock(cl *client.Client, done <-chan struct{}) {
	check := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		t0 := time.Now()
		g, err := cl.Time(ctx)
		if err != nil {
			return
		}
		rtt := time.Since(t0)
		mid := t0.Add(rtt / 2)
		drift := g.Sub(mid)
		if drift < 0 {
			drift = -drift
		}
		if drift <= clockMaxDrift || rtt > clockMaxDrift {
			return
		}
		if err := cl.SetTime(ctx, time.Now()); err != nil {
			s.log.Warn("setting the guest clock", "err", err)
			return
		}
		s.log.Info("guest clock set from the host", "drift", drift.Round(time.Millisecond))
	}
	check()
	t := time.NewTicker(clockInterval)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			// Round(0) strips the monotonic reading: wall time elapsed.
			now := time.Now()
			if jump := now.Round(0).Sub(last.Round(0)) - now.Sub(last); jump > clockMaxDrift || jump < -clockMaxDrift {
				s.log.Info("host clock jumped (resume?)", "by", jump.Round(time.Millisecond))
			}
			last = now
			check()
		}
	}
}

// notes explains missing host integration of mc to the user.
func notes(mc *Machine) []string {
	g := mc.Guest
	if g == nil {
		return nil
	}
	var out []string
	if !g.Sudo && mc.User.UID != 0 {
		out = append(out, fmt.Sprintf("the image has no sudo, so %s has no passwordless sudo in the machine: install it as root (e.g. `machinetop machine run -n %s --root -- apt-get install -y sudo`) and restart the machine, or use `machinetop machine run --root`", mc.User.Username, mc.Name))
	}
	if !g.SSHD {
		out = append(out, fmt.Sprintf("the image has no SSH server, so `machinetop machine ssh-config` cannot work: install one as root (e.g. `machinetop machine run -n %s --root -- apt-get install -y openssh-server`)", mc.Name))
	}
	for _, p := range g.Problems {
		out = append(out, "setup at the latest boot: "+p)
	}
	return out
}
