package netd

import (
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestAllocate(t *testing.T) {
	a := netip.MustParseAddr
	got, err := Allocate(nil)
	if err != nil || got != a("192.168.127.2") {
		t.Fatalf("Allocate(nil) = %v %v, want 192.168.127.2", got, err)
	}
	// The lowest free one; addresses outside the range change nothing.
	got, err = Allocate([]netip.Addr{a("192.168.127.2"), a("192.168.127.4"), a("10.0.2.15"), a("192.168.127.1")})
	if err != nil || got != a("192.168.127.3") {
		t.Fatalf("Allocate = %v %v, want 192.168.127.3", got, err)
	}
	var all []netip.Addr
	for x := a("192.168.127.2"); x != a("192.168.127.254"); x = x.Next() {
		all = append(all, x)
	}
	if len(all) != 252 {
		t.Fatalf("%d machine addresses, want 252", len(all))
	}
	got, err = Allocate(all[:251])
	if err != nil || got != a("192.168.127.253") {
		t.Fatalf("with all but the last taken: %v %v, want 192.168.127.253", got, err)
	}
	if got, err := Allocate(all); err == nil || !strings.Contains(err.Error(), "no free address") {
		t.Fatalf("with all taken: %v %v, want an error", got, err)
	}
	for _, x := range all {
		if err := CheckAddr(x); err != nil {
			t.Errorf("CheckAddr(%v): %v", x, err)
		}
	}
	for _, x := range []string{"192.168.127.1", "192.168.127.254", "192.168.127.255", "192.168.128.2", "10.0.2.15", "::1"} {
		if err := CheckAddr(a(x)); err == nil {
			t.Errorf("CheckAddr(%s) accepted it", x)
		}
	}
}

func TestMACFor(t *testing.T) {
	seen := map[string]bool{}
	for x := netip.MustParseAddr("192.168.127.2"); x != HostAlias; x = x.Next() {
		m := MACFor(x)
		hw, err := net.ParseMAC(m)
		if err != nil || hw.String() != m {
			t.Fatalf("MACFor(%v) = %q, not a MAC in canonical form", x, m)
		}
		// Locally administered unicast.
		if hw[0]&2 == 0 || hw[0]&1 != 0 {
			t.Fatalf("MACFor(%v) = %s is not locally administered unicast", x, m)
		}
		if seen[m] || m == GatewayMAC {
			t.Fatalf("MACFor(%v) = %s repeats", x, m)
		}
		seen[m] = true
		if MACFor(x) != m {
			t.Fatalf("MACFor(%v) is not stable", x)
		}
	}
	if got := MACFor(netip.MustParseAddr("192.168.127.2")); got != "5a:94:ef:a8:7f:02" {
		t.Fatalf("MACFor(192.168.127.2) = %s", got)
	}
}
