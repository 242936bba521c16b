package vm_test

import (
	"context"
	"testing"
	"time"

	"github.com/machinetop/machinetop/vm"
	"github.com/machinetop/machinetop/vm/control"
	"github.com/machinetop/machinetop/vm/fake"
)

// reclaimMode is the mode the machine's agent reports in its metrics.
func reclaimMode(t *testing.T, h *harness, cfg *vm.Config) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := h.m.Agent(cfg).Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return m.ReclaimMode
}

// The machine's memory-reclaim setting reaches its agent at boot and at
// every reconnect, and a change applies at once to a running machine.
func TestReclaimModeReachesTheAgent(t *testing.T) {
	h := newHarness(t, fake.Script{Features: fake.DefaultFeatures()})
	cfg := h.create("m1")
	if cfg.MemoryReclaim != "gradual" {
		t.Fatalf("a new machine's memory-reclaim is %q, want gradual", cfg.MemoryReclaim)
	}
	if err := h.m.Set(cfg, map[string]string{"memory-reclaim": "aggressive"}); err != nil {
		t.Fatal(err)
	}
	h.start(cfg)
	if got := reclaimMode(t, h, cfg); got != "aggressive" {
		t.Fatalf("agent mode %q after boot, want aggressive", got)
	}
	if err := h.m.Set(cfg, map[string]string{"memory-reclaim": "off"}); err != nil {
		t.Fatal(err)
	}
	if err := h.m.ApplyReclaim(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if got := reclaimMode(t, h, cfg); got != "off" {
		t.Fatalf("agent mode %q after ApplyReclaim, want off", got)
	}
	// After a reconnect the agent gets the stored mode again, whatever
	// it had (an agent restarted in the guest starts gradual).
	if _, err := h.m.Agent(cfg).Reclaim(context.Background(), "gradual", false); err != nil {
		t.Fatal(err)
	}
	i := h.vm(cfg)
	i.DropAgent()
	if _, err := h.watchUntil(cfg, func(st *control.Status) bool { return st.AgentReady && i.Dials() >= 2 }); err != nil {
		t.Fatal(err)
	}
	if got := reclaimMode(t, h, cfg); got != "off" {
		t.Errorf("agent mode %q after a reconnect, want off", got)
	}
}

func TestSetMemoryReclaimValidates(t *testing.T) {
	h := newHarness(t, fake.Script{Features: fake.DefaultFeatures()})
	cfg := h.create("m1")
	for _, bad := range []string{"", "fast", "Gradual"} {
		if err := h.m.Set(cfg, map[string]string{"memory-reclaim": bad}); err == nil {
			t.Errorf("memory-reclaim=%q accepted", bad)
		}
	}
	if cfg.MemoryReclaim != "gradual" {
		t.Errorf("a refused value changed the setting to %q", cfg.MemoryReclaim)
	}
	cfg2, err := h.m.Load("m1")
	if err != nil || cfg2.MemoryReclaim != "gradual" {
		t.Errorf("stored memory-reclaim %q, %v", cfg2.MemoryReclaim, err)
	}
}
