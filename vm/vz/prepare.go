package vz

// The parts of the backend that do not call the Virtualization framework:
// spec checks, the kernel command line, the per-machine MAC address, files
// kept in the machine's directory and the arm64 kernel format. They build
// on every host so that their tests run in CI.

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/renameio/v2"

	"github.com/machinetop/machinetop/vm/driver"
	"github.com/machinetop/machinetop/vm/layout"
)

// Files the backend keeps per machine in driver.Spec.StateDir (or RunDir).
const (
	// MachineIDFile holds the data representation of the machine's
	// VZGenericMachineIdentifier, created on first boot.
	MachineIDFile = "vz-machine-id"
	// MACFile holds the MAC address of the machine's network device in
	// net.HardwareAddr text form, created on first boot.
	MACFile = "vz-mac"
	// kernelFile is the uncompressed arm64 kernel written to RunDir when
	// the kit's kernel is compressed.
	kernelFile = "vz-kernel"
)

// mib is a mebibyte, in bytes.
const mib = 1 << 20

// Features describes the vz backend: virtio-fs shares, VMs that end with their supervisor, a traditional balloon (no free
// page reporting), a virtio socket for the agent, arm64 guests on Apple
// silicon, and the machine network (vm/netd, through a file-handle
// attachment; the guest gets its address by DHCP). It cannot
// hide a directory inside a share (HideState false): the framework serves
// shares itself, in a process machinetop cannot put in a namespace, so
// machinetop's data directory must lie outside every share (its macOS
// default does; the supervisor refuses a share that contains it).
func Features() driver.Features {
	return driver.Features{
		ShareFS:    driver.ShareVirtiofs,
		Balloon:    true,
		Vsock:      true,
		MachineNet: true,
		Archs:      []string{"arm64"},
	}
}

// MaxSerialLen is the longest virtio-blk serial the framework accepts
// (VZVirtioBlockDeviceConfiguration.blockDeviceIdentifier: at most 20
// bytes, ASCII), which is also the size of the virtio-blk ID field.
const MaxSerialLen = 20

// ConsoleDevice is the guest console: the first virtio console port.
const ConsoleDevice = "hvc0"

// checkSpec returns a descriptive error for a spec the backend cannot boot.
// The framework's own CPU and memory limits are checked by the caller.
func checkSpec(spec *driver.Spec) error {
	if spec == nil {
		return errors.New("vz: no machine spec")
	}
	if spec.Name == "" {
		return errors.New("vz: the machine has no name")
	}
	if spec.CPUs < 1 {
		return fmt.Errorf("vz: %d CPUs requested; at least 1 is needed", spec.CPUs)
	}
	if spec.MemoryBytes == 0 || spec.MemoryBytes%mib != 0 {
		return fmt.Errorf("vz: memory size %d bytes is not a positive multiple of 1 MiB", spec.MemoryBytes)
	}
	for what, f := range map[string]*os.File{"kernel": spec.Kernel, "initramfs": spec.Initramfs} {
		if err := regularFile(f); err != nil {
			return fmt.Errorf("vz: %s: %w", what, err)
		}
	}
	if spec.Console == nil {
		return errors.New("vz: no console log file")
	}
	if fi, err := os.Stat(spec.RunDir); err != nil || !fi.IsDir() {
		return fmt.Errorf("vz: run directory %q is missing", spec.RunDir)
	}
	if spec.StateDir != "" {
		if fi, err := os.Stat(spec.StateDir); err != nil || !fi.IsDir() {
			return fmt.Errorf("vz: state directory %q is missing", spec.StateDir)
		}
	}
	seen := map[string]bool{}
	for i, d := range spec.Disks {
		if err := regularFile(d.File); err != nil {
			return fmt.Errorf("vz: disk %d: %w", i, err)
		}
		if err := checkSerial(d.Serial); err != nil {
			return fmt.Errorf("vz: disk %d (%s): %w", i, d.File.Name(), err)
		}
		if seen[d.Serial] {
			return fmt.Errorf("vz: two disks have serial %q", d.Serial)
		}
		seen[d.Serial] = true
	}
	return nil
}

// regularFile checks that f is an open regular file.
func regularFile(f *os.File) error {
	if f == nil {
		return errors.New("no file given")
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", f.Name())
	}
	return nil
}

// frameworkPath returns the path the Virtualization framework is given
// for f, whose APIs for disk images and boot files take only paths:
// f.Name(), after checking that it still names f (layout.SameFile), so
// that a link or file swapped in after the supervisor opened f is refused.
// Callers check again once the framework has opened it.
func frameworkPath(f *os.File) (string, error) {
	if !layout.SameFile(f, f.Name()) {
		return "", fmt.Errorf("vz: %s changed since machinetop opened it (a link or another file was put in its place): remove it: %w", f.Name(), layout.ErrUnsafe)
	}
	return f.Name(), nil
}

// checkSerial reports whether s can be a block device identifier: 1 to
// MaxSerialLen printable ASCII characters.
func checkSerial(s string) error {
	if s == "" {
		return errors.New("empty serial: the guest finds disks by serial")
	}
	if len(s) > MaxSerialLen {
		return fmt.Errorf("serial %q is longer than %d bytes", s, MaxSerialLen)
	}
	for _, r := range s {
		if r < 0x20 || r > 0x7e {
			return fmt.Errorf("serial %q is not printable ASCII", s)
		}
	}
	return nil
}

// commandLine returns the kernel command line for cmdline: the console on
// the virtio console first, so that a console= in cmdline still wins.
func commandLine(cmdline string) string {
	return strings.TrimSpace("console=" + ConsoleDevice + " " + cmdline)
}

// stateDir is where per-machine identity is kept.
func stateDir(spec *driver.Spec) string {
	if spec.StateDir != "" {
		return spec.StateDir
	}
	return spec.RunDir
}

// loadOrCreate returns the contents of dir/name, first writing create's
// result there (atomically, mode 0600) when the file does not exist. The
// file is read with layout.OpenBeneath: a link planted in its place is
// refused, not followed.
func loadOrCreate(dir, name string, create func() ([]byte, error)) ([]byte, error) {
	f, err := layout.OpenBeneath(dir, name, os.O_RDONLY, 0)
	if err == nil {
		defer f.Close()
		return io.ReadAll(f)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	b, err := create()
	if err != nil {
		return nil, err
	}
	if err := renameio.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
		return nil, err
	}
	return b, nil
}

// macAddress returns the MAC address of the machine's network device, kept
// in dir/MACFile. On first use it is derived from the machine name and dir:
// a unicast, locally administered address, so that macOS's NAT (vmnet)
// hands the machine the same DHCP lease on every boot.
func macAddress(dir, name string) (net.HardwareAddr, error) {
	b, err := loadOrCreate(dir, MACFile, func() ([]byte, error) {
		sum := sha256.Sum256([]byte("machinetop vz mac\x00" + name + "\x00" + dir))
		hw := net.HardwareAddr(sum[:6])
		hw[0] = hw[0]&^0x01 | 0x02 // unicast, locally administered
		return []byte(hw.String() + "\n"), nil
	})
	if err != nil {
		return nil, fmt.Errorf("vz: MAC address: %w", err)
	}
	hw, err := net.ParseMAC(strings.TrimSpace(string(b)))
	if err != nil || len(hw) != 6 || hw[0]&0x01 != 0 {
		return nil, fmt.Errorf("vz: %s holds no unicast Ethernet address (%q): delete it to make a new one", filepath.Join(dir, MACFile), b)
	}
	return hw, nil
}

// arm64 Linux Image header (the kernel's Documentation/arch/arm64/booting.rst)
// and the EFI zboot header (drivers/firmware/efi/libstub/zboot-header.S).
var (
	arm64Magic = []byte("ARM\x64") // at offset 0x38 of an Image
	gzipMagic  = []byte{0x1f, 0x8b}
)

// linuxKernel returns a kernel path the framework can boot, for the
// kernel file f. On amd64 it is f's own (frameworkPath). On arm64 the
// framework boots only an uncompressed Image, so a gzip-compressed Image
// (vmlinuz) or a gzip EFI zboot image is unpacked from f into runDir
// first; any other format is an error.
func linuxKernel(f *os.File, runDir, goarch string) (string, error) {
	if goarch != "arm64" {
		return frameworkPath(f)
	}
	path := f.Name()
	hdr := make([]byte, 64)
	n, err := f.ReadAt(hdr, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("vz: kernel %s: %w", path, err)
	}
	if n == 0 {
		return "", fmt.Errorf("vz: kernel %s is too short to be a Linux image", path)
	}
	var payload io.Reader
	switch {
	case n == len(hdr) && bytes.Equal(hdr[0x38:0x3c], arm64Magic):
		return frameworkPath(f)
	case n >= 2 && bytes.Equal(hdr[:2], gzipMagic):
		payload = io.NewSectionReader(f, 0, 1<<62)
	case n == len(hdr) && string(hdr[:2]) == "MZ" && string(hdr[4:8]) == "zimg":
		off := binary.LittleEndian.Uint32(hdr[8:12])
		size := binary.LittleEndian.Uint32(hdr[12:16])
		comp, _, _ := strings.Cut(string(hdr[24:0x38]), "\x00")
		if comp != "gzip" {
			return "", fmt.Errorf("vz: kernel %s is an EFI zboot image compressed with %q; only gzip can be unpacked (use an uncompressed arm64 Image)", path, comp)
		}
		payload = io.NewSectionReader(f, int64(off), int64(size))
	default:
		return "", fmt.Errorf("vz: kernel %s is not an arm64 Linux Image (no ARM64 magic at 0x38) nor gzip-compressed", path)
	}
	zr, err := gzip.NewReader(payload)
	if err != nil {
		return "", fmt.Errorf("vz: unpacking kernel %s: %w", path, err)
	}
	out := filepath.Join(runDir, kernelFile)
	tmp, err := os.CreateTemp(runDir, "."+kernelFile+".*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	_, err = io.Copy(tmp, zr)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("vz: unpacking kernel %s: %w", path, err)
	}
	if err := checkArm64Image(tmp.Name()); err != nil {
		return "", fmt.Errorf("vz: kernel %s unpacked to no arm64 Image: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", err
	}
	return out, nil
}

func checkArm64Image(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	hdr := make([]byte, 64)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return errors.New("too short")
	}
	if !bytes.Equal(hdr[0x38:0x3c], arm64Magic) {
		return errors.New("no ARM64 magic at 0x38")
	}
	return nil
}
