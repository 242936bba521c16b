package vm_test

import (
	"testing"

	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/vm"
	"github.com/machinetop/machinetop/vm/control"
)

// The reclaim line says when the memory was back, or that there was
// nothing to give back (a cache already at its floor), not "X → X".
func TestReclaimSummary(t *testing.T) {
	const m = 1 << 20
	r := &control.ReclaimReport{HostBefore: 2048 * m, HostAfter: 800 * m, BackMillis: 6200,
		Guest: &proto.ReclaimResult{Method: "memory.reclaim", Before: proto.GuestMem{Cache: 1500 * m}, After: proto.GuestMem{Used: 260 * m, Cache: 60 * m}}}
	if got, want := vm.ReclaimSummary("dev", r), "dev: host-held 2G → 800M (guest used 260M, cache 1.5G → 60M), back in 6.2 s"; got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	r = &control.ReclaimReport{HostBefore: 984 * m, HostAfter: 984 * m, BackMillis: 1,
		Guest: &proto.ReclaimResult{Before: proto.GuestMem{Used: 346 * m, Cache: 218 * m}, After: proto.GuestMem{Used: 346 * m, Cache: 218 * m}}}
	if got, want := vm.ReclaimSummary("dev", r), "dev: nothing to give back: its page cache (218M) is within the floor kept for it; host-held 984M (guest used 346M)"; got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
}
