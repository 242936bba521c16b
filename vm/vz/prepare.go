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

// Features describes the vz backend: virtio-fs shares, no SSH forwarding
// yet, VMs that end with their supervisor, a traditional balloon (no free
// page reporting), a virtio socket for the agent, arm64 guests on Apple
// silicon, and guest addresses from the framework's NAT by DHCP.
func Features() driver.Features {
	return driver.Features{
		ShareFS: driver.ShareVirtiofs,
		Balloon: true,
		Vsock:   true,
		Archs:   []string{"arm64"},
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
	for what, p := range map[string]string{"kernel": spec.Kernel, "initramfs": spec.Initramfs} {
		if err := regularFile(p); err != nil {
			return fmt.Errorf("vz: %s: %w", what, err)
		}
	}
	if spec.ConsoleLog == "" {
		return errors.New("vz: no console log path")
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
		if err := regularFile(d.Path); err != nil {
			return fmt.Errorf("vz: disk %d: %w", i, err)
		}
		if err := checkSerial(d.Serial); err != nil {
			return fmt.Errorf("vz: disk %d (%s): %w", i, d.Path, err)
		}
		if seen[d.Serial] {
			return fmt.Errorf("vz: two disks have serial %q", d.Serial)
		}
		seen[d.Serial] = true
	}
	return nil
}

func regularFile(p string) error {
	if p == "" {
		return errors.New("no path given")
	}
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", p)
	}
	return nil
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

// loadOrCreate returns the contents of path, first writing create's result
// there (atomically, mode 0600) when the file does not exist.
func loadOrCreate(path string, create func() ([]byte, error)) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return b, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	b, err = create()
	if err != nil {
		return nil, err
	}
	if err := renameio.WriteFile(path, b, 0o600); err != nil {
		return nil, err
	}
	return b, nil
}

// macAddress returns the MAC address of the machine's network device, kept
// in dir/MACFile. On first use it is derived from the machine name and dir:
// a unicast, locally administered address, so that macOS's NAT (vmnet)
// hands the machine the same DHCP lease on every boot.
func macAddress(dir, name string) (net.HardwareAddr, error) {
	b, err := loadOrCreate(filepath.Join(dir, MACFile), func() ([]byte, error) {
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

// linuxKernel returns a kernel path the framework can boot. On amd64 it is
// path itself. On arm64 the framework boots only an uncompressed Image, so
// a gzip-compressed Image (vmlinuz) or a gzip EFI zboot image is unpacked to
// runDir first; any other format is an error.
func linuxKernel(path, runDir, goarch string) (string, error) {
	if goarch != "arm64" {
		return path, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("vz: kernel: %w", err)
	}
	defer f.Close()
	hdr := make([]byte, 64)
	n, err := io.ReadFull(f, hdr)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return "", fmt.Errorf("vz: kernel %s is too short to be a Linux image", path)
	}
	var payload io.Reader
	switch {
	case n == len(hdr) && bytes.Equal(hdr[0x38:0x3c], arm64Magic):
		return path, nil
	case n >= 2 && bytes.Equal(hdr[:2], gzipMagic):
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return "", err
		}
		payload = f
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
