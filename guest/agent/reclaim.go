//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/guest/reclaim"
)

// Files the reclaimer writes (Documentation/admin-guide/cgroup-v2.rst,
// memory.reclaim; Documentation/admin-guide/sysctl/vm.rst, drop_caches
// and compact_memory).
const (
	CgroupRoot    = "/sys/fs/cgroup"
	memoryReclaim = CgroupRoot + "/memory.reclaim"
	dropCaches    = "/proc/sys/vm/drop_caches"
	compactMemory = "/proc/sys/vm/compact_memory"
)

// userHZ is the unit of /proc/stat's times (USER_HZ, fixed at 100 in the
// kernel's ABI).
const userHZ = 100

// reclaimer runs the idle reclaim policy of package guest/reclaim against
// the real guest: it samples /proc every reclaim.Interval and applies the
// policy's actions. Its methods are safe for concurrent use.
type reclaimer struct {
	// mode is the policy's mode, readable without mu (metrics do not
	// wait for a reclaim in progress).
	mode atomic.Value // reclaim.Mode

	mu     sync.Mutex
	policy *reclaim.Policy
	// prevCPU and prevSelf are the previous sample's /proc/stat and the
	// agent's own CPU time (ticks).
	prevCPU  *cpuSample
	prevSelf uint64
}

// reclaimState returns the server's reclaimer, made on first use in
// reclaim.DefaultMode.
func (s *Server) reclaimState() *reclaimer {
	s.reclaimOnce.Do(func() {
		s.reclaim = &reclaimer{policy: reclaim.New(reclaim.DefaultMode, haveMemoryReclaim())}
		s.reclaim.mode.Store(reclaim.DefaultMode)
	})
	return s.reclaim
}

// haveMemoryReclaim reports whether the root cgroup has memory.reclaim
// (cgroup v2 mounted at CgroupRoot, kernel 5.19 or later).
func haveMemoryReclaim() bool {
	return unix.Access(memoryReclaim, unix.W_OK) == nil
}

// runReclaim runs the idle reclaim policy until ctx ends.
func (s *Server) runReclaim(ctx context.Context) {
	r := s.reclaimState()
	t := time.NewTicker(reclaim.Interval)
	defer t.Stop()
	r.tick() // the first sample: a baseline
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.tick()
		}
	}
}

// tick takes one sample and applies the policy's action.
func (r *reclaimer) tick() {
	r.mu.Lock()
	defer r.mu.Unlock()
	smp, ok := r.sample()
	if !ok {
		return
	}
	r.policy.SetHaveReclaim(haveMemoryReclaim())
	a := r.policy.Step(smp)
	if a.Kind == reclaim.None {
		return
	}
	before := smp.Cache
	if err := apply(a); err != nil {
		log.Printf("reclaim: %v", err)
	}
	after := before
	if m, err := readMeminfo(); err == nil {
		after = m.Cache
	}
	r.policy.Applied(a, before, after)
	// The reclaim's own CPU time is the agent's: the next sample leaves it
	// out with the rest of the agent's.
}

// sample reads the guest's CPU use since the previous sample, less the
// agent's own, and its memory; ok is false for the first (baseline)
// sample or when /proc cannot be read.
func (r *reclaimer) sample() (reclaim.Sample, bool) {
	cur, err := readCPU()
	if err != nil {
		return reclaim.Sample{}, false
	}
	self := selfTicks()
	prev, prevSelf := r.prevCPU, r.prevSelf
	r.prevCPU, r.prevSelf = cur, self
	if prev == nil {
		return reclaim.Sample{}, false
	}
	mem, err := readMeminfo()
	if err != nil {
		return reclaim.Sample{}, false
	}
	return reclaim.Sample{
		At: cur.at, Since: prev.at,
		CPUPercent: cpuLessSelf(prev, cur, self-min(self, prevSelf)),
		MemTotal:   mem.Total,
		Cache:      mem.Cache,
	}, true
}

// cpuLessSelf is the CPU use between two /proc/stat samples without
// selfTicks of the agent's own, in percent of one CPU.
func cpuLessSelf(prev, cur *cpuSample, selfTicks uint64) float64 {
	dt := float64(cur.total - prev.total)
	if dt <= 0 {
		return 0
	}
	busy := dt - float64(cur.idle-prev.idle) - float64(selfTicks)
	return max(busy, 0) / dt * 100 * float64(cur.ncpu)
}

// selfTicks is the agent's user and system CPU time (getrusage(2)), in
// USER_HZ ticks.
func selfTicks() uint64 {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	us := ru.Utime.Nano() + ru.Stime.Nano()
	return uint64(us) * userHZ / uint64(time.Second)
}

// apply carries out one action of the policy.
func apply(a reclaim.Action) error {
	switch a.Kind {
	case reclaim.Reclaim:
		if err := writeReclaim(a.Bytes); err != nil {
			return err
		}
	case reclaim.DropCaches:
		if err := writeFile(dropCaches, "1"); err != nil {
			return err
		}
	default:
		return nil
	}
	return writeFile(compactMemory, "1")
}

// writeReclaim asks the root cgroup to reclaim n bytes. The kernel answers
// EAGAIN when it reclaimed less than asked: not an error here.
func writeReclaim(n uint64) error {
	err := writeFile(memoryReclaim, strconv.FormatUint(n, 10))
	if errors.Is(err, unix.EAGAIN) {
		return nil
	}
	return err
}

// writeFile writes s to an existing file (a /proc or /sys knob).
func writeFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// meminfo is what the agent reads of /proc/meminfo (proc(5)), bytes.
type meminfo struct {
	proto.GuestMem
	Total, Available uint64
}

// readMeminfo reads /proc/meminfo: Used is MemTotal less MemAvailable,
// Cache Active(file) + Inactive(file).
func readMeminfo() (meminfo, error) {
	kv, err := readKV("/proc/meminfo")
	if err != nil {
		return meminfo{}, err
	}
	m := meminfo{Total: kv["MemTotal"] * 1024, Available: kv["MemAvailable"] * 1024}
	m.Used = m.Total - min(m.Available, m.Total)
	m.Cache = (kv["Active(file)"] + kv["Inactive(file)"]) * 1024
	return m, nil
}

// reclaimCall serves OpReclaim: it sets the mode and, with Now, reclaims
// the page cache above the floor at once and compacts memory.
func (s *Server) reclaimCall(req *proto.ReclaimRequest) (*proto.ReclaimResult, error) {
	r := s.reclaimState()
	r.mu.Lock()
	defer r.mu.Unlock()
	if req.Mode != "" {
		m, err := reclaim.ParseMode(req.Mode)
		if err != nil {
			return nil, err
		}
		r.policy.SetMode(m)
		r.mode.Store(m)
	}
	res := &proto.ReclaimResult{Mode: string(r.policy.Mode())}
	if !req.Now {
		return res, nil
	}
	t0 := time.Now()
	mi, err := readMeminfo()
	if err != nil {
		return nil, fmt.Errorf("reclaim: %w", err)
	}
	res.Before = mi.GuestMem
	switch n := reclaim.OnDemand(mi.Total, mi.Cache); {
	case n == 0:
	case !haveMemoryReclaim():
		res.Method = "drop_caches"
		if err := apply(reclaim.Action{Kind: reclaim.DropCaches}); err != nil {
			return nil, fmt.Errorf("reclaim: %w", err)
		}
	default:
		res.Method = "memory.reclaim"
		if err := reclaimDown(mi, res); err != nil {
			return nil, fmt.Errorf("reclaim: %w", err)
		}
		if err := writeFile(compactMemory, "1"); err != nil {
			return nil, fmt.Errorf("reclaim: %w", err)
		}
	}
	if mi, err := readMeminfo(); err == nil {
		res.After = mi.GuestMem
	}
	res.Millis = time.Since(t0).Milliseconds()
	return res, nil
}

// onDemandStep bounds one write to memory.reclaim in an on-demand
// reclaim: the kernel reclaims in batches and may overshoot a request, so
// smaller steps, each sized from a fresh look at the cache, keep it near
// the floor.
const onDemandStep = 256 * reclaim.MiB

// reclaimDown asks memory.reclaim for the cache above the floor in steps
// of at most onDemandStep until none is left above it or a step frees
// less than a quarter of its size, adding what it asked to res.Requested.
func reclaimDown(mi meminfo, res *proto.ReclaimResult) error {
	for range 64 {
		n := min(reclaim.OnDemand(mi.Total, mi.Cache), onDemandStep)
		if n == 0 {
			return nil
		}
		if err := writeReclaim(n); err != nil {
			return err
		}
		res.Requested += n
		next, err := readMeminfo()
		if err != nil {
			return err
		}
		if next.Cache+n/4 > mi.Cache {
			return nil // the rest is in use
		}
		mi = next
	}
	return nil
}

// reclaimMode is the mode in force, for metrics.
func (s *Server) reclaimMode() string {
	return string(s.reclaimState().mode.Load().(reclaim.Mode))
}
