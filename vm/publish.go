package vm

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Port forwarding modes (`--port-forwarding`, `machine set
// port-forwarding=`): PortForwardingOn forwards every TCP port the guest
// listens on to the host's loopback (the default, also meant by ""),
// PortForwardingOff only what is published and SSH.
const (
	PortForwardingOn  = "on"
	PortForwardingOff = "off"
)

// ValidatePortForwarding returns nil for "on" and "off".
func ValidatePortForwarding(mode string) error {
	switch mode {
	case PortForwardingOn, PortForwardingOff:
		return nil
	}
	return fmt.Errorf("port forwarding %q: use on or off", mode)
}

// AutoForward reports whether the machine forwards the guest's listening
// ports automatically.
func (c *Config) AutoForward() bool { return c.PortForwarding != PortForwardingOff }

// Transport protocols of a published port.
const (
	ProtoTCP = "tcp"
	ProtoUDP = "udp"
)

// PortMapping is a published port (`--publish`): the host's HostIP:HostPort
// forwarded to the machine's GuestPort while it runs, whether or not
// anything listens there yet.
type PortMapping struct {
	// HostIP is the host address to listen on; "" means loopback, both
	// 127.0.0.1 and ::1 (where the host has IPv6).
	HostIP string `json:"hostIP,omitempty"`
	// HostPort and GuestPort are 1..65535.
	HostPort  int `json:"hostPort"`
	GuestPort int `json:"guestPort"`
	// Proto is ProtoTCP (also meant by "") or ProtoUDP.
	Proto string `json:"proto,omitempty"`
}

// Protocol returns p's protocol, ProtoTCP when unset.
func (p PortMapping) Protocol() string {
	if p.Proto == "" {
		return ProtoTCP
	}
	return p.Proto
}

// String renders p in the [HOST_IP:]HOST_PORT:GUEST_PORT[/udp] form
// ParsePublish reads.
func (p PortMapping) String() string {
	s := fmt.Sprintf("%d:%d", p.HostPort, p.GuestPort)
	if p.HostIP != "" {
		s = net6(p.HostIP) + ":" + s
	}
	if p.Protocol() != ProtoTCP {
		s += "/" + p.Protocol()
	}
	return s
}

// net6 brackets an IPv6 address for a HOST:PORT form.
func net6(ip string) string {
	if strings.Contains(ip, ":") {
		return "[" + ip + "]"
	}
	return ip
}

// ParsePublish parses a `--publish` value as docker takes it:
// [HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|/udp], an IPv6 HOST_IP in brackets
// ("[::1]:8080:80"). Ports are 1..65535. Any HOST_IP is accepted: one that
// is not loopback (e.g. 0.0.0.0) makes the port reachable from other
// hosts, which only an explicit address asks for; without one the port
// listens on loopback only. UDP is refused (not forwarded yet). Errors
// name the value and what is wrong.
func ParsePublish(spec string) (PortMapping, error) {
	bad := func(why string) (PortMapping, error) {
		return PortMapping{}, fmt.Errorf("--publish %q: %s; use [HOST_IP:]HOST_PORT:GUEST_PORT, e.g. 8080:80 or 127.0.0.1:8080:80", spec, why)
	}
	var p PortMapping
	s := spec
	if base, proto, ok := strings.Cut(s, "/"); ok {
		switch proto {
		case ProtoTCP:
		case ProtoUDP:
			return PortMapping{}, fmt.Errorf("--publish %q: UDP ports are not forwarded yet; publish TCP ports only", spec)
		default:
			return bad(fmt.Sprintf("unknown protocol %q (tcp)", proto))
		}
		s = base
	}
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 || len(s) < end+2 || s[end+1] != ':' {
			return bad("unclosed [ in the host address")
		}
		p.HostIP, s = s[1:end], s[end+2:]
		if a, err := netip.ParseAddr(p.HostIP); err != nil || !a.Is6() {
			return bad(fmt.Sprintf("%q is not an IPv6 address", p.HostIP))
		}
	}
	parts := strings.Split(s, ":")
	switch {
	case len(parts) == 3 && p.HostIP == "":
		p.HostIP = parts[0]
		a, err := netip.ParseAddr(p.HostIP)
		if err != nil || !a.Is4() {
			return bad(fmt.Sprintf("%q is not an IP address (an IPv6 one goes in brackets)", p.HostIP))
		}
		parts = parts[1:]
	case len(parts) == 2:
	case len(parts) == 1:
		return bad("no host port")
	default:
		return bad("too many colons")
	}
	var err error
	if p.HostPort, err = parsePort(parts[0]); err != nil {
		return bad("host port " + err.Error())
	}
	if p.GuestPort, err = parsePort(parts[1]); err != nil {
		return bad("guest port " + err.Error())
	}
	if a, _ := netip.ParseAddr(p.HostIP); a.IsValid() {
		p.HostIP = a.String()
	}
	return p, nil
}

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("%d is out of range 1-65535", n)
	}
	return n, nil
}

// hostIPs returns the host addresses a mapping listens on.
func (p PortMapping) hostIPs() []string {
	if p.HostIP == "" {
		return []string{"127.0.0.1", "::1"}
	}
	return []string{p.HostIP}
}

// Overlaps reports whether p and q would listen on one host socket: the
// same protocol and host port, and an address in common (an unspecified
// address such as 0.0.0.0 overlaps every address of its family).
func (p PortMapping) Overlaps(q PortMapping) bool {
	if p.HostPort != q.HostPort || p.Protocol() != q.Protocol() {
		return false
	}
	for _, a := range p.hostIPs() {
		for _, b := range q.hostIPs() {
			x, _ := netip.ParseAddr(a)
			y, _ := netip.ParseAddr(b)
			if x == y || (x.Is4() == y.Is4() && (x.IsUnspecified() || y.IsUnspecified())) {
				return true
			}
		}
	}
	return false
}

// checkPublish refuses two mappings of c on one host socket.
func checkPublish(c *Config) error {
	for i, p := range c.Publish {
		for _, q := range c.Publish[:i] {
			if p.Overlaps(q) {
				return fmt.Errorf("--publish %s and %s both take host port %d: publish each host port once", q, p, p.HostPort)
			}
		}
	}
	return nil
}

// checkPublishFree refuses a mapping of c that another machine of m
// publishes already.
func (m *Manager) checkPublishFree(c *Config) error {
	if len(c.Publish) == 0 {
		return nil
	}
	names, err := m.Names()
	if err != nil {
		return err
	}
	for _, n := range names {
		if n == c.Name {
			continue
		}
		o, err := m.Load(n)
		if err != nil {
			continue
		}
		for _, p := range c.Publish {
			for _, q := range o.Publish {
				if p.Overlaps(q) {
					return fmt.Errorf("--publish %s: machine %s publishes host port %d already (%s): choose another host port, or change %s's with `machinetop machine set -n %s publish=...`", p, n, q.HostPort, q, n, n)
				}
			}
		}
	}
	return nil
}
