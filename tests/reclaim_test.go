package tests

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// reclaimJSON is what `machine reclaim --format json` prints (bytes).
type reclaimJSON struct {
	HostBefore uint64 `json:"hostBefore"`
	HostAfter  uint64 `json:"hostAfter"`
	Millis     int64  `json:"millis"`
	BackMillis int64  `json:"backMillis"`
	Guest      struct {
		Mode   string `json:"mode"`
		Method string `json:"method"`
		Before struct {
			Cache uint64 `json:"cache"`
		} `json:"before"`
		After struct {
			Cache uint64 `json:"cache"`
		} `json:"after"`
	} `json:"guest"`
}

// TestReclaim fills a machine's page cache, then `machine reclaim` must
// shrink both the guest's cache and the memory its VM holds on the host.
// The idle policy is switched off first (live, through `machine set`), so
// that the figures are the on-demand reclaim's.
func TestReclaim(t *testing.T) {
	e := newEnv(t)
	e.must("image", "import", filepath.Join(shared, "busybox.tar"), "busybox:test")
	e.must("machine", "create", "busybox:test", "-n", "rc", "--cpus", "1", "--memory", "1G", "--home-mount", "none")
	_, errs, code := e.mt(nil, "machine", "set", "rc", "memory-reclaim=off")
	if code != 0 || !strings.Contains(errs, "memory-reclaim=off applies to the running machine rc now") {
		t.Fatalf("set memory-reclaim=off: exit %d, %s", code, errs)
	}
	if got := strings.TrimSpace(e.must("machine", "inspect", "-f", "{{.MemoryReclaim}}", "rc")); got != "off" {
		t.Fatalf("inspect shows memory-reclaim %q, want off", got)
	}
	e.fails("memory-reclaim=sometimes: use off, gradual or aggressive", "machine", "set", "rc", "memory-reclaim=sometimes")

	const fileMiB = 400
	e.mustRun("rc", "sh", "-c", "dd if=/dev/zero of=/var-big bs=1M count=400 2>/dev/null && sync && cat /var-big > /dev/null")
	var r reclaimJSON
	out := e.must("machine", "reclaim", "--format", "json", "rc")
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("reclaim --format json: %v\n%s", err, out)
	}
	t.Logf("reclaim: %+v", r)
	const mib = 1 << 20
	if r.Guest.Mode != "off" {
		t.Errorf("the agent's mode is %q after machine set memory-reclaim=off", r.Guest.Mode)
	}
	if r.Guest.Method != "memory.reclaim" {
		t.Errorf("method %q, want memory.reclaim (cgroup v2 mounted by the agent as PID 1)", r.Guest.Method)
	}
	if r.Guest.Before.Cache < fileMiB*mib*3/4 {
		t.Fatalf("guest cache before %d MiB: the %d MiB file is not cached", r.Guest.Before.Cache/mib, fileMiB)
	}
	if r.Guest.After.Cache > 160*mib || r.Guest.Before.Cache-r.Guest.After.Cache < 200*mib {
		t.Errorf("guest cache %d → %d MiB: want it at the floor (128 MiB)", r.Guest.Before.Cache/mib, r.Guest.After.Cache/mib)
	}
	if r.HostAfter == 0 || r.HostBefore < r.HostAfter+200*mib {
		t.Errorf("host-held %d → %d MiB: want at least 200 MiB back", r.HostBefore/mib, r.HostAfter/mib)
	}
	if r.BackMillis <= 0 || r.BackMillis > r.Millis {
		t.Errorf("memory back after %d ms of a %d ms reclaim", r.BackMillis, r.Millis)
	}

	// The one-line form names the machine and both figures, or — the
	// cache being at its floor now, give or take what this run read —
	// that there was nothing to give back.
	line := e.must("machine", "reclaim", "rc")
	figures := strings.HasPrefix(line, "rc: host-held ") && strings.Contains(line, " → ") && strings.Contains(line, "cache ") && strings.Contains(line, ", back in ")
	nothing := strings.HasPrefix(line, "rc: nothing to give back: its page cache (") && strings.Contains(line, "host-held ")
	if !figures && !nothing {
		t.Errorf("reclaim line %q", line)
	}
	e.must("machine", "stop", "rc")
	e.fails("is not running", "machine", "reclaim", "rc")
}
