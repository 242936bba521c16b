//go:build linux

package qemu

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/machinetop/machinetop/vm/driver"
	"github.com/machinetop/machinetop/vm/hostns"
	"github.com/machinetop/machinetop/vm/layout"
)

// virtiofsdPaths are where distributions install virtiofsd, which is not
// on PATH: Debian 12's QEMU (the C virtiofsd), Fedora, openSUSE, Alpine
// and Debian 13 (/usr/libexec), Arch (/usr/lib). Both the C and the Rust
// virtiofsd take the options startVirtiofsd passes.
var virtiofsdPaths = []string{"/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd", "/usr/lib/virtiofsd"}

// virtiofsd returns the virtiofsd binary: $MACHINETOP_VIRTIOFSD, else the
// first of virtiofsdPaths, else virtiofsd from PATH; "" when there is none.
func virtiofsd() string {
	cands := virtiofsdPaths
	if p := os.Getenv("MACHINETOP_VIRTIOFSD"); p != "" {
		cands = []string{p}
	} else if p, err := exec.LookPath("virtiofsd"); err == nil {
		cands = append(cands, p)
	}
	for _, p := range cands {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// ShareFS returns "virtiofs" when there is a virtiofsd and it can run as
// root: this process is root, or an ordinary user's virtiofsd can be root
// of a user namespace (hostns.CanRunAsRoot: newuidmap and subordinate
// ids). Otherwise "9p": QEMU's built-in virtio-9p server, which needs no
// daemon and runs as the user running QEMU. virtio-fs is the default
// because it answers metadata calls (stat, readdir, open: what builds and
// `git status` do) several times faster than 9p; tests/bench-shares.sh
// measures both. $MACHINETOP_SHARE_FS=9p forces 9p.
func (b *Backend) ShareFS() string {
	if os.Getenv("MACHINETOP_SHARE_FS") == driver.Share9P || virtiofsd() == "" {
		return driver.Share9P
	}
	if hostns.CanRunAsRoot() != nil {
		return driver.Share9P
	}
	return driver.ShareVirtiofs
}

// qemuPath escapes a path for a QEMU option value (a comma is doubled).
func qemuPath(p string) string { return strings.ReplaceAll(p, ",", ",,") }

// fsSocket is the vhost-user socket of virtiofsd for share i.
func fsSocket(runDir string, i int) string {
	return filepath.Join(runDir, fmt.Sprintf("fs%d.sock", i))
}

// hostShares lists shares for hostns.PlanFor; readOnly says whether the
// namespace must make read-only shares read-only (virtiofsd), or the file
// server enforces it itself (QEMU's 9p readonly=on), so that a namespace
// is made only where one is needed.
func hostShares(shares []driver.Share, readOnly bool) []hostns.Share {
	var out []hostns.Share
	for _, s := range shares {
		out = append(out, hostns.Share{Path: s.HostPath, ReadOnly: readOnly && s.ReadOnly})
	}
	return out
}

// shareArgs returns the QEMU arguments for spec's shares over fsType:
// vhost-user-fs devices on the daemons' connections fsConns (with guest
// RAM in a shared memfd, which vhost-user needs), or virtio-9p devices
// (security_model=none: files are created as the user running QEMU;
// readonly=on makes QEMU refuse every write, whatever the guest's
// privileges).
func shareArgs(spec *driver.Spec, fsType string, fsConns []*os.File, l *launch) []string {
	if len(spec.Shares) == 0 {
		return nil
	}
	var args []string
	if fsType == driver.ShareVirtiofs {
		args = append(args,
			"-object", fmt.Sprintf("memory-backend-memfd,id=mem,size=%dM,share=on", spec.MemoryBytes>>20),
			"-numa", "node,memdev=mem")
	}
	for i, s := range spec.Shares {
		if fsType == driver.ShareVirtiofs {
			args = append(args,
				"-chardev", fmt.Sprintf("socket,id=fs%d,fd=%d", i, l.fd(fsConns[i])),
				"-device", fmt.Sprintf("vhost-user-fs-pci,chardev=fs%d,tag=%s", i, s.Tag))
			continue
		}
		fsdev := fmt.Sprintf("local,id=fs%d,path=%s,security_model=none", i, qemuPath(s.HostPath))
		if s.ReadOnly {
			fsdev += ",readonly=on"
		}
		args = append(args, "-fsdev", fsdev,
			"-device", fmt.Sprintf("virtio-9p-pci,fsdev=fs%d,mount_tag=%s", i, s.Tag))
	}
	return args
}

// startVirtiofsd starts one virtiofsd per share, each in a session of its
// own so that it outlives a killed supervisor as QEMU does (it exits when
// QEMU closes its connection), and returns them with a connection to each
// for QEMU. Each daemon runs in a mount namespace of its own
// (hostns.PlanFor) in which spec.Hidden directories inside its share are
// covered and a read-only share is a read-only bind mount (the C
// virtiofsd has no read-only option), so the guest can neither see
// machinetop's files nor write to a read-only share, even as root. For
// an ordinary user it is root of a user namespace of its own
// (hostns.Plan.Root), which virtiofsd needs to act as the guest's users. The
// daemon is given its listening socket as a descriptor (--fd), made mode
// 0600 in the run directory and connected to here at once; on error every
// daemon started is killed.
func startVirtiofsd(spec *driver.Spec) ([]*os.Process, []*os.File, error) {
	var procs []*os.Process
	var conns []*os.File
	fail := func(err error) ([]*os.Process, []*os.File, error) {
		for _, p := range procs {
			p.Kill()
			p.Wait()
		}
		for _, c := range conns {
			c.Close()
		}
		return nil, nil, err
	}
	for i, s := range spec.Shares {
		plan, err := hostns.PlanFor(hostShares([]driver.Share{s}, true), spec.Hidden)
		if err != nil {
			return fail(err)
		}
		plan.Root = true
		lnFile, conn, err := fsListener(fsSocket(spec.RunDir, i))
		if err != nil {
			return fail(fmt.Errorf("virtiofsd for %s: %w", s.HostPath, err))
		}
		conns = append(conns, conn)
		cmd := exec.Command(virtiofsd(), "--fd=3", "-o", "source="+s.HostPath,
			"-o", "cache=auto", "-o", "log_level=warn", "--rlimit-nofile="+strconv.FormatUint(nofileLimit(), 10))
		cmd.ExtraFiles = []*os.File{lnFile}
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		err = hostns.Start(cmd, plan)
		lnFile.Close()
		if err != nil {
			return fail(fmt.Errorf("starting virtiofsd for %s: %w", s.HostPath, err))
		}
		procs = append(procs, cmd.Process)
		go cmd.Wait()
	}
	return procs, conns, nil
}

// nofileLimit is how many files virtiofsd may keep open: it holds one
// per inode the guest knows, and by default raises its limit to a
// million, which only root may. An ordinary user's daemon gets the hard
// limit the user has (the soft limit, often 1024, fails a guest's `ls`
// of a big directory with EMFILE).
func nofileLimit() uint64 {
	const want = 1 << 20
	if os.Geteuid() == 0 {
		return want
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Max > want {
		return want
	}
	return rl.Max
}

// fsListener makes a listening socket for a virtiofsd at path (mode 0600),
// connects to it, and removes the path again: the daemon gets the
// listener, QEMU the connection, and nothing else can connect.
func fsListener(path string) (ln, conn *os.File, err error) {
	l, err := layout.ListenUnix(path)
	if err != nil {
		return nil, nil, err
	}
	defer l.Close() // removes path
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	if ln, err = l.File(); err != nil {
		return nil, nil, err
	}
	if conn, err = c.File(); err != nil {
		ln.Close()
		return nil, nil, err
	}
	return ln, conn, nil
}
