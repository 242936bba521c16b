//go:build linux

package agent

import (
	"context"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/machinetop/machinetop/guest/mounts"
)

// reaper collects the exit status of every child of PID 1: orphans
// re-parented to it are discarded, processes started by exec are handed
// their status. Both paths use wait4(2), so exec must not call cmd.Wait.
type reaper struct {
	mu      sync.Mutex
	waiting map[int]chan syscall.WaitStatus
}

func newReaper() *reaper {
	return &reaper{waiting: map[int]chan syscall.WaitStatus{}}
}

// start starts cmd and registers its PID before the reaper can collect it.
func (r *reaper) start(cmd *exec.Cmd) (<-chan syscall.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ch := make(chan syscall.WaitStatus, 1)
	r.waiting[cmd.Process.Pid] = ch
	return ch, nil
}

// reap collects every child that has exited.
func (r *reaper) reap() {
	for {
		r.mu.Lock()
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid > 0 {
			if ch, ok := r.waiting[pid]; ok {
				ch <- ws
				delete(r.waiting, pid)
			}
		}
		r.mu.Unlock()
		if pid <= 0 || err != nil {
			return
		}
	}
}

// RunPID1 runs the agent as the guest's PID 1 when the image has no init:
// it mounts /dev/pts, /dev/shm, /run and cgroup2 on /sys/fs/cgroup if they
// are not mounted, reaps
// zombies on SIGCHLD, powers off on SIGTERM, SIGUSR2 or SIGPWR, reboots on
// SIGINT (which the kernel sends for ctrl-alt-del once reboot(2) was told
// LINUX_REBOOT_CMD_CAD_OFF), and serves the agent channels (see Run). It
// does not return.
func RunPID1() {
	mountIfMissing("devpts", "/dev/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5")
	mountIfMissing("tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777")
	if err := mounts.Run(); err != nil {
		log.Printf("/run: %v", err)
	}
	// cgroup v2, as systemd mounts it: the idle reclaim's memory.reclaim.
	mountIfMissing("cgroup2", CgroupRoot, "cgroup2", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_RELATIME, "")
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF); err != nil {
		log.Printf("disabling ctrl-alt-del: %v", err)
	}

	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, unix.SIGCHLD, unix.SIGTERM, unix.SIGUSR2, unix.SIGPWR, unix.SIGINT)
	r := newReaper()
	srv := &Server{reaper: r, CommandCgroup: CommandCgroup}
	srv.Shutdown = func(reboot bool) error {
		haltAsPID1(reboot)
		return nil
	}
	go Run(context.Background(), srv)
	r.reap() // children inherited from /init
	for sig := range sigs {
		switch sig {
		case unix.SIGCHLD:
			r.reap()
		case unix.SIGINT:
			log.Printf("ctrl-alt-del: rebooting")
			haltAsPID1(true)
		default:
			log.Printf("%v: powering off", sig)
			haltAsPID1(false)
		}
	}
}

// mountIfMissing mounts fstype at dir unless something is mounted there,
// logging a failure.
func mountIfMissing(src, dir, fstype string, flags uintptr, data string) {
	if err := mounts.MountIfMissing(src, dir, fstype, flags, data); err != nil {
		log.Print(err)
	}
}
