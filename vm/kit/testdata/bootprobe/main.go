// Command bootprobe is a stand-in /init for the kit's boot test: it loads
// the modules the kit lists, reports on the console which virtio ports and
// block devices appeared, formats and checks the disk with serial mt-root
// using the kit's e2fsprogs, and powers the machine off. Every line the
// test reads starts with "BOOTPROBE ".
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func say(format string, args ...any) {
	fmt.Printf("BOOTPROBE "+format+"\n", args...)
}

func main() {
	defer poweroff()
	for _, m := range []struct{ src, dst, typ string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
	} {
		if err := unix.Mount(m.src, m.dst, m.typ, 0, ""); err != nil {
			say("error mount %s: %v", m.dst, err)
		}
	}
	order, err := os.ReadFile("/modules/order")
	if err != nil {
		say("error %v", err)
		return
	}
	loaded := 0
	for _, name := range strings.Fields(string(order)) {
		if err := load("/modules/" + name); err != nil {
			say("error load %s: %v", name, err)
			continue
		}
		loaded++
	}
	say("modules-ok %d", loaded)

	// Port names arrive from the host in control messages after the driver
	// binds, and disks may be added just after probe returns: poll briefly.
	deadline := time.Now().Add(10 * time.Second)
	var ports, disks []string
	for {
		ports, disks = scan()
		if (len(ports) > 0 && len(disks) > 0) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, p := range ports {
		say("port %s", p)
	}
	for _, d := range disks {
		say("block %s", d)
	}
	tools(disks)
	if up, err := os.ReadFile("/proc/uptime"); err == nil {
		say("uptime %s", strings.Fields(string(up))[0])
	}
	say("done")
}

func load(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if err == unix.EEXIST {
		return nil
	}
	return err
}

// scan returns "DEV NAME" for named virtio ports and "DEV serial=SERIAL"
// for virtio disks.
func scan() (ports, disks []string) {
	dirs, _ := filepath.Glob("/sys/class/virtio-ports/*")
	for _, d := range dirs {
		name, _ := os.ReadFile(filepath.Join(d, "name"))
		if n := strings.TrimSpace(string(name)); n != "" {
			ports = append(ports, filepath.Base(d)+" "+n)
		}
	}
	blocks, _ := os.ReadDir("/sys/block")
	for _, b := range blocks {
		serial, _ := os.ReadFile(filepath.Join("/sys/block", b.Name(), "serial"))
		disks = append(disks, fmt.Sprintf("%s serial=%s", b.Name(), strings.TrimSpace(string(serial))))
	}
	return ports, disks
}

func poweroff() {
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		say("error poweroff: %v", err)
	}
	// Returning from /init would panic the kernel; with panic=-1 and
	// QEMU's -no-reboot that also ends the machine.
	select {}
}

// tools runs the kit's mke2fs and then e2fsck -fn on the disk with serial
// mt-root, as the guest's /init does, and reports "mkfs-ok" and "fsck-ok".
func tools(disks []string) {
	dev := ""
	for _, d := range disks {
		if name, serial, _ := strings.Cut(d, " "); serial == "serial=mt-root" {
			dev = "/dev/" + name
		}
	}
	if dev == "" {
		say("error no disk with serial mt-root")
		return
	}
	run := func(what string, argv ...string) bool {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = []string{"LD_LIBRARY_PATH=/tools/lib", "PATH=/tools/bin"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			say("error %s: %v: %q", what, err, out)
			return false
		}
		return true
	}
	if run("mke2fs", "/tools/bin/mke2fs", "-t", "ext4", "-q", "-F", "-E", "nodiscard", dev) {
		say("mkfs-ok")
		if run("e2fsck", "/tools/bin/e2fsck", "-fn", dev) {
			say("fsck-ok")
		}
	}
}
