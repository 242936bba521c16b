package kit

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/cavaliergopher/cpio"
	"github.com/machinetop/machinetop/guest/proto"
)

// initramfsDirs are created before anything else: the kernel's unpacker
// does not make parent directories, and /init expects its mount points.
var initramfsDirs = []struct {
	name string
	mode cpio.FileMode
}{
	{"dev", 0o755},
	{"proc", 0o555},
	{"sys", 0o555},
	{"newroot", 0o755},
	{"etc", 0o755},
	{"tmp", 0o1777},
	{strings.TrimPrefix(proto.ModulesDir, "/"), 0o755},
}

// toolDirs returns the directories the tool entries need that
// initramfsDirs lacks, parents first.
func toolDirs(tools []toolEntry) []string {
	have := map[string]bool{}
	for _, d := range initramfsDirs {
		have[d.name] = true
	}
	var out []string
	for _, e := range tools {
		var chain []string
		for d := path.Dir(e.name); d != "." && d != "/"; d = path.Dir(d) {
			chain = append(chain, d)
		}
		for i := len(chain) - 1; i >= 0; i-- {
			if !have[chain[i]] {
				have[chain[i]] = true
				out = append(out, chain[i])
			}
		}
	}
	return out
}

// initramfsNodes are the device nodes the archive holds, with their
// numbers from Documentation/admin-guide/devices.txt. The kernel opens
// /dev/console for /init's stdin, stdout and stderr before /init could
// mount devtmpfs. When the console's device does not exist yet (hvc0,
// whose driver virtio_console is a module) /init starts without them, and
// the Go runtime then opens /dev/null in their place before main runs
// (runtime.checkfds), or dies: so both nodes must be in the archive.
var initramfsNodes = []struct {
	name         string
	mode         cpio.FileMode
	major, minor int
}{
	{"dev/console", cpio.TypeChar | 0o600, 5, 1},
	{"dev/null", cpio.TypeChar | 0o666, 1, 3},
}

// writeInitramfs writes an uncompressed newc cpio archive (the kernel's
// early-userspace buffer format) holding the boot contract's layout: /init
// (mode 0755), /modules/<file>.ko, /modules/order, /modules/version, the
// tools (selectTools), the directories /dev /proc /sys /newroot /etc /tmp
// and those the tools need, and the /dev/console and /dev/null nodes. All entries are
// owned by root with modification time 0, so the same inputs give the
// same bytes.
func writeInitramfs(out io.Writer, guest []byte, release string, mods []*module, tools []toolEntry) error {
	bw := bufio.NewWriterSize(out, 1<<20)
	w := cpio.NewWriter(bw)
	for _, d := range initramfsDirs {
		if err := w.WriteHeader(&cpio.Header{Name: d.name, Mode: cpio.TypeDir | d.mode, Links: 2}); err != nil {
			return err
		}
	}
	for _, d := range toolDirs(tools) {
		if err := w.WriteHeader(&cpio.Header{Name: d, Mode: cpio.TypeDir | 0o755, Links: 2}); err != nil {
			return err
		}
	}
	// The cpio package has no field for a node's device number (rdevmajor,
	// rdevminor), so these headers are written by hand between entries;
	// Flush first puts the stream on the 4-byte boundary a header starts at.
	if err := w.Flush(); err != nil {
		return err
	}
	for i, n := range initramfsNodes {
		if err := writeNewcNode(bw, 1<<30+int64(i), n.name, n.mode, n.major, n.minor); err != nil {
			return err
		}
	}
	file := func(name string, mode cpio.FileMode, data []byte) error {
		if err := w.WriteHeader(&cpio.Header{Name: name, Mode: cpio.TypeReg | mode, Size: int64(len(data)), Links: 1}); err != nil {
			return fmt.Errorf("initramfs %s: %w", name, err)
		}
		if _, err := w.Write(data); err != nil {
			return fmt.Errorf("initramfs %s: %w", name, err)
		}
		return nil
	}
	if err := file("init", 0o755, guest); err != nil {
		return err
	}
	var order strings.Builder
	for _, m := range mods {
		order.WriteString(m.ko + "\n")
	}
	modDir := strings.TrimPrefix(proto.ModulesDir, "/")
	if err := file(strings.TrimPrefix(proto.ModulesVer, "/"), 0o644, []byte(release+"\n")); err != nil {
		return err
	}
	if err := file(strings.TrimPrefix(proto.ModulesOrder, "/"), 0o644, []byte(order.String())); err != nil {
		return err
	}
	for _, m := range mods {
		if err := file(path.Join(modDir, m.ko), 0o644, m.data); err != nil {
			return err
		}
	}
	for _, e := range tools {
		if err := file(e.name, cpio.FileMode(e.mode), e.data); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// writeNewcNode writes one newc header for an entry without data (here a
// device node): the magic "070701", then thirteen 8-digit hex fields (ino,
// mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
// rdevminor, namesize, check), the NUL-terminated name, and zero padding to
// a multiple of four bytes.
func writeNewcNode(w io.Writer, ino int64, name string, mode cpio.FileMode, rdevMajor, rdevMinor int) error {
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, uint32(mode), 0, 0, 1, 0, 0, 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	b := []byte(hdr + name + "\x00")
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	_, err := w.Write(b)
	return err
}
