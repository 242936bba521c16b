package reclaim

import (
	"testing"
	"time"
)

// guest is a fake guest over a fake clock: each tick advances the clock
// by Interval and applies the previous action to the cache as a kernel
// that can free all of it would.
type guest struct {
	t     *testing.T
	now   time.Time
	total uint64
	cache uint64
	cpu   float64
	// hot is cache the kernel will not give up (a working set in use).
	hot uint64
}

func newGuest(t *testing.T, total, cache uint64) *guest {
	return &guest{t: t, now: time.Unix(1000, 0), total: total, cache: cache}
}

func (g *guest) tick(p *Policy) Action {
	since := g.now
	g.now = g.now.Add(Interval)
	a := p.Step(Sample{At: g.now, Since: since, CPUPercent: g.cpu, MemTotal: g.total, Cache: g.cache})
	before := g.cache
	switch a.Kind {
	case Reclaim:
		if a.Bytes > g.cache-Floor(g.total) {
			g.t.Fatalf("asked %d MiB with only %d MiB above the floor", a.Bytes/MiB, (g.cache-Floor(g.total))/MiB)
		}
		free := min(a.Bytes, g.cache-min(g.cache, g.hot))
		g.cache -= free
	case DropCaches:
		g.cache = min(g.cache, g.hot)
	}
	p.Applied(a, before, g.cache)
	return a
}

func TestParseMode(t *testing.T) {
	for _, s := range []string{"off", "gradual", "aggressive"} {
		if m, err := ParseMode(s); err != nil || string(m) != s {
			t.Errorf("ParseMode(%q) = %q, %v", s, m, err)
		}
	}
	if m, err := ParseMode(""); err != nil || m != ModeGradual {
		t.Errorf(`ParseMode("") = %q, %v; want gradual`, m, err)
	}
	if _, err := ParseMode("fast"); err == nil {
		t.Error(`ParseMode("fast") succeeded`)
	}
}

func TestGradualWaitsForIdleThenReclaimsToFloor(t *testing.T) {
	g := newGuest(t, 4*GiB, 1536*MiB+300*MiB)
	p := New(ModeGradual, true)
	// The first idle sample covers 10 s: not yet.
	for i := 0; i < 1; i++ {
		if a := g.tick(p); a.Kind != None {
			t.Fatalf("tick %d: %+v before the machine was idle for 20 s", i, a)
		}
	}
	steps := 0
	for i := 0; i < 10 && p.State() != Done; i++ {
		if a := g.tick(p); a.Kind == Reclaim {
			steps++
		}
	}
	if g.cache != Floor(g.total) {
		t.Errorf("cache %d MiB, want the floor %d MiB", g.cache/MiB, Floor(g.total)/MiB)
	}
	// ≥ 90 % of the excess back within 60 s of going idle: the first step
	// comes at 20 s, so at most 5 steps in the minute.
	if steps > 5 {
		t.Errorf("%d steps to reach the floor; want at most 5 (one minute of idleness)", steps)
	}
	if p.State() != Done {
		t.Errorf("state %v, want Done", p.State())
	}
	if a := g.tick(p); a.Kind != None {
		t.Errorf("after Done: %+v", a)
	}
}

func TestBusyStopsAtOnce(t *testing.T) {
	g := newGuest(t, 4*GiB, 2*GiB)
	p := New(ModeGradual, true)
	for i := 0; i < 3; i++ {
		g.tick(p)
	}
	if p.State() != Reclaiming {
		t.Fatalf("state %v after 30 s idle, want Reclaiming", p.State())
	}
	g.cpu = 50
	before := g.cache
	if a := g.tick(p); a.Kind != None || g.cache != before {
		t.Fatalf("busy sample: %+v", a)
	}
	// Idle again: the clock starts over (20 s).
	g.cpu = 1
	for i := 0; i < 1; i++ {
		if a := g.tick(p); a.Kind != None {
			t.Fatalf("tick %d after busy: %+v", i, a)
		}
	}
	if a := g.tick(p); a.Kind != Reclaim {
		t.Fatalf("20 s idle after busy: %+v, want a step", a)
	}
}

func TestNoReclaimWhileRefilling(t *testing.T) {
	g := newGuest(t, 4*GiB, 2*GiB)
	p := New(ModeGradual, true)
	for i := 0; i < 3; i++ {
		g.tick(p)
	}
	// Low CPU but the cache grows (a slow reader): no step, clock restarts.
	for i := 0; i < 3; i++ {
		g.cache += 64 * MiB
		if a := g.tick(p); a.Kind != None {
			t.Fatalf("refilling tick %d: %+v", i, a)
		}
	}
	if p.State() != Waiting {
		t.Errorf("state %v, want Waiting", p.State())
	}
}

func TestHotWorkingSetIsNotAskedAgain(t *testing.T) {
	g := newGuest(t, 4*GiB, 1*GiB)
	g.hot = 1 * GiB // nothing can be freed
	p := New(ModeGradual, true)
	var asks int
	for i := 0; i < 12; i++ {
		if a := g.tick(p); a.Kind == Reclaim {
			asks++
		}
	}
	if asks != 1 {
		t.Errorf("%d steps against a cache that frees nothing; want 1, then Done", asks)
	}
	if p.State() != Done {
		t.Errorf("state %v, want Done", p.State())
	}
}

func TestFloorAndSmallCache(t *testing.T) {
	g := newGuest(t, 4*GiB, Floor(4*GiB)+4*MiB)
	p := New(ModeGradual, true)
	for i := 0; i < 6; i++ {
		if a := g.tick(p); a.Kind != None {
			t.Fatalf("cache at the floor: %+v", a)
		}
	}
	if Floor(1*GiB) != 128*MiB || Floor(16*GiB) != 16*GiB*3/100 {
		t.Errorf("Floor(1G)=%d MiB Floor(16G)=%d MiB", Floor(1*GiB)/MiB, Floor(16*GiB)/MiB)
	}
}

func TestStepSize(t *testing.T) {
	gp := ParamsFor(ModeGradual)
	for _, c := range []struct {
		total, cache, want uint64
	}{
		{4 * GiB, Floor(4*GiB) + 2*MiB, 0},            // under minUseful
		{4 * GiB, Floor(4*GiB) + 100*MiB, 100 * MiB},  // bounded by what is above the floor
		{4 * GiB, Floor(4*GiB) + 400*MiB, 256 * MiB},  // RAM/16
		{4 * GiB, Floor(4*GiB) + 1600*MiB, 800 * MiB}, // half of the excess
		{64 * GiB, Floor(64*GiB) + 40*GiB, 1 * GiB},   // MaxStep
		{512 * MiB, 128*MiB + 60*MiB, 60 * MiB},       // MinStep, bounded
		{512 * MiB, 128*MiB + 200*MiB, 100 * MiB},     // half beats MinStep
	} {
		if got := StepSize(gp, c.total, c.cache); got != c.want {
			t.Errorf("StepSize(total %d MiB, cache %d MiB) = %d MiB, want %d MiB", c.total/MiB, c.cache/MiB, got/MiB, c.want/MiB)
		}
	}
}

func TestAggressiveActsSoonerAndDropsAtEnd(t *testing.T) {
	g := newGuest(t, 4*GiB, 2*GiB)
	p := New(ModeAggressive, true)
	if a := g.tick(p); a.Kind != Reclaim {
		t.Fatalf("first idle tick: %+v, want a step", a)
	}
	var last Action
	for i := 0; i < 6 && p.State() != Done; i++ {
		last = g.tick(p)
	}
	if last.Kind != DropCaches {
		t.Errorf("last action %+v, want DropCaches", last)
	}
}

func TestWithoutMemoryReclaimDropsOncePerIdlePeriod(t *testing.T) {
	g := newGuest(t, 4*GiB, 2*GiB)
	p := New(ModeGradual, false)
	var drops int
	for i := 0; i < 8; i++ {
		if a := g.tick(p); a.Kind == DropCaches {
			drops++
		}
	}
	g.cpu = 80
	g.tick(p)
	g.cpu = 0
	g.cache = 2 * GiB
	for i := 0; i < 8; i++ {
		if a := g.tick(p); a.Kind == DropCaches {
			drops++
		}
	}
	if drops != 2 {
		t.Errorf("%d drops over two idle periods, want 2", drops)
	}
}

func TestOffNeverActs(t *testing.T) {
	g := newGuest(t, 4*GiB, 3*GiB)
	p := New(ModeOff, true)
	for i := 0; i < 20; i++ {
		if a := g.tick(p); a.Kind != None {
			t.Fatalf("off: %+v", a)
		}
	}
	p.SetMode(ModeGradual)
	for i := 0; i < 3; i++ {
		g.tick(p)
	}
	if p.State() != Reclaiming {
		t.Errorf("state %v 30 s after switching to gradual, want Reclaiming", p.State())
	}
}

func TestOnDemand(t *testing.T) {
	if got := OnDemand(4*GiB, 2*GiB); got != 2*GiB-Floor(4*GiB) {
		t.Errorf("OnDemand = %d MiB", got/MiB)
	}
	if got := OnDemand(4*GiB, 100*MiB); got != 0 {
		t.Errorf("OnDemand below the floor = %d MiB", got/MiB)
	}
}
