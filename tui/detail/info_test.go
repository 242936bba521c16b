package detail

import (
	"strings"
	"testing"
	"time"

	"github.com/machinetop/machinetop/guest/proto"
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
