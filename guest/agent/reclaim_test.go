//go:build linux

package agent

import (
	"context"
	"strings"
	"testing"
)

// The mode travels over the agent channel and shows in the metrics; Now
// is left to the end-to-end test (here it would reclaim the host's cache).
func TestReclaimMode(t *testing.T) {
	c := connectNew(t)
	ctx := context.Background()
	m, err := c.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.ReclaimMode != "gradual" {
		t.Errorf("default mode %q, want gradual", m.ReclaimMode)
	}
	res, err := c.Reclaim(ctx, "aggressive", false)
	if err != nil || res.Mode != "aggressive" || res.Method != "" {
		t.Fatalf("Reclaim(aggressive) = %+v, %v", res, err)
	}
	if m, err = c.Metrics(ctx); err != nil || m.ReclaimMode != "aggressive" {
		t.Fatalf("metrics after set: %+v, %v", m, err)
	}
	if _, err := c.Reclaim(ctx, "fast", false); err == nil || !strings.Contains(err.Error(), `"fast"`) {
		t.Errorf("bad mode: %v", err)
	}
	if m, _ = c.Metrics(ctx); m.ReclaimMode != "aggressive" {
		t.Errorf("a bad mode changed the mode to %q", m.ReclaimMode)
	}
}

func TestCPULessSelf(t *testing.T) {
	prev := &cpuSample{total: 1000, idle: 900, ncpu: 2}
	// 2000 ticks over two CPUs (10 s): 100 busy, 60 of them the agent's.
	cur := &cpuSample{total: 3000, idle: 2800, ncpu: 2}
	if got := cpuLessSelf(prev, cur, 60); got < 3.99 || got > 4.01 {
		t.Errorf("cpuLessSelf = %.2f%%, want 4%% of one CPU", got)
	}
	if got := cpuLessSelf(prev, cur, 500); got != 0 {
		t.Errorf("more self than busy: %.2f", got)
	}
}
