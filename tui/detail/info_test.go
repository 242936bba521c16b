package detail

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/theme"
	"github.com/machinetop/machinetop/tui/machines"
	"github.com/machinetop/machinetop/tui/source"
	"github.com/machinetop/machinetop/vm"
)

func TestInfosShowLeaseAndDiskCheck(t *testing.T) {
	renew := time.Date(2026, 12, 2, 18, 50, 0, 0, time.Local)
	r := source.Row{Machine: vm.Machine{
		State: vm.StateRunning, IP: "10.0.2.15",
		Lease: &proto.Lease{Address: "10.0.2.15/24", Server: "10.0.2.2", Renew: renew},
		Guest: &vm.GuestFacts{DiskCheck: &proto.DiskCheck{Result: proto.DiskFixed, JournalRecovered: true, Millis: 223}},
	}}
	got := map[string]string{}
	for _, kv := range Infos(r) {
		got[kv[0]] = kv[1]
	}
	if want := "10.0.2.15/24 (DHCP from 10.0.2.2, renews 2026-12-02 18:50)"; got["IP"] != want {
		t.Errorf("IP row %q, want %q", got["IP"], want)
	}
	if want := "fixed, journal recovered (e2fsck exit 0, 223 ms)"; got["Disk check"] != want {
		t.Errorf("Disk check row %q, want %q", got["Disk check"], want)
	}
	r.Lease, r.Guest = nil, nil
	for _, kv := range Infos(r) {
		if kv[0] == "IP" && kv[1] != "10.0.2.15" || strings.HasPrefix(kv[0], "Disk check") {
			t.Errorf("without a lease or check: %q = %q", kv[0], kv[1])
		}
	}
}

// A machine whose latest start failed says why in its Info tab and as
// its state in the machines table; a pending set shows running→next.
func TestInfosShowStartFailureAndPendingSet(t *testing.T) {
	at := time.Date(2026, 12, 3, 9, 30, 0, 0, time.Local)
	r := source.Row{Machine: vm.Machine{
		Config:       vm.Config{Name: "dev", CPUs: 4, MemoryBytes: 2 << 30},
		State:        vm.StateStopped,
		StartFailure: &vm.StartFailure{At: at, Error: "starting dev: context deadline exceeded (last stage: booting)"},
		Running:      &vm.Resources{CPUs: 2, MemoryBytes: 1 << 30},
	}}
	got := map[string]string{}
	for _, kv := range Infos(r) {
		got[kv[0]] = kv[1]
	}
	if want := "2026-12-03 09:30:00: starting dev: context deadline exceeded (last stage: booting)"; got["Start failed"] != want {
		t.Errorf("Start failed row %q, want %q", got["Start failed"], want)
	}
	if got["CPUs"] != "2→4" || got["Memory"] != "1G→2G" {
		t.Errorf("CPUs %q, Memory %q; want 2→4 and 1G→2G", got["CPUs"], got["Memory"])
	}
	cells := machines.Cells(theme.New(theme.Dark, true), r, "", 0, at)
	var texts []string
	for _, c := range cells {
		texts = append(texts, c.Text)
	}
	if !slices.Contains(texts, "start failed") {
		t.Errorf("machines table cells %q, want the state \"start failed\"", texts)
	}
}
