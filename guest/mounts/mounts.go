//go:build linux

// Package mounts holds the mount helpers that /init and the agent (as PID
// 1) share.
package mounts

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// IsMountPoint reports whether dir is on another device than its parent.
func IsMountPoint(dir string) bool {
	var a, b unix.Stat_t
	if unix.Lstat(dir, &a) != nil || unix.Lstat(dir+"/..", &b) != nil {
		return false
	}
	return a.Dev != b.Dev
}

// MountIfMissing mounts fstype from src at dir (made 0755 if missing) with
// flags and data (mount(2)) unless something is mounted there already. It
// returns the mount's error.
func MountIfMissing(src, dir, fstype string, flags uintptr, data string) error {
	if IsMountPoint(dir) {
		return nil
	}
	os.MkdirAll(dir, 0o755)
	if err := unix.Mount(src, dir, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", fstype, dir, err)
	}
	return nil
}

// Run mounts the tmpfs on /run that an init would mount, with the options
// systemd (src/shared/mount-setup.c) and OpenRC's init.sh use, unless /run
// is mounted already. systemd, OpenRC, sysvinit's and runit's scripts keep
// a /run that is mounted before them, as initramfs-tools and dracut leave
// it. A /run that is not a directory is left alone.
func Run() error {
	if fi, err := os.Lstat("/run"); err == nil && !fi.IsDir() {
		return fmt.Errorf("/run is not a directory")
	}
	return MountIfMissing("tmpfs", "/run", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_STRICTATIME,
		"mode=0755,size=20%,nr_inodes=800k")
}
