package vm

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/machinetop/machinetop/vm/internal/atomicfile"
	"github.com/machinetop/machinetop/vm/netd"
)

// TestNetworkAddresses: machines created at the same time get distinct
// addresses, kept in their configuration with the MAC derived from each;
// a deleted machine's address is given again; a machine made before the
// network existed gets one at EnsureNetwork, once, and keeps it.
func TestNetworkAddresses(t *testing.T) {
	m := newTestManager(t)
	ctx := context.Background()
	const n = 5
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = m.Create(ctx, CreateOptions{Image: "test:latest", Name: fmt.Sprintf("m%d", i), CPUs: 1, MemoryBytes: GiB})
		}()
	}
	wg.Wait()
	seen := map[string]string{}
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		name := fmt.Sprintf("m%d", i)
		cfg, err := m.Load(name)
		if err != nil {
			t.Fatal(err)
		}
		id := cfg.Network
		if id == nil {
			t.Fatalf("%s has no network address in its configuration", name)
		}
		ip, err := netip.ParseAddr(id.IP)
		if err != nil || netd.CheckAddr(ip) != nil || id.MAC != netd.MACFor(ip) {
			t.Fatalf("%s: %+v is not a machine address with its MAC", name, id)
		}
		if other, dup := seen[id.IP]; dup {
			t.Fatalf("%s and %s both have %s", name, other, id.IP)
		}
		seen[id.IP] = name
	}

	// A deleted machine's address is free again.
	gone, _ := m.Load("m0")
	if _, err := m.Delete(ctx, gone); err != nil {
		t.Fatal(err)
	}
	again, err := m.Create(ctx, CreateOptions{Image: "test:latest", Name: "again", CPUs: 1, MemoryBytes: GiB})
	if err != nil {
		t.Fatal(err)
	}
	if again.Network == nil || again.Network.IP != gone.Network.IP {
		t.Fatalf("a new machine got %+v, want the deleted one's %s", again.Network, gone.Network.IP)
	}

	// A machine from before the network: no address until it boots.
	old, _ := m.Load("m1")
	old.Network = nil
	if err := atomicfile.WriteJSON(m.Dir("m1").Config(), old); err != nil {
		t.Fatal(err)
	}
	id, err := m.EnsureNetwork(old)
	if err != nil {
		t.Fatal(err)
	}
	if seen[id.IP] != "" && seen[id.IP] != "m1" || id.IP == again.Network.IP {
		t.Fatalf("EnsureNetwork gave %s, which another machine has", id.IP)
	}
	saved, _ := m.Load("m1")
	if saved.Network == nil || *saved.Network != id || old.Network == nil || *old.Network != id {
		t.Fatalf("EnsureNetwork gave %+v; saved %+v, cfg %+v", id, saved.Network, old.Network)
	}
	// Once given, it stays.
	fresh, _ := m.Load("m1")
	if id2, err := m.EnsureNetwork(fresh); err != nil || id2 != id {
		t.Fatalf("a second EnsureNetwork gave %+v %v, want %+v", id2, err, id)
	}
}
