// Package reclaim decides when and how much of an idle guest's page cache
// the agent gives back, so that the host gets back memory a big job used
// without a restart. It is the policy alone, pure and testable over a fake
// clock: Policy.Step takes one Sample of the guest (CPU use, page cache)
// and returns the Action to take now. The agent (package guest/agent)
// samples /proc, applies the actions through cgroup v2 memory.reclaim on
// the root cgroup (or drop_caches where the kernel has no memory.reclaim)
// and compacts memory; free page reporting (virtio-balloon on QEMU) then
// hands the freed pages to the host.
//
// The shape follows WSL's autoMemoryReclaim (poll every 10 s; act once the
// machine has been idle a while; reclaim RAM/32-sized steps through
// memory.reclaim, or drop caches once): it differs in acting sooner (the
// goal is ≥ 90 % of the cache back within a minute of going idle), in
// sizing steps by the cache left above a floor, and in the hysteresis that
// keeps it from fighting a guest that is refilling its cache:
//
//   - the machine is idle once its CPU use (the agent's own excluded) has
//     stayed at or under Params.IdleCPU for Params.IdleAfter;
//   - any busy sample ends the idle period at once, and no step is taken
//     in it;
//   - a sample whose cache grew by more than RefillBytes since the
//     previous one means the guest is reading its working set back: the
//     idle clock restarts;
//   - a step that freed less than a quarter of what it asked for, or a
//     cache at the floor, ends reclaim for this idle period (Done), so a
//     hot working set that the kernel will not give up is not asked for
//     again and again;
//   - the cache is never reclaimed below the floor (Params.Floor).
package reclaim

import (
	"fmt"
	"time"
)

// Mode is a reclaim policy setting, as `machine set memory-reclaim=` takes
// it.
type Mode string

// The modes.
const (
	// ModeOff never reclaims on its own (on-demand reclaim still works).
	ModeOff Mode = "off"
	// ModeGradual (the default) reclaims in steps once the machine has
	// been idle for 20 s.
	ModeGradual Mode = "gradual"
	// ModeAggressive acts after one idle tick, in bigger steps, and drops
	// the remaining clean caches at the end of the idle period.
	ModeAggressive Mode = "aggressive"
)

// DefaultMode is the mode of a machine that sets none.
const DefaultMode = ModeGradual

// Modes lists the modes in the order help shows them.
var Modes = []Mode{ModeOff, ModeGradual, ModeAggressive}

// ParseMode returns the Mode s names ("" is DefaultMode), or an error
// naming s and the valid values.
func ParseMode(s string) (Mode, error) {
	if s == "" {
		return DefaultMode, nil
	}
	for _, m := range Modes {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("memory reclaim mode %q: use off, gradual or aggressive", s)
}

// Size units, bytes.
const (
	MiB uint64 = 1 << 20
	GiB uint64 = 1 << 30
)

// Interval is how often the agent samples the guest and calls Step.
const Interval = 10 * time.Second

// Params are a mode's thresholds and sizes.
type Params struct {
	// IdleCPU is the CPU use at or under which a sample counts idle, in
	// percent of one CPU (the unit of proto.Metrics.CPUPercent).
	IdleCPU float64
	// IdleAfter is how long the machine must have been idle before the
	// first step.
	IdleAfter time.Duration
	// MinStep and MaxStep bound a step; StepDivisor sizes it from RAM
	// (MemTotal/StepDivisor), and a step is at least half of the cache
	// above the floor.
	MinStep, MaxStep uint64
	StepDivisor      uint64
	// DropAtEnd drops the clean caches (drop_caches) once, when reclaim
	// ends an idle period.
	DropAtEnd bool
}

// ParamsFor returns the parameters of mode m (ModeOff's are never used).
func ParamsFor(m Mode) Params {
	if m == ModeAggressive {
		return Params{IdleCPU: 10, IdleAfter: Interval, MinStep: 256 * MiB, MaxStep: 4 * GiB, StepDivisor: 4, DropAtEnd: true}
	}
	return Params{IdleCPU: 5, IdleAfter: 2 * Interval, MinStep: 64 * MiB, MaxStep: 1 * GiB, StepDivisor: 16}
}

// RefillBytes is the growth of the page cache between two samples that
// counts as the guest refilling it (the idle clock restarts).
const RefillBytes = 32 * MiB

// minUseful is the smallest step worth taking: less cache than this above
// the floor is left alone.
const minUseful = 8 * MiB

// Floor is the page cache a reclaim never goes below: 128 MiB, or 3 % of
// memTotal when that is more, bytes.
func Floor(memTotal uint64) uint64 { return max(128*MiB, memTotal*3/100) }

// Sample is one look at the guest.
type Sample struct {
	// At is when it was taken (the agent's monotonic clock); Since is
	// when the interval CPUPercent covers began.
	At, Since time.Time
	// CPUPercent is the CPU use over Since..At, without the agent's own,
	// in percent of one CPU (0..100×CPUs).
	CPUPercent float64
	// MemTotal is the guest's RAM and Cache its file-backed page cache
	// (Active(file) + Inactive(file) of /proc/meminfo: what reclaim can
	// take without swap), bytes.
	MemTotal, Cache uint64
}

// Kind is what an Action does.
type Kind int

// The kinds of Action.
const (
	// None: nothing to do now.
	None Kind = iota
	// Reclaim: write Action.Bytes to the root cgroup's memory.reclaim,
	// then compact memory.
	Reclaim
	// DropCaches: write 1 to /proc/sys/vm/drop_caches (the clean page
	// cache), then compact memory: the end of an aggressive idle period,
	// or the one step where the kernel has no memory.reclaim.
	DropCaches
)

// Action is what Step asks the agent to do.
type Action struct {
	Kind Kind
	// Bytes is how much to reclaim (Reclaim).
	Bytes uint64
}

// State is where a Policy is in an idle period.
type State int

// The states.
const (
	// Busy: the latest sample was busy (or the policy is off).
	Busy State = iota
	// Waiting: idle, not for long enough yet.
	Waiting
	// Reclaiming: idle long enough; taking steps.
	Reclaiming
	// Done: this idle period's reclaim is over; nothing more until the
	// machine has been busy again.
	Done
)

// Policy is the decision state of one guest. The zero value is not
// usable; call New. It is not safe for concurrent use.
type Policy struct {
	mode Mode
	p    Params
	// haveReclaim is false when the kernel has no memory.reclaim: one
	// drop_caches per idle period then.
	haveReclaim bool

	state     State
	idleSince time.Time
	// base is the cache at the previous sample, or right after the step
	// taken then (Applied); haveBase is false before the first sample.
	base     uint64
	haveBase bool
	// stalled is set by Applied when the last step freed less than a
	// quarter of what it asked for.
	stalled bool
}

// New returns a policy in mode m; haveReclaim says whether the guest's
// kernel has cgroup v2 memory.reclaim.
func New(m Mode, haveReclaim bool) *Policy {
	return &Policy{mode: m, p: ParamsFor(m), haveReclaim: haveReclaim}
}

// Mode returns the policy's mode.
func (p *Policy) Mode() Mode { return p.mode }

// State returns where the policy is.
func (p *Policy) State() State { return p.state }

// SetMode changes the mode; the idle clock keeps running.
func (p *Policy) SetMode(m Mode) {
	p.mode, p.p = m, ParamsFor(m)
	if m == ModeOff {
		p.state, p.idleSince, p.stalled = Busy, time.Time{}, false
	}
}

// SetHaveReclaim says whether memory.reclaim exists (it may appear once
// the image's init has mounted cgroup2).
func (p *Policy) SetHaveReclaim(ok bool) { p.haveReclaim = ok }

// Step takes the latest sample and returns what to do now. After
// applying a Reclaim, the agent calls Applied with the cache it left.
func (p *Policy) Step(s Sample) Action {
	base, haveBase := p.base, p.haveBase
	p.base, p.haveBase = s.Cache, true
	stalled := p.stalled
	p.stalled = false
	if p.mode == ModeOff {
		return Action{}
	}
	if s.CPUPercent > p.p.IdleCPU {
		p.state, p.idleSince = Busy, time.Time{}
		return Action{}
	}
	if p.idleSince.IsZero() {
		p.idleSince, p.state = s.Since, Waiting
	}
	if haveBase && s.Cache > base+RefillBytes {
		// The guest is reading its cache back in: start over.
		p.idleSince, p.state = s.At, Waiting
		return Action{}
	}
	if p.state == Done {
		return Action{}
	}
	if stalled {
		return p.finish()
	}
	if s.At.Sub(p.idleSince) < p.p.IdleAfter {
		return Action{}
	}
	p.state = Reclaiming
	if !p.haveReclaim {
		p.state = Done
		return Action{Kind: DropCaches}
	}
	n := StepSize(p.p, s.MemTotal, s.Cache)
	if n == 0 {
		return p.finish()
	}
	return Action{Kind: Reclaim, Bytes: n}
}

// Applied records the outcome of the Reclaim a Step returned: the cache
// before and after it, bytes. A step that freed less than a quarter of a
// asked ends the idle period's reclaim at the next Step.
func (p *Policy) Applied(a Action, before, after uint64) {
	if a.Kind != Reclaim {
		return
	}
	p.base = after
	freed := uint64(0)
	if before > after {
		freed = before - after
	}
	p.stalled = freed < a.Bytes/4
}

// finish ends the idle period's reclaim: Done, with the mode's last
// action.
func (p *Policy) finish() Action {
	p.state = Done
	if p.p.DropAtEnd {
		return Action{Kind: DropCaches}
	}
	return Action{}
}

// StepSize is the step of parameters p for a guest with memTotal RAM and
// cache page cache: memTotal/StepDivisor clamped to [MinStep, MaxStep],
// raised to half the cache above the floor (bounded by MaxStep), and never
// more than the cache above the floor; 0 when less than 8 MiB is above it.
func StepSize(p Params, memTotal, cache uint64) uint64 {
	floor := Floor(memTotal)
	if cache <= floor+minUseful {
		return 0
	}
	above := cache - floor
	n := min(max(memTotal/p.StepDivisor, p.MinStep), p.MaxStep)
	n = max(n, min(above/2, p.MaxStep))
	return min(n, above)
}

// OnDemand is the reclaim an explicit request makes (`machine reclaim`):
// everything above the floor, bytes; 0 when less than 8 MiB is above it.
func OnDemand(memTotal, cache uint64) uint64 {
	floor := Floor(memTotal)
	if cache <= floor+minUseful {
		return 0
	}
	return cache - floor
}
