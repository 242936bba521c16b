package netd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/containers/gvisor-tap-vsock/pkg/services/dhcp"
	"github.com/containers/gvisor-tap-vsock/pkg/services/dns"
	"github.com/containers/gvisor-tap-vsock/pkg/services/forwarder"
	"github.com/containers/gvisor-tap-vsock/pkg/tap"
	"github.com/containers/gvisor-tap-vsock/pkg/types"
	"github.com/gofrs/flock"
	"github.com/sirupsen/logrus"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/machinetop/machinetop/vm/layout"
)

// DefaultIdle is how long the network process stays up after its last
// machine disconnected (or, when started, waits for its first).
const DefaultIdle = 30 * time.Second

// Options configure Serve.
type Options struct {
	// Socket is the unix socket to serve (made mode 0600).
	Socket string
	// Lock is the lock file that keeps a second network process of the
	// same data directory from running.
	Lock string
	// Idle is how long to wait for a machine before exiting; 0 means
	// DefaultIdle.
	Idle time.Duration
	// Log receives the network's log lines; nil means io.Discard.
	Log io.Writer
	// Upstream resolves the names that are not machines'; nil means the
	// host's resolver.
	Upstream *net.Resolver
}

// ErrRunning is returned by Serve when another process serves the
// network of the same data directory.
var ErrRunning = errors.New("the machine network is already running")

// network is the switch, the gateway's stack and its services.
type network struct {
	sw   *tap.Switch
	pool *tap.IPPool
	res  *resolver
	log  *slog.Logger

	mu      sync.Mutex
	members map[string]*member // by machine name
	active  int                // connections open
	closing bool               // the listener is closed: refuse what comes
}

// member is a connected machine.
type member struct {
	Hello
	ip net.IP
}

// Serve runs the machine network until ctx ends or no machine has been
// connected for Options.Idle. It returns ErrRunning at once (after
// waiting up to 5 s for a process that is on its way out) when another
// process serves it. Serve listens on nothing but Options.Socket; the
// host side of the network opens outgoing connections only (the NAT of
// guests' flows). Ports reach the host through the supervisors' forwards
// (vm/portfwd), not through the network.
func Serve(ctx context.Context, o Options) error {
	if o.Idle == 0 {
		o.Idle = DefaultIdle
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	lock := flock.New(o.Lock, flock.SetFlag(layout.LockFlag))
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	ok, err := lock.TryLockContext(lctx, 50*time.Millisecond)
	cancel()
	if !ok {
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			return ErrRunning
		}
		return fmt.Errorf("locking %s: %w", o.Lock, err)
	}
	defer lock.Unlock()
	logrus.SetOutput(o.Log)
	n, err := newNetwork(o.Upstream, slog.New(slog.NewTextHandler(o.Log, nil)))
	if err != nil {
		return err
	}
	warnRoutes(n.log)
	ln, err := layout.ListenUnix(o.Socket)
	if err != nil {
		return err
	}
	defer ln.Close()
	idle := time.AfterFunc(o.Idle, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.active == 0 && !n.closing {
			n.closing = true
			n.log.Info("no machine connected: exiting", "idle", o.Idle)
			ln.Close()
		}
	})
	go func() {
		<-ctx.Done()
		n.mu.Lock()
		n.closing = true
		n.mu.Unlock()
		ln.Close()
	}()
	n.log.Info("machine network up", "subnet", Subnet, "gateway", Gateway, "socket", o.Socket)
	for {
		c, err := ln.Accept()
		if err != nil {
			n.mu.Lock()
			closing := n.closing
			n.mu.Unlock()
			if closing {
				return nil
			}
			return err
		}
		n.mu.Lock()
		if n.closing {
			n.mu.Unlock()
			c.Close()
			continue
		}
		n.active++
		idle.Stop()
		n.mu.Unlock()
		go func() {
			n.handle(ctx, c)
			n.mu.Lock()
			n.active--
			if n.active == 0 {
				idle.Reset(o.Idle)
			}
			n.mu.Unlock()
		}()
	}
}

// newNetwork builds the switch and the gateway: a gVisor stack with the
// gateway's address (and HostAlias, which is NATed to the host's
// 127.0.0.1), TCP and UDP forwarders that open every flow a guest starts
// on the host, DHCP with the static leases members add, and DNS.
func newNetwork(upstream *net.Resolver, log *slog.Logger) (*network, error) {
	cfg := &types.Configuration{
		Subnet:            Subnet.String(),
		GatewayIP:         Gateway.String(),
		GatewayMacAddress: GatewayMAC,
		MTU:               MTU,
		GatewayVirtualIPs: []string{HostAlias.String()},
		DNSSearchDomains:  []string{Domain},
	}
	_, ipnet, err := net.ParseCIDR(cfg.Subnet)
	if err != nil {
		return nil, err
	}
	pool := tap.NewIPPool(ipnet)
	pool.Reserve(net.IP(Gateway.AsSlice()), GatewayMAC)
	pool.Reserve(net.IP(HostAlias.AsSlice()), GatewayMAC)
	ep, err := tap.NewLinkEndpoint(false, MTU, GatewayMAC, cfg.GatewayIP, cfg.GatewayVirtualIPs)
	if err != nil {
		return nil, fmt.Errorf("machine network: %w", err)
	}
	sw := tap.NewSwitch(false)
	ep.Connect(sw)
	sw.Connect(ep)
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4},
	})
	if err := s.CreateNIC(1, ep); err != nil {
		return nil, fmt.Errorf("machine network: %s", err)
	}
	gw := tcpip.AddrFrom4(Gateway.As4())
	if err := s.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: gw.WithPrefix()}, stack.AddressProperties{}); err != nil {
		return nil, fmt.Errorf("machine network: %s", err)
	}
	// Spoofing and promiscuous mode let the stack take flows to any
	// address, which the forwarders then open on the host.
	s.SetSpoofing(1, true)
	s.SetPromiscuousMode(1, true)
	sub, err := tcpip.NewSubnet(tcpip.AddrFrom4(Subnet.Addr().As4()), tcpip.MaskFromBytes(ipnet.Mask))
	if err != nil {
		return nil, err
	}
	s.SetRouteTable([]tcpip.Route{{Destination: sub, NIC: 1}})
	nat := map[tcpip.Address]tcpip.Address{tcpip.AddrFrom4(HostAlias.As4()): tcpip.AddrFrom4([4]byte{127, 0, 0, 1})}
	var natLock sync.Mutex
	s.SetTransportProtocolHandler(tcp.ProtocolNumber, forwarder.TCP(s, nat, &natLock, false).HandlePacket)
	s.SetTransportProtocolHandler(udp.ProtocolNumber, forwarder.UDP(s, nat, &natLock, false).HandlePacket)

	res := newResolver(upstream)
	dnsAddr := tcpip.FullAddress{NIC: 1, Addr: gw, Port: 53}
	udpConn, err := gonet.DialUDP(s, &dnsAddr, nil, ipv4.ProtocolNumber)
	if err != nil {
		return nil, fmt.Errorf("machine network DNS: %w", err)
	}
	tcpLn, err := gonet.ListenTCP(s, dnsAddr, ipv4.ProtocolNumber)
	if err != nil {
		return nil, fmt.Errorf("machine network DNS: %w", err)
	}
	if err := serveDNS(udpConn, tcpLn, res, log); err != nil {
		return nil, err
	}
	dh, err := dhcp.New(cfg, s, pool)
	if err != nil {
		return nil, fmt.Errorf("machine network DHCP: %w", err)
	}
	go func() { log.Error("DHCP server ended", "err", dh.Serve()) }()
	return &network{
		sw: sw, pool: pool, res: res, log: log,
		members: map[string]*member{},
	}, nil
}

// serveDNS serves DNS on pc (UDP) and ln (TCP), names from res.
func serveDNS(pc net.PacketConn, ln net.Listener, res *resolver, log *slog.Logger) error {
	srv, err := dns.NewWithUpstreamResolver(pc, ln, nil, res)
	if err != nil {
		return fmt.Errorf("machine network DNS: %w", err)
	}
	go func() { log.Error("DNS server (UDP) ended", "err", srv.Serve()) }()
	go func() { log.Error("DNS server (TCP) ended", "err", srv.ServeTCP()) }()
	return nil
}

// handle serves one connection: its Hello, the reply, then its frames
// until it closes.
func (n *network) handle(ctx context.Context, c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var h Hello
	if err := readMessage(c, &h); err != nil {
		n.log.Warn("bad hello", "err", err)
		return
	}
	m, err := n.join(h)
	var r reply
	if err != nil {
		r.Error = err.Error()
	}
	if werr := writeMessage(c, r); werr != nil || err != nil {
		n.log.Warn("machine not joined", "machine", h.Name, "err", errors.Join(err, werr))
		if m != nil {
			n.leave(m)
		}
		return
	}
	c.SetDeadline(time.Time{})
	n.log.Info("machine joined", "machine", h.Name, "ip", h.IP, "mac", h.MAC)
	defer n.leave(m)
	if err := n.sw.Accept(ctx, c, types.QemuProtocol); err != nil {
		n.log.Info("machine connection ended", "machine", h.Name, "err", err)
	}
}

// join checks h and makes its machine a member: its static DHCP lease,
// and its DNS name. A machine of the same name that is
// still a member (a connection not yet seen closed, after a restart) is
// replaced.
func (n *network) join(h Hello) (*member, error) {
	if h.Name == "" || len(h.Name) > 63 || net.ParseIP(h.Name) != nil || containsDot(h.Name) {
		return nil, fmt.Errorf("invalid machine name %q", h.Name)
	}
	addr, err := netip.ParseAddr(h.IP)
	if err != nil {
		return nil, fmt.Errorf("machine %s: invalid address %q", h.Name, h.IP)
	}
	if err := CheckAddr(addr); err != nil {
		return nil, fmt.Errorf("machine %s: %w", h.Name, err)
	}
	hw, err := net.ParseMAC(h.MAC)
	if err != nil || len(hw) != 6 {
		return nil, fmt.Errorf("machine %s: invalid MAC address %q", h.Name, h.MAC)
	}
	h.MAC = hw.String()
	m := &member{Hello: h, ip: net.IP(addr.AsSlice())}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, o := range n.members {
		if o.Name != h.Name && (o.IP == h.IP || o.MAC == h.MAC) {
			return nil, fmt.Errorf("machine %s: address %s (%s) is in use by machine %s", h.Name, h.IP, h.MAC, o.Name)
		}
	}
	if old := n.members[h.Name]; old != nil {
		n.drop(old)
	}
	n.pool.Reserve(m.ip, h.MAC)
	n.res.set(h.Name, m.ip)
	n.members[h.Name] = m
	return m, nil
}

// leave removes m when it is still the member of its name. Its DHCP lease
// stays: the address is the machine's.
func (n *network) leave(m *member) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.members[m.Name] == m {
		n.drop(m)
		n.log.Info("machine left", "machine", m.Name)
	}
}

// drop removes m's name; the caller holds n.mu.
func (n *network) drop(m *member) {
	delete(n.members, m.Name)
	n.res.set(m.Name, nil)
}

func containsDot(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			return true
		}
	}
	return false
}

// warnRoutes logs a warning when one of the host's own addresses lies in
// Subnet: its machines would not reach that network's hosts.
func warnRoutes(log *slog.Logger) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return
	}
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err == nil && p.Overlaps(Subnet) {
			log.Warn("the host has an address in the machine network: machines cannot reach that network's hosts", "address", a.String(), "subnet", Subnet)
		}
	}
}
