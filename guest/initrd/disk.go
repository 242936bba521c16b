//go:build linux

package initrd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/machinetop/machinetop/guest/proto"
)

// The root disk belongs to the guest: the host makes a blank sparse file,
// and /init formats it at the first boot and checks it before every mount
// with the e2fsprogs the kit carries (see proto's boot contract).

// toolEnv is the environment the kit's e2fsprogs run with.
var toolEnv = []string{
	"LD_LIBRARY_PATH=" + proto.ToolsLib,
	"MKE2FS_CONFIG=" + proto.Mke2fsConfig,
	"E2FSCK_CONFIG=" + proto.E2fsckConfig,
	"PATH=/tools/bin",
}

// superblockMagic is where an ext2/3/4 filesystem's magic number lies
// (the superblock starts at byte 1024; s_magic is at offset 0x38 in it)
// and its value, little-endian.
const (
	superblockMagicOffset = 1024 + 0x38
	superblockMagic       = 0xEF53
)

// blankCheckBytes is how much of the disk must be zero for it to count as
// blank: the boot sector and the primary superblock with room to spare.
const blankCheckBytes = 64 << 10

// diskState says what is on the start of a disk.
type diskState int

const (
	diskBlank   diskState = iota // all zero: never formatted
	diskExt                      // an ext2/3/4 superblock
	diskUnknown                  // something else, or a damaged superblock
)

// probeDisk reads the start of dev.
func probeDisk(dev string) (diskState, error) {
	f, err := os.Open(dev)
	if err != nil {
		return diskUnknown, err
	}
	defer f.Close()
	b := make([]byte, blankCheckBytes)
	n, err := f.ReadAt(b, 0)
	if n < superblockMagicOffset+2 {
		return diskUnknown, fmt.Errorf("reading %s: %v", dev, err)
	}
	b = b[:n]
	if int(b[superblockMagicOffset])|int(b[superblockMagicOffset+1])<<8 == superblockMagic {
		return diskExt, nil
	}
	if len(bytes.Trim(b, "\x00")) == 0 {
		return diskBlank, nil
	}
	return diskUnknown, nil
}

// prepareRootDisk makes dev ready to mount and returns what it did: a
// blank disk is formatted when this is a first boot (the image disk is
// attached: a machine whose disk was populated is never formatted again,
// whatever its superblock looks like), then e2fsck -p checks it, and
// e2fsck -fy repairs what -p would not. The outcome goes to the console
// log. The error, for a disk that cannot be made mountable, ends the boot.
func prepareRootDisk(dev string) (*proto.DiskCheck, error) {
	start := time.Now()
	dc := &proto.DiskCheck{}
	state, err := probeDisk(dev)
	if err != nil {
		return nil, err
	}
	if state == diskBlank {
		if _, err := findDisk(proto.ImageSerial, diskWait); err != nil {
			return nil, fmt.Errorf("%s is blank but this is not a first boot (the image disk is missing): the root disk was wiped; delete and re-create the machine", dev)
		}
		if err := format(dev); err != nil {
			return nil, err
		}
		dc.Formatted = true
		log.Printf("formatted %s as ext4 in %v", dev, time.Since(start).Round(time.Millisecond))
	}
	code, out, err := runTool(proto.E2fsck, "-p", dev)
	if err != nil {
		return nil, err
	}
	dc.ExitCode = code
	all := out
	if code&4 != 0 {
		log.Printf("e2fsck -p left errors on %s (exit %d); repairing with e2fsck -fy", dev, code)
		dc.RepairExitCode, out, err = runTool(proto.E2fsck, "-fy", dev)
		if err != nil {
			return nil, err
		}
		all += out
	}
	dc.JournalRecovered = strings.Contains(all, "recovering journal")
	dc.Output = tail(strings.TrimSpace(all), proto.MaxCheckOutput)
	dc.Millis = time.Since(start).Milliseconds()
	final := code
	if code&4 != 0 {
		final = dc.RepairExitCode
	}
	switch {
	case final&^3 != 0: // anything but "corrected"
		dc.Result = proto.DiskFailed
	case final != 0 || code != 0 || dc.JournalRecovered:
		dc.Result = proto.DiskFixed
	default:
		dc.Result = proto.DiskClean
	}
	log.Printf("root disk check: %s", describeCheck(dc))
	for _, line := range strings.Split(strings.TrimSpace(all), "\n") {
		if line != "" && dc.Result != proto.DiskClean {
			log.Printf("e2fsck: %s", line)
		}
	}
	if dc.Result == proto.DiskFailed {
		return dc, fmt.Errorf("the root disk %s has errors e2fsck cannot repair (%s); copy disk.img from the machine's directory and repair it with e2fsck on a host that has e2fsprogs", dev, describeCheck(dc))
	}
	return dc, nil
}

// describeCheck is a one-line account of a check for the console log.
func describeCheck(dc *proto.DiskCheck) string {
	var parts []string
	if dc.Formatted {
		parts = append(parts, "formatted at this first boot")
	}
	if dc.JournalRecovered {
		parts = append(parts, "journal recovered")
	}
	parts = append(parts, fmt.Sprintf("e2fsck -p exit %d", dc.ExitCode))
	if dc.ExitCode&4 != 0 {
		parts = append(parts, fmt.Sprintf("e2fsck -fy exit %d", dc.RepairExitCode))
	}
	parts = append(parts, fmt.Sprintf("%d ms", dc.Millis))
	return dc.Result + " (" + strings.Join(parts, ", ") + ")"
}

// format makes an ext4 filesystem on dev. Inode tables and the journal
// are left for lazy initialisation: the blank sparse disk reads as zeros
// already, so writing them would only fill the host's file (the root is
// then mounted with noinit_itable, so the kernel does not zero them in
// the background either). The disk is known to be empty, so it is not
// discarded first.
func format(dev string) error {
	code, out, err := runTool(proto.Mke2fs, "-t", "ext4", "-q", "-F", "-L", proto.RootLabel,
		"-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", dev)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("mke2fs %s failed (exit %d): %s", dev, code, strings.TrimSpace(out))
	}
	return nil
}

// runTool runs one of the kit's e2fsprogs and returns its exit status and
// output; the error is for a program that could not run at all.
func runTool(prog string, args ...string) (int, string, error) {
	cmd := exec.Command(prog, args...)
	cmd.Env = toolEnv
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		return ee.ExitCode(), string(out), nil
	}
	if err != nil {
		return 0, string(out), fmt.Errorf("running %s: %v (is the guest kit complete?) %s", prog, err, out)
	}
	return 0, string(out), nil
}

// tail returns the last max bytes of s.
func tail(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return s[len(s)-max:]
}

// growRoot grows the mounted filesystem on dev to the device's size
// when the device is larger (the host grew the disk file: `machine set
// disk=`), with resize2fs online. A kit without resize2fs, or a failed
// resize, leaves the filesystem as it was and is logged.
func growRoot(dev string) {
	devBytes, err := deviceBytes(dev)
	if err != nil {
		log.Printf("root disk size: %v", err)
		return
	}
	fsBytes, err := superblockBytes(dev)
	if err != nil {
		log.Printf("root filesystem size: %v", err)
		return
	}
	// resize2fs rounds to whole block groups' worth of metadata; a
	// difference under a MiB is not worth a resize.
	if devBytes <= fsBytes+1<<20 {
		return
	}
	if _, err := os.Stat(proto.Resize2fs); err != nil {
		log.Printf("the disk grew to %d MiB but the kit has no resize2fs: the filesystem stays at %d MiB", devBytes>>20, fsBytes>>20)
		return
	}
	start := time.Now()
	code, out, err := runTool(proto.Resize2fs, dev)
	if err != nil || code != 0 {
		log.Printf("growing the root filesystem from %d to %d MiB: resize2fs exit %d, %v: %s", fsBytes>>20, devBytes>>20, code, err, strings.TrimSpace(out))
		return
	}
	log.Printf("grew the root filesystem from %d to %d MiB in %v", fsBytes>>20, devBytes>>20, time.Since(start).Round(time.Millisecond))
}

// deviceBytes returns a block device's size in bytes.
func deviceBytes(dev string) (uint64, error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := unix.IoctlGetUint64(int(f.Fd()), unix.BLKGETSIZE64)
	return n, err
}

// superblockBytes returns the size of the ext4 filesystem on dev, read
// from its superblock (1024 bytes at offset 1024; ext4's disk layout):
// the block count (s_blocks_count_lo at 4, s_blocks_count_hi at 0x150
// with the 64bit feature, INCOMPAT 0x80 at 0x60) times the block size
// (1024 << s_log_block_size at 24).
func superblockBytes(dev string) (uint64, error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, 1024); err != nil {
		return 0, err
	}
	if binary.LittleEndian.Uint16(sb[0x38:]) != 0xef53 {
		return 0, fmt.Errorf("%s: no ext4 superblock", dev)
	}
	blocks := uint64(binary.LittleEndian.Uint32(sb[4:]))
	if binary.LittleEndian.Uint32(sb[0x60:])&0x80 != 0 {
		blocks |= uint64(binary.LittleEndian.Uint32(sb[0x150:])) << 32
	}
	return blocks << (10 + binary.LittleEndian.Uint32(sb[24:])), nil
}
