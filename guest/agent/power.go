//go:build linux

package agent

import (
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// sigRTMin is the first real-time signal as glibc and systemd number it
// (the kernel's 32 and 33 are reserved by glibc's threads).
const sigRTMin = 34

// PowerOff powers the guest off (reboot false) or reboots it. When the
// agent is PID 1 it does so itself and does not return; otherwise it asks
// PID 1: systemd gets SIGRTMIN+4 (poweroff.target) or SIGRTMIN+5
// (reboot.target), see systemd(1); busybox init gets SIGUSR2 (poweroff) or
// SIGTERM (reboot), see busybox's init.c; any other init is asked by running
// poweroff or reboot from PATH. It returns the error of that request.
func PowerOff(reboot bool) error {
	if os.Getpid() == 1 {
		haltAsPID1(reboot)
	}
	exe := pid1Exe()
	base := filepath.Base(exe)
	switch {
	case strings.Contains(base, "systemd"):
		sig := sigRTMin + 4
		if reboot {
			sig = sigRTMin + 5
		}
		return unix.Kill(1, unix.Signal(sig))
	case base == "busybox":
		sig := unix.SIGUSR2
		if reboot {
			sig = unix.SIGTERM
		}
		return unix.Kill(1, sig)
	}
	name := "poweroff"
	if reboot {
		name = "reboot"
	}
	path, err := lookPath(name, DefaultPath)
	if err != nil {
		return err
	}
	out, err := exec.Command(path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", name, err, out)
	}
	return nil
}

// haltAsPID1 stops every process (SIGTERM, up to 3 s, then SIGKILL),
// flushes and remounts / read-only, and powers off or reboots with
// reboot(2). It only returns if reboot(2) fails, which it logs.
func haltAsPID1(reboot bool) {
	log.Printf("stopping all processes")
	unix.Kill(-1, unix.SIGTERM)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && userProcesses() > 0 {
		time.Sleep(50 * time.Millisecond)
	}
	unix.Kill(-1, unix.SIGKILL)
	time.Sleep(100 * time.Millisecond)
	unix.Sync()
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		log.Printf("remounting / read-only: %v", err)
	}
	unix.Sync()
	cmd := unix.LINUX_REBOOT_CMD_POWER_OFF
	if reboot {
		cmd = unix.LINUX_REBOOT_CMD_RESTART
	}
	if err := unix.Reboot(cmd); err != nil {
		log.Printf("reboot(2): %v", err)
	}
}

// userProcesses counts live processes other than this one; kernel threads
// and zombies have an empty /proc/PID/cmdline and are not counted.
func userProcesses() int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	self := os.Getpid()
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && len(b) > 0 {
			n++
		}
	}
	return n
}
