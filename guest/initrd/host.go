//go:build linux

package initrd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/machinetop/machinetop/guest/hostuser"
	"github.com/machinetop/machinetop/guest/proto"
)

// configWait is how long /init looks for the config disk; virtio disks
// appear together, so by the time the root disk is there it is too.
const configWait = 2 * time.Second

// scriptTimeout bounds an image's own user setup script.
const scriptTimeout = 2 * time.Minute

// readGuestConfig reads the GuestConfig from the disk with serial
// proto.ConfigSerial (JSON padded with zero bytes). No such disk means an
// empty configuration.
func readGuestConfig() (*proto.GuestConfig, error) {
	dev, err := findDisk(proto.ConfigSerial, configWait)
	if err != nil {
		return &proto.GuestConfig{}, nil
	}
	f, err := os.Open(dev)
	if err != nil {
		return &proto.GuestConfig{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, proto.MaxConfigBytes))
	if err != nil {
		return &proto.GuestConfig{}, fmt.Errorf("reading %s: %w", dev, err)
	}
	b = bytes.TrimRight(b, "\x00")
	var c proto.GuestConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return &proto.GuestConfig{}, fmt.Errorf("config disk %s: %w", dev, err)
	}
	return &c, nil
}

// findDisk returns /dev/vdX for the virtio disk whose serial
// (/sys/block/vdX/serial) is serial, waiting up to limit for it.
func findDisk(serial string, limit time.Duration) (string, error) {
	deadline := time.Now().Add(limit)
	for {
		blocks, _ := filepath.Glob("/sys/block/vd*/serial")
		for _, p := range blocks {
			b, err := os.ReadFile(p)
			if err == nil && strings.TrimSpace(string(b)) == serial {
				// devtmpfs may make the node a moment after sysfs
				// shows the disk.
				if dev := "/dev/" + filepath.Base(filepath.Dir(p)); ensureNode(dev, filepath.Dir(p)) == nil {
					return dev, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no virtio disk with serial %q", serial)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// setupHost runs after the switch to the root disk, before the image's
// init: the host user (first boot only, and before the mounts, so that a
// shared host home mounted at the same path is never seeded), the SSH
// keys, then the shared directories. Failures are logged, recorded in
// report and written to proto.SetupReportFile; the boot goes on.
func setupHost(c *proto.GuestConfig, report *proto.SetupReport) {
	problem := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		log.Print(msg)
		report.Problems = append(report.Problems, msg)
	}
	sshUser := "root"
	if u := c.User; u != nil {
		report.User = u.Name
		sshUser = u.Name
		if done, _ := os.ReadFile(proto.UserMarker); strings.TrimSpace(string(done)) != u.Name {
			if err := createUser(u, report); err != nil {
				problem("user setup: %v", err)
			} else if err := os.WriteFile(proto.UserMarker, []byte(u.Name+"\n"), 0o644); err != nil {
				problem("user setup: %v", err)
			}
		} else if _, err := os.Stat(proto.UserSetupScript); err != nil {
			// sudo may have been installed since the first boot.
			if _, err := hostuser.GrantSudo("/", u.Name, u.UID); err != nil {
				problem("sudo: %v", err)
			}
		}
	}
	if err := hostuser.AuthorizeKeys("/", sshUser, c.AuthorizedKeys); err != nil {
		problem("ssh key: %v", err)
	}
	mounts := append([]proto.GuestMount(nil), c.Mounts...)
	sort.SliceStable(mounts, func(i, j int) bool { return len(mounts[i].Path) < len(mounts[j].Path) })
	for _, m := range mounts {
		if err := mountShare(m); err != nil {
			problem("shared directory %s: %v", m.Path, err)
		}
	}
	if b, err := json.Marshal(report); err == nil {
		os.WriteFile(proto.SetupReportFile, b, 0o644)
	}
}

// createUser runs the image's proto.UserSetupScript when it has one, else
// the built-in setup (package hostuser).
func createUser(u *proto.GuestUser, report *proto.SetupReport) error {
	shell := hostuser.Shell("/", u.Shell)
	if fi, err := os.Stat(proto.UserSetupScript); err == nil && fi.Mode().IsRegular() {
		report.Script = proto.UserSetupScript
		ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "/bin/sh", proto.UserSetupScript)
		cmd.Dir = "/"
		cmd.Env = []string{
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"MACHINETOP_USER=" + u.Name,
			"MACHINETOP_UID=" + strconv.Itoa(u.UID),
			"MACHINETOP_GID=" + strconv.Itoa(u.GID),
			"MACHINETOP_HOME=" + u.Home,
			"MACHINETOP_SHELL=" + shell,
		}
		out, err := cmd.CombinedOutput()
		if len(out) > 0 {
			log.Printf("%s: %s", proto.UserSetupScript, bytes.TrimSpace(out))
		}
		if err != nil {
			return fmt.Errorf("%s failed: %v", proto.UserSetupScript, err)
		}
		return nil
	}
	res, err := hostuser.Create("/", *u)
	for _, p := range res.Problems {
		report.Problems = append(report.Problems, p)
	}
	if err == nil {
		log.Printf("created user %s (uid %d, gid %d, shell %s, sudo %v)", u.Name, u.UID, u.GID, res.Shell, res.Sudo)
	}
	return err
}

// mountShare mounts one shared directory, creating its mount point.
func mountShare(m proto.GuestMount) error {
	if !filepath.IsAbs(m.Path) || filepath.Clean(m.Path) != m.Path || m.Path == "/" {
		return fmt.Errorf("bad mount point %q", m.Path)
	}
	if err := os.MkdirAll(m.Path, 0o755); err != nil {
		return err
	}
	var flags uintptr = unix.MS_NODEV
	if m.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	var err error
	switch m.FSType {
	case proto.FSVirtiofs:
		err = unix.Mount(m.Tag, m.Path, "virtiofs", flags, "")
	case proto.FS9P:
		// cache=mmap lets programs map shared files writable (9p's
		// default cache=none cannot); msize is the largest message.
		err = unix.Mount(m.Tag, m.Path, "9p", flags, "trans=virtio,version=9p2000.L,msize=262144,cache=mmap")
	default:
		return fmt.Errorf("unknown filesystem type %q", m.FSType)
	}
	if errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("the kernel has no %s filesystem: %w", m.FSType, err)
	}
	if err != nil {
		return fmt.Errorf("mount -t %s %s: %w", m.FSType, m.Tag, err)
	}
	log.Printf("mounted %s (%s%s) on %s", m.Tag, m.FSType, map[bool]string{true: ", read-only"}[m.ReadOnly], m.Path)
	return nil
}
