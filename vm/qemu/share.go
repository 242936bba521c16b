//go:build linux

package qemu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/machinetop/machinetop/vm/driver"
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

// ShareFS returns "virtiofs" when this process runs as root and has a
// virtiofsd (which cannot run unprivileged), else "9p": QEMU's built-in
// virtio-9p server, which needs no daemon and runs as the user running
// QEMU. $MACHINETOP_SHARE_FS=9p forces 9p.
func (b *Backend) ShareFS() string {
	if os.Getenv("MACHINETOP_SHARE_FS") == driver.Share9P {
		return driver.Share9P
	}
	if os.Geteuid() == 0 && virtiofsd() != "" {
		return driver.ShareVirtiofs
	}
	return driver.Share9P
}

// qemuPath escapes a path for a QEMU option value (a comma is doubled).
func qemuPath(p string) string { return strings.ReplaceAll(p, ",", ",,") }

// fsSocket is the vhost-user socket of virtiofsd for share i.
func fsSocket(runDir string, i int) string {
	return filepath.Join(runDir, fmt.Sprintf("fs%d.sock", i))
}

// shareArgs returns the QEMU arguments for spec's shares over fsType:
// vhost-user-fs devices (with guest RAM in a shared memfd, which
// vhost-user needs) or virtio-9p devices (security_model=none: files are
// created as the user running QEMU; readonly=on makes QEMU refuse every
// write, whatever the guest's privileges).
func shareArgs(spec *driver.Spec, fsType string) []string {
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
				"-chardev", fmt.Sprintf("socket,id=fs%d,path=%s", i, qemuPath(fsSocket(spec.RunDir, i))),
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
// QEMU closes its socket), and waits for their sockets. A read-only share
// is served from a read-only bind mount of the directory made in a mount
// namespace private to that virtiofsd, so the guest cannot write to it
// even as root (the C virtiofsd has no read-only option). On error every
// daemon started is killed.
func startVirtiofsd(ctx context.Context, spec *driver.Spec) ([]*os.Process, error) {
	var procs []*os.Process
	fail := func(err error) ([]*os.Process, error) {
		for _, p := range procs {
			p.Kill()
			p.Wait()
		}
		return nil, err
	}
	for i, s := range spec.Shares {
		sock := fsSocket(spec.RunDir, i)
		os.Remove(sock)
		cmd := exec.Command(virtiofsd(), "--socket-path="+sock, "-o", "source="+s.HostPath,
			"-o", "cache=auto", "-o", "log_level=warn")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		var err error
		if s.ReadOnly {
			err = startReadOnly(cmd, s.HostPath)
		} else {
			err = cmd.Start()
		}
		if err != nil {
			return fail(fmt.Errorf("starting virtiofsd for %s: %w", s.HostPath, err))
		}
		procs = append(procs, cmd.Process)
		go cmd.Wait()
		if err := waitUnixSocket(ctx, sock, 10*time.Second); err != nil {
			return fail(fmt.Errorf("virtiofsd for %s: %w (see the supervisor log)", s.HostPath, err))
		}
	}
	return procs, nil
}

// startReadOnly starts cmd in a new mount namespace in which dir is a
// recursive read-only bind mount of itself. The namespace is made on a
// thread of its own that is never returned to the Go scheduler, and cmd
// is forked from that thread, so the supervisor's own view is untouched.
func startReadOnly(cmd *exec.Cmd, dir string) error {
	errc := make(chan error, 1)
	go func() {
		// No UnlockOSThread: the thread ends with this goroutine.
		runtime.LockOSThread()
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
				return fmt.Errorf("mount namespace: %w", err)
			}
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				return fmt.Errorf("private mounts: %w", err)
			}
			if err := unix.Mount(dir, dir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
				return fmt.Errorf("bind mount of %s: %w", dir, err)
			}
			attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
			if err := unix.MountSetattr(-1, dir, unix.AT_RECURSIVE, attr); err != nil {
				// Kernels before 5.12: the top mount at least.
				if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
					return fmt.Errorf("read-only remount of %s: %w", dir, err)
				}
			}
			return cmd.Start()
		}()
	}()
	return <-errc
}

// waitUnixSocket waits until something accepts connections on path.
func waitUnixSocket(ctx context.Context, path string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no socket %s after %v", path, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
