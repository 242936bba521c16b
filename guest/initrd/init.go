//go:build linux

// Package initrd is the guest binary's life as the initramfs /init: it
// prepares the machine's root disk (formatting it and unpacking the image
// on first boot, checking it before every mount), configures hostname and
// network (by DHCP), switches to the root disk and hands
// PID 1 to the image's init (with the agent started beside it) or to the
// agent itself. The boot contract is in package proto (boot.go).
package initrd

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/machinetop/machinetop/guest/mounts"
	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/guest/unpack"
)

// newRoot is where the root disk is mounted before the switch.
const newRoot = "/newroot"

// diskWait is how long /init waits for a disk or network interface to
// appear after the modules were loaded.
const diskWait = 15 * time.Second

// Main runs the initramfs /init. It does not return: it execs the image's
// init or the agent, or powers the machine off after a fatal error.
func Main() {
	mountEarly()
	early := logEarly()
	params := cmdline()
	debug := params[proto.ParamDebug] == "1"
	start := time.Now()

	loadModules(debug)
	raiseInotifyLimits()
	// The console may be a device whose driver is a module (hvc0 needs
	// virtio_console), so it is opened only now.
	logToConsole(early)

	rootDev, err := waitForDisk(proto.RootSerial)
	if err != nil {
		fatal("root disk: %v", err)
	}
	diskCheck, err := prepareRootDisk(rootDev)
	if err != nil {
		fatal("root disk: %v", err)
	}
	must(os.MkdirAll(newRoot, 0o755))
	// mke2fs left inode tables for lazy initialisation (the blank disk
	// reads as zeros); noinit_itable stops the kernel zeroing them in the
	// background, which would fill the sparse disk file and burn CPU
	// under TCG.
	if err := unix.Mount(rootDev, newRoot, "ext4", 0, "noinit_itable"); err != nil {
		fatal("mounting %s: %v", rootDev, err)
	}
	growRoot(rootDev)
	_, err = os.Stat(newRoot + proto.PopulatedMarker)
	firstBoot := err != nil
	if firstBoot {
		populate()
	}

	name := params[proto.ParamHostname]
	if name != "" {
		setHostname(name)
	}
	if err := configureNetwork(name, firstBoot); err != nil {
		log.Printf("network: %v", err)
	}
	if err := installAgent(); err != nil {
		fatal("installing the agent: %v", err)
	}
	gcfg, cfgErr := readGuestConfig()
	if err := switchRoot(); err != nil {
		fatal("switching root: %v", err)
	}
	report := &proto.SetupReport{Disk: diskCheck}
	if cfgErr != nil {
		report.Problems = append(report.Problems, "machine configuration: "+cfgErr.Error())
	}
	setupHost(gcfg, report)
	log.Printf("root ready after %v", time.Since(start).Round(time.Millisecond))

	// /run mounted now, as the image's init would mount it, lets the
	// agent watch there for the init's sockets from the start (package
	// guest/ready).
	if err := mounts.Run(); err != nil {
		log.Printf("/run: %v", err)
	}
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=linux"}
	if _, err := os.Stat("/sbin/init"); err == nil {
		// Stat follows /sbin/init -> /lib/systemd/systemd inside the
		// new root, which is now "/".
		startAgent(env)
		log.Printf("starting /sbin/init")
		err := syscall.Exec("/sbin/init", append([]string{"/sbin/init"}, os.Args[1:]...), env)
		fatal("exec /sbin/init: %v", err)
	}
	log.Printf("no /sbin/init: the agent stays PID 1")
	err = syscall.Exec(proto.AgentInstallPath, []string{proto.AgentInstallPath, "pid1"}, env)
	fatal("exec %s: %v", proto.AgentInstallPath, err)
}

// InotifyLimits are the fs.inotify sysctls (proc(5)) /init sets at every
// boot, as WSL sets them, so that watchers of big trees (a dev server,
// an IDE) get a watch per directory: the kernel's defaults are 8192
// watches and 128 instances per user. An image's sysctl.d, applied later
// by its init, may change them.
var InotifyLimits = map[string]string{
	"/proc/sys/fs/inotify/max_user_watches":   "524288",
	"/proc/sys/fs/inotify/max_user_instances": "8192",
}

// raiseInotifyLimits writes InotifyLimits, logging a failure.
func raiseInotifyLimits() {
	for f, v := range InotifyLimits {
		if err := os.WriteFile(f, []byte(v+"\n"), 0o644); err != nil {
			log.Printf("inotify limits: %v", err)
		}
	}
}

// mountEarly mounts the kernel filesystems /init needs; the image's init
// finds them already mounted after the switch and keeps them.
func mountEarly() {
	for _, m := range []struct {
		src, dir, fstype string
		flags            uintptr
		data             string
	}{
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"},
	} {
		os.MkdirAll(m.dir, 0o755)
		if err := unix.Mount(m.src, m.dir, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			// No console yet; the kernel log is all there is.
			kmsg(fmt.Sprintf("mount %s: %v", m.dir, err))
		}
	}
}

// consoleWait bounds the wait for /dev/console to open once the modules
// are loaded (a virtio console registers when its device is probed).
const consoleWait = 2 * time.Second

// console is /dev/console when opening it gave one of fds 0-2.
var console *os.File

// earlyLog keeps the log lines written before the console is open, and
// copies each to the kernel log.
type earlyLog struct{ buf bytes.Buffer }

func (e *earlyLog) Write(p []byte) (int, error) {
	kmsg(strings.TrimSuffix(strings.TrimPrefix(string(p), "machinetop-init: "), "\n"))
	return e.buf.Write(p)
}

// logEarly sends the log, with the "machinetop-init: " prefix, to a
// buffer that logToConsole replays, and to the kernel log.
func logEarly() *earlyLog {
	e := &earlyLog{}
	log.SetFlags(0)
	log.SetPrefix("machinetop-init: ")
	log.SetOutput(e)
	return e
}

// logToConsole makes /dev/console stdin, stdout and stderr (the kernel
// gives /init none when the console's device did not exist yet when it
// started /init), writes the early log lines there and sends the log
// there from now on. Without a console the log stays in the kernel log.
func logToConsole(early *earlyLog) {
	deadline := time.Now().Add(consoleWait)
	con, err := os.OpenFile("/dev/console", os.O_RDWR, 0)
	for err != nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		con, err = os.OpenFile("/dev/console", os.O_RDWR, 0)
	}
	if err != nil {
		// The early log already went to the kernel log line by line,
		// and keeps going there.
		kmsg(fmt.Sprintf("opening /dev/console: %v", err))
		return
	}
	fd := int(con.Fd())
	for i := 0; i < 3; i++ {
		if i != fd {
			unix.Dup2(fd, i)
		}
	}
	if fd > 2 {
		con.Close()
	} else {
		console = con // it is one of fds 0-2 now: never let it be collected
	}
	os.Stderr.Write(early.buf.Bytes())
	log.SetOutput(os.Stderr)
}

// kmsg writes a line to the kernel log (/dev/kmsg).
func kmsg(msg string) {
	if f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0); err == nil {
		fmt.Fprintf(f, "machinetop-init: %s\n", msg)
		f.Close()
	}
}

// cmdline parses /proc/cmdline into key=value pairs; a bare word maps to "".
func cmdline() map[string]string {
	b, _ := os.ReadFile("/proc/cmdline")
	out := map[string]string{}
	for _, w := range strings.Fields(string(b)) {
		k, v, _ := strings.Cut(w, "=")
		out[k] = v
	}
	return out
}

// loadModules loads the modules in proto.ModulesOrder with finit_module(2).
// A module already loaded (EEXIST) is fine; a failure is logged and the
// boot goes on.
func loadModules(debug bool) {
	f, err := os.Open(proto.ModulesOrder)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			log.Printf("modules: %v", err)
		}
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name := strings.TrimSpace(sc.Text())
		if name == "" || strings.HasPrefix(name, "#") {
			continue
		}
		mod, err := os.Open(filepath.Join(proto.ModulesDir, name))
		if err != nil {
			log.Printf("module %s: %v", name, err)
			continue
		}
		err = unix.FinitModule(int(mod.Fd()), "", 0)
		mod.Close()
		switch {
		case err == nil:
			if debug {
				log.Printf("loaded %s", name)
			}
		case errors.Is(err, unix.EEXIST):
		default:
			log.Printf("module %s: %v", name, err)
		}
	}
}

// waitForDisk returns /dev/vdX for the virtio disk whose serial
// (/sys/block/vdX/serial) is serial, waiting up to diskWait for it.
func waitForDisk(serial string) (string, error) { return findDisk(serial, diskWait) }

// ensureNode makes sure the block device node dev exists, creating it
// from sysDir/dev ("MAJOR:MINOR") when devtmpfs has not yet.
func ensureNode(dev, sysDir string) error {
	if _, err := os.Stat(dev); err == nil {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(sysDir, "dev"))
	if err != nil {
		return err
	}
	var major, minor uint32
	if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &major, &minor); err != nil {
		return err
	}
	err = unix.Mknod(dev, unix.S_IFBLK|0o660, int(unix.Mkdev(major, minor)))
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}

// populate unpacks the image disk (a tar stream) onto the root disk and
// then creates the populated marker.
func populate() {
	dev, err := waitForDisk(proto.ImageSerial)
	if err != nil {
		fatal("root disk is not populated and the image disk is missing: %v", err)
	}
	log.Printf("unpacking the image from %s", dev)
	start := time.Now()
	f, err := os.Open(dev)
	if err != nil {
		fatal("opening %s: %v", dev, err)
	}
	// The disk is the tar stream padded to whole sectors; tar's end
	// blocks stop the reader before the padding.
	total, _ := f.Seek(0, io.SeekEnd)
	f.Seek(0, io.SeekStart)
	pr := &progressReader{r: f, total: total, every: 2 * time.Second, last: time.Now()}
	st, err := unpack.Unpack(bufio.NewReaderSize(pr, 1<<20), newRoot, func(msg string) { log.Print(msg) })
	f.Close()
	if err != nil {
		fatal("%v", err)
	}
	marker := newRoot + proto.PopulatedMarker
	must(os.MkdirAll(filepath.Dir(marker), 0o755))
	must(os.WriteFile(marker, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644))
	unix.Sync()
	log.Printf("unpacked %d entries, %d MB in %v", st.Entries, st.Bytes>>20, time.Since(start).Round(time.Millisecond))
}

// progressReader logs how much of the image has been read, at most once
// per every: the host shows these console lines while `start` waits.
type progressReader struct {
	r           io.Reader
	done, total int64
	every       time.Duration
	last        time.Time
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if now := time.Now(); now.Sub(p.last) >= p.every && p.total > 0 {
		p.last = now
		log.Printf("unpacking the image: %d%% (%d of %d MB)", p.done*100/p.total, p.done>>20, p.total>>20)
	}
	return n, err
}

// setHostname sets the kernel hostname and the root disk's /etc/hostname.
func setHostname(name string) {
	if err := unix.Sethostname([]byte(name)); err != nil {
		log.Printf("hostname: %v", err)
	}
	if fi, err := os.Stat(newRoot + "/etc"); err == nil && fi.IsDir() {
		p := newRoot + "/etc/hostname"
		os.Remove(p) // it may be a symlink; never write through it
		if err := os.WriteFile(p, []byte(name+"\n"), 0o644); err != nil {
			log.Printf("hostname: %v", err)
		}
		// sudo and others resolve the hostname; without an entry they
		// print "unable to resolve host" on every call.
		hosts := newRoot + "/etc/hosts"
		old, _ := os.ReadFile(hosts)
		if fixed, changed := hostsWithName(string(old), name); changed {
			os.Remove(hosts) // never write through a symlink
			if err := os.WriteFile(hosts, []byte(fixed), 0o644); err != nil {
				log.Printf("hosts: %v", err)
			}
		}
	}
}

// hostsWithName returns hosts(5) content in which name resolves: unchanged
// when a line already names it, else with "127.0.1.1 name" added (the
// Debian convention for the machine's own name), and "localhost" lines
// added to an empty file.
func hostsWithName(content, name string) (string, bool) {
	for _, line := range strings.Split(content, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		for _, h := range f[min(1, len(f)):] {
			if h == name {
				return content, false
			}
		}
	}
	if strings.TrimSpace(content) == "" {
		content = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	}
	if !strings.HasSuffix(content, "\n") {
		content += "\n"
	}
	return content + "127.0.1.1\t" + name + "\n", true
}

// installAgent copies this binary to proto.AgentInstallPath on the root
// disk (mode 0755), replacing an older copy atomically. A copy with the
// same size and SHA-256 is left as it is, so a boot needs no free space on
// the root disk (a full disk still boots).
func installAgent() error {
	src, err := os.Open("/proc/self/exe")
	if err != nil {
		return err
	}
	defer src.Close()
	dst := newRoot + proto.AgentInstallPath
	if sameFile(src, dst) {
		if _, err := src.Seek(0, io.SeekStart); err != nil {
			return err
		}
		return os.Chmod(dst, 0o755)
	}
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := dst + ".new"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, src); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// sameFile reports whether the file at path has src's size and SHA-256
// (it reads src to its end).
func sameFile(src *os.File, path string) bool {
	fi, err := os.Lstat(path)
	si, serr := src.Stat()
	if err != nil || serr != nil || !fi.Mode().IsRegular() || fi.Size() != si.Size() {
		return false
	}
	hash := func(r io.Reader) []byte {
		h := sha256.New()
		if _, err := io.Copy(h, r); err != nil {
			return nil
		}
		return h.Sum(nil)
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	a, b := hash(src), hash(f)
	return a != nil && bytes.Equal(a, b)
}

// switchRoot moves /dev, /proc and /sys onto the root disk and makes it
// "/" (the classic switch_root: MS_MOVE onto the initramfs's rootfs, then
// chroot). The initramfs's files are not freed; they are small.
func switchRoot() error {
	for _, d := range []string{"/dev", "/proc", "/sys"} {
		target := newRoot + d
		os.MkdirAll(target, 0o755)
		if err := unix.Mount(d, target, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("moving %s: %w", d, err)
		}
	}
	if err := unix.Chdir(newRoot); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("moving %s to /: %w", newRoot, err)
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	return unix.Chdir("/")
}

// startAgent starts the installed agent in its own session, with its
// output on the console, before PID 1 becomes the image's init.
func startAgent(env []string) {
	out, err := os.OpenFile("/dev/console", os.O_WRONLY, 0)
	if err != nil {
		out, _ = os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	}
	null, _ := os.Open(os.DevNull)
	p, err := os.StartProcess(proto.AgentInstallPath, []string{proto.AgentInstallPath, "agent"}, &os.ProcAttr{
		Dir:   "/",
		Env:   env,
		Files: []*os.File{null, out, out},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		log.Printf("starting the agent: %v", err)
		return
	}
	p.Release()
	null.Close()
	out.Close()
}

func must(err error) {
	if err != nil {
		fatal("%v", err)
	}
}

// fatal logs the error and powers the machine off, so the host sees the
// machine stop instead of a kernel panic (PID 1 must not exit).
func fatal(format string, args ...any) {
	log.Printf("FATAL: "+format, args...)
	kmsg(fmt.Sprintf("FATAL: "+format, args...))
	unix.Sync()
	time.Sleep(time.Second)
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}
