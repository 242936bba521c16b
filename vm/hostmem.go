package vm

import (
	"context"
	"fmt"
	"time"

	"github.com/shirou/gopsutil/v4/process"

	"github.com/machinetop/machinetop/vm/control"
)

// HostHeld returns the host memory held by process pid, bytes: its
// resident set size (gopsutil: VmRSS of /proc/PID/status on Linux, the
// task's resident size on macOS); 0 when pid is 0 or the process cannot be
// read. For a machine that is the VM process on QEMU (Machine.HeldPID).
// On vz the VM runs inside the supervisor, whose resident size is what is
// measured; macOS may account some of a guest's memory to the
// Virtualization framework's own service process instead, which this
// does not see.
func HostHeld(pid int) uint64 {
	if pid <= 0 {
		return 0
	}
	p, err := process.NewProcess(int32(pid))
	if err != nil {
		return 0
	}
	mi, err := p.MemoryInfo()
	if err != nil {
		return 0
	}
	return mi.RSS
}

// HeldPID is the host process whose memory is the machine's: the VM
// process (QEMU), else the supervisor (vz, where the VM runs in it); 0
// when the machine is not running.
func (m *Machine) HeldPID() int {
	if m.VMPID > 0 {
		return m.VMPID
	}
	return m.SupervisorPID
}

// Settle timing: how often SettleHeld looks, and how long the figure
// must stay within settleSlack for it to count as settled.
const (
	settlePoll   = 250 * time.Millisecond
	settleStable = 2500 * time.Millisecond
	settleSlack  = 4 * MiB
)

// SettleHeld waits until the host memory of pid (HostHeld) has stopped
// shrinking: free page reporting (virtio-balloon) hands freed guest pages
// to the host a few seconds after the guest frees them (the kernel
// reports every 2 s). It returns the last figure once it has not dropped
// by more than 4 MiB for 2.5 s, or when ctx ends, and when it reached
// that level (the last drop seen; the 2.5 s that confirm it come after).
func SettleHeld(ctx context.Context, pid int) (held uint64, reached time.Time) {
	low := HostHeld(pid)
	since := time.Now()
	t := time.NewTicker(settlePoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return HostHeld(pid), since
		case <-t.C:
		}
		cur := HostHeld(pid)
		if cur+settleSlack < low {
			low, since = cur, time.Now()
		} else if time.Since(since) >= settleStable {
			return cur, since
		}
	}
}

// ReclaimSummary is the one line `machine reclaim` prints and the
// dashboard shows for r: "dev: host-held 2.4G → 610M (guest used 300M,
// cache 1.9G → 140M), back in 6.2 s", or that there was nothing to give
// back.
func ReclaimSummary(name string, r *control.ReclaimReport) string {
	var used, cb, ca uint64
	if g := r.Guest; g != nil {
		used, cb, ca = g.After.Used, g.Before.Cache, g.After.Cache
		if g.Method == "" {
			return fmt.Sprintf("%s: nothing to give back: its page cache (%s) is within the floor kept for it; host-held %s (guest used %s)",
				name, FormatSize(cb), FormatSize(r.HostAfter), FormatSize(used))
		}
	}
	line := fmt.Sprintf("%s: host-held %s → %s (guest used %s, cache %s → %s)", name,
		FormatSize(r.HostBefore), FormatSize(r.HostAfter), FormatSize(used), FormatSize(cb), FormatSize(ca))
	if r.BackMillis > 0 {
		line += fmt.Sprintf(", back in %.1f s", float64(r.BackMillis)/1000)
	}
	return line
}
