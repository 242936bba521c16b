package netd

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// fakeUpstream is a DNS server on the host's loopback answering every A
// query with the address in ip.
func fakeUpstream(t *testing.T, ip *atomic.Value) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for _, q := range r.Question {
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 0}, A: net.ParseIP(ip.Load().(string))})
			}
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// TestDNS serves the gateway's DNS on the host's loopback: machine names
// come from the members, unknown machines are not found, and every other
// name goes to the upstream resolver, so a change there (a VPN's name
// server) shows at once.
func TestDNS(t *testing.T) {
	var upstreamIP atomic.Value
	upstreamIP.Store("203.0.113.7")
	var upstreamAddr atomic.Value
	upstreamAddr.Store(fakeUpstream(t, &upstreamIP))
	upstream := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", upstreamAddr.Load().(string))
	}}
	res := newResolver(upstream)
	res.set("web", net.ParseIP("192.168.127.2"))
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	defer ln.Close()
	if err := serveDNS(pc, ln, res, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	query := func(name string) (int, []string) {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeA)
		r, err := dns.Exchange(m, pc.LocalAddr().String())
		if err != nil {
			t.Fatalf("query %s: %v", name, err)
		}
		var ips []string
		for _, a := range r.Answer {
			if a, ok := a.(*dns.A); ok {
				ips = append(ips, a.A.String())
			}
		}
		return r.Rcode, ips
	}
	check := func(name string, rcode int, want ...string) {
		t.Helper()
		got, ips := query(name)
		if got != rcode || len(ips) != len(want) || (len(want) == 1 && ips[0] != want[0]) {
			t.Fatalf("%s: rcode %s, %v; want %s, %v", name, dns.RcodeToString[got], ips, dns.RcodeToString[rcode], want)
		}
	}
	check("web.machine", dns.RcodeSuccess, "192.168.127.2")
	check("WEB.Machine", dns.RcodeSuccess, "192.168.127.2")
	check("db.machine", dns.RcodeNameError)
	check("example.test", dns.RcodeSuccess, "203.0.113.7")

	// A machine that joins resolves; one that leaves no longer does.
	res.set("db", net.ParseIP("192.168.127.3"))
	res.set("web", nil)
	check("db.machine", dns.RcodeSuccess, "192.168.127.3")
	check("web.machine", dns.RcodeNameError)

	// The host's resolver moves to another server (a VPN came up): the
	// next query follows it.
	upstreamIP2 := atomic.Value{}
	upstreamIP2.Store("198.51.100.9")
	upstreamAddr.Store(fakeUpstream(t, &upstreamIP2))
	check("example.test", dns.RcodeSuccess, "198.51.100.9")
}
