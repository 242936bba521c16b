package netd

import (
	"context"
	"net"
	"strings"
	"sync"
)

// resolver is the DNS server's upstream: it answers NAME.machine from the
// running machines and sends every other name to the host's resolver.
// On Linux that is Go's resolver, which reads /etc/resolv.conf again when
// it changes (checked at most every 5 s); on macOS the system's. Either
// way a VPN going up or down on the host is followed without a restart.
type resolver struct {
	*net.Resolver
	mu  sync.RWMutex
	ips map[string]net.IP // machine name → address
}

func newResolver(upstream *net.Resolver) *resolver {
	if upstream == nil {
		upstream = &net.Resolver{}
	}
	return &resolver{Resolver: upstream, ips: map[string]net.IP{}}
}

// set makes name.machine resolve to ip; a nil ip removes the name.
func (r *resolver) set(name string, ip net.IP) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ip == nil {
		delete(r.ips, name)
	} else {
		r.ips[name] = ip
	}
}

// machineName returns the machine a host name in Domain names (the
// trailing dot and case ignored), and whether the name is in Domain.
func machineName(host string) (string, bool) {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	name, ok := strings.CutSuffix(h, "."+Domain)
	return name, ok
}

// LookupIPAddr answers a machine's name with its address, and an unknown
// machine with "not found"; other names go upstream.
func (r *resolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	name, ok := machineName(host)
	if !ok {
		return r.Resolver.LookupIPAddr(ctx, host)
	}
	r.mu.RLock()
	ip, found := r.ips[name]
	r.mu.RUnlock()
	if !found {
		return nil, &net.DNSError{Err: "no running machine of that name", Name: host, IsNotFound: true}
	}
	return []net.IPAddr{{IP: ip}}, nil
}
