//go:build linux

package dhcp

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
)

// testServer is a DHCP server (the library's server4) on loopback that
// leases 10.9.8.15/24 for leaseTime and records what it was asked.
type testServer struct {
	addr      *net.UDPAddr
	leaseTime time.Duration
	mu        sync.Mutex
	nakRenew  bool     // refuse renewals
	seen      []string // "discover", "request", "renew" in arrival order
}

func startServer(t *testing.T, leaseTime time.Duration) *testServer {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{addr: conn.LocalAddr().(*net.UDPAddr), leaseTime: leaseTime}
	srv, err := server4.NewServer("", nil, ts.handle, server4.WithConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Close() })
	return ts
}

func (ts *testServer) handle(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
	serverIP := net.IPv4(10, 9, 8, 2)
	mods := []dhcpv4.Modifier{
		dhcpv4.WithServerIP(serverIP),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(serverIP)),
		dhcpv4.WithYourIP(net.IPv4(10, 9, 8, 15)),
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
		dhcpv4.WithOption(dhcpv4.OptRouter(serverIP)),
		dhcpv4.WithOption(dhcpv4.OptDNS(net.IPv4(10, 9, 8, 3))),
		dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(ts.leaseTime)),
	}
	ts.mu.Lock()
	kind := "discover"
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		mods = append(mods, dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer))
	case dhcpv4.MessageTypeRequest:
		kind = "request"
		mt := dhcpv4.MessageTypeAck
		if !m.ClientIPAddr.IsUnspecified() {
			kind = "renew"
			if ts.nakRenew {
				mt = dhcpv4.MessageTypeNak
			}
		}
		mods = append(mods, dhcpv4.WithMessageType(mt))
	default:
		ts.mu.Unlock()
		return
	}
	ts.seen = append(ts.seen, kind)
	ts.mu.Unlock()
	reply, err := dhcpv4.NewReplyFromRequest(m, mods...)
	if err != nil {
		return
	}
	conn.WriteTo(reply.ToBytes(), peer)
}

func (ts *testServer) calls() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]string(nil), ts.seen...)
}

func (ts *testServer) client() *Client {
	return &Client{
		Interface: "test0",
		Hostname:  "probe",
		Timeout:   500 * time.Millisecond,
		Retries:   2,
		Dial: func() (net.PacketConn, error) {
			return net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		},
		HWAddr: net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x56},
		Server: ts.addr,
	}
}

func TestAcquireAndLeaseFile(t *testing.T) {
	ts := startServer(t, time.Hour)
	l, err := ts.client().Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Address().String(); got != "10.9.8.15/24" {
		t.Errorf("address %s", got)
	}
	if gw := l.Gateway(); !gw.Equal(net.IPv4(10, 9, 8, 2)) {
		t.Errorf("gateway %v", gw)
	}
	info := l.Info()
	if info.Address != "10.9.8.15/24" || info.Gateway != "10.9.8.2" || len(info.DNS) != 1 || info.DNS[0] != "10.9.8.3" || info.Server != "10.9.8.2" {
		t.Errorf("info %+v", info)
	}
	if d := info.Expires.Sub(info.Obtained); d != time.Hour {
		t.Errorf("lease runs %v, want 1h", d)
	}
	if d := info.Renew.Sub(info.Obtained); d != 30*time.Minute {
		t.Errorf("renewal after %v, want T1 = half the lease", d)
	}
	if c := ts.calls(); len(c) != 2 || c[0] != "discover" || c[1] != "request" {
		t.Errorf("server saw %v, want discover then request", c)
	}

	path := filepath.Join(t.TempDir(), "lease.json")
	if err := l.Save(path); err != nil {
		t.Fatal(err)
	}
	back, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if back.Address().String() != "10.9.8.15/24" || back.Obtained != l.Obtained {
		t.Errorf("loaded %s obtained %d, saved %s %d", back.Address(), back.Obtained, l.Address(), l.Obtained)
	}
	// A file from an earlier boot is not this boot's lease.
	l.BootID = "00000000-0000-0000-0000-000000000000"
	l.Save(path)
	if _, err := Load(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a lease of another boot: Load gave %v, want an error wrapping fs.ErrNotExist", err)
	}
}

// TestKeepRenews keeps a 2 s lease for 3.5 s: the agent must renew it at
// T1 (1 s) and again a second later, saving each renewal.
func TestKeepRenews(t *testing.T) {
	ts := startServer(t, 2*time.Second)
	c := ts.client()
	l, err := c.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var saved []*Lease
	k := &Keeper{Client: c, Retry: 200 * time.Millisecond, Logf: t.Logf,
		Save: func(nl *Lease) error { mu.Lock(); saved = append(saved, nl); mu.Unlock(); return nil }}
	ctx, cancel := context.WithTimeout(context.Background(), 3500*time.Millisecond)
	defer cancel()
	k.Keep(ctx, l)
	mu.Lock()
	defer mu.Unlock()
	if len(saved) < 2 || len(saved) > 4 {
		t.Fatalf("%d renewals saved in 3.5 s of a 2 s lease, want 3 (at 1, 2 and 3 s); server saw %v", len(saved), ts.calls())
	}
	for i, s := range saved {
		prev := l.Obtained
		if i > 0 {
			prev = saved[i-1].Obtained
		}
		if d := time.Duration(s.Obtained - prev); d < 900*time.Millisecond || d > 1500*time.Millisecond {
			t.Errorf("renewal %d came %v after the previous lease, want T1 = 1 s", i, d)
		}
	}
	for _, c := range ts.calls()[2:] {
		if c != "renew" {
			t.Errorf("server saw %v; after the first lease only renewals", ts.calls())
			break
		}
	}
}

// TestKeepAfterRefusal: a server that refuses a renewal makes the agent
// ask for a new lease at once.
func TestKeepAfterRefusal(t *testing.T) {
	ts := startServer(t, 2*time.Second)
	c := ts.client()
	l, err := c.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ts.mu.Lock()
	ts.nakRenew = true
	ts.mu.Unlock()
	got := make(chan *Lease, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	k := &Keeper{Client: c, Retry: time.Second, Logf: t.Logf,
		Save: func(nl *Lease) error { got <- nl; cancel(); return nil }}
	k.Keep(ctx, l)
	select {
	case <-got:
	default:
		t.Fatalf("no new lease after the refusal; server saw %v", ts.calls())
	}
	want := []string{"discover", "request", "renew", "discover", "request"}
	if c := ts.calls(); len(c) != len(want) || c[2] != "renew" || c[3] != "discover" {
		t.Fatalf("server saw %v, want %v", c, want)
	}
}
