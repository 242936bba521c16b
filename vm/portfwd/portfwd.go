// Package portfwd forwards host TCP ports to a machine's guest ports
// through its agent channel (guest/proto's OpDial), so it works the same
// on every backend and needs neither root nor a network between host and
// guest. A Forwarder holds static forwards (SSH and the ports published
// with --publish, listening for as long as the machine runs) and
// automatic ones, which follow the guest's listening sockets as the agent
// reports them (SetListeners).
//
// Automatic forwards listen on the host's loopback only, 127.0.0.1 and
// ::1 (where the host has IPv6), on the guest's port number when it is
// free; when it is taken, on a port the kernel picks, which the forward's
// Note names. A guest port below 1024 that this host does not let the
// supervisor bind (an ordinary user, see ip_unprivileged_port_start) is
// forwarded from the port LowPortOffset higher (80 → 10080), or a picked
// port when that one is taken too.
package portfwd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/vm/control"
)

// LowPortOffset is added to a guest port below 1024 that the host does
// not let machinetop bind: guest port 80 is forwarded from 10080.
const LowPortOffset = 10000

// DialTimeout bounds how long an accepted connection waits for the guest
// side to connect (Dialer), the agent's reconnection included.
const DialTimeout = 30 * time.Second

// Dialer connects to port in the guest, dialling addr there (a guest
// listener's address, "" for loopback; see proto.DialRequest). The
// connection's Close must half-close it (as a yamux stream's does) and
// its reads carry the guest server's bytes.
type Dialer func(ctx context.Context, addr string, port int) (net.Conn, error)

// Rule is a static forward: HostIP:HostPort ("" HostIP: 127.0.0.1 and
// ::1) to the guest's GuestPort.
type Rule struct {
	// Kind is control.ForwardPublished or control.ForwardSSH.
	Kind      string
	HostIP    string
	HostPort  int
	GuestPort int
}

// Forwarder forwards host ports to one machine's guest ports. Its methods
// are safe for concurrent use.
type Forwarder struct {
	dial    Dialer
	log     *slog.Logger
	changed func()
	// listen is net.Listen; tests make it refuse low ports.
	listen func(network, addr string) (net.Listener, error)

	mu     sync.Mutex
	static []*forward
	auto   map[int]*forward // by guest port
	closed bool
}

// forward is one forwarded guest port and the host sockets serving it.
type forward struct {
	info control.PortForward
	lns  []net.Listener
}

// New returns a Forwarder that reaches the guest with dial, logs to log,
// and calls changed (may be nil) after every change of what List returns.
func New(dial Dialer, log *slog.Logger, changed func()) *Forwarder {
	return &Forwarder{dial: dial, log: log, changed: changed, auto: map[int]*forward{}, listen: net.Listen}
}

// Static starts the static forwards: each listens at once, whether or not
// the guest listens yet (a connection then fails and is closed). One
// whose address cannot be listened on is listed with Error set and
// logged; Static does not fail.
func (f *Forwarder) Static(rules []Rule) {
	f.mu.Lock()
	for _, r := range rules {
		fw := &forward{info: control.PortForward{Kind: r.Kind, Proto: "tcp", GuestPort: r.GuestPort, HostPort: r.HostPort, Since: time.Now()}}
		ips := []string{r.HostIP}
		if r.HostIP == "" {
			ips = []string{"127.0.0.1", "::1"}
		}
		for i, ip := range ips {
			ln, err := f.listen("tcp", net.JoinHostPort(ip, strconv.Itoa(r.HostPort)))
			if err != nil {
				// ::1 on a host without IPv6 is no failure, when
				// 127.0.0.1 listens.
				if i > 0 && r.HostIP == "" && noIPv6(err) {
					continue
				}
				fw.info.Error = err.Error()
				f.log.Warn("cannot forward port", "kind", r.Kind, "host", net.JoinHostPort(ip, strconv.Itoa(r.HostPort)), "guest", r.GuestPort, "err", err)
				continue
			}
			fw.lns = append(fw.lns, ln)
		}
		f.serve(fw, "")
		f.static = append(f.static, fw)
	}
	f.mu.Unlock()
	f.notify()
}

// SetListeners makes the automatic forwards match the guest's listening
// sockets ls (each call replaces the previous set, as proto.Listeners
// lines do): a forward for each new guest port, and the forwards of
// ports no longer listened on closed at once (connections already made
// keep going). Guest ports a static rule forwards are left to it.
func (f *Forwarder) SetListeners(ls []proto.Listener) {
	want := map[int]string{} // guest port → address to dial
	for _, l := range ls {
		if a, ok := want[l.Port]; !ok || (!wildcard(a) && wildcard(l.Addr)) {
			want[l.Port] = l.Addr
		}
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	for _, fw := range f.static {
		delete(want, fw.info.GuestPort)
	}
	change := false
	for port, fw := range f.auto {
		if a, ok := want[port]; !ok || a != fw.info.GuestAddr {
			fw.close()
			delete(f.auto, port)
			f.log.Info("port no longer forwarded", "guest", port, "host", fw.info.HostPort)
			change = true
		}
	}
	for port, addr := range want {
		if _, ok := f.auto[port]; ok {
			continue
		}
		fw := f.listenAuto(port, addr)
		if fw == nil {
			continue
		}
		f.auto[port] = fw
		change = true
	}
	f.mu.Unlock()
	if change {
		f.notify()
	}
}

// ClearAuto closes every automatic forward (automatic forwarding turned
// off, or the guest's reports ended for good).
func (f *Forwarder) ClearAuto() { f.SetListeners(nil) }

// wildcard reports whether a guest listener's address takes every
// address of its family.
func wildcard(addr string) bool { return addr == "0.0.0.0" || addr == "::" }

// listenAuto listens for guest port on the host's loopback (see the
// package comment for the port it picks) and serves it; nil when no port
// could be listened on (logged).
func (f *Forwarder) listenAuto(port int, addr string) *forward {
	fw := &forward{info: control.PortForward{Kind: control.ForwardAuto, Proto: "tcp", GuestPort: port, GuestAddr: addr, Since: time.Now()}}
	lns, err := f.listenLoopback(port)
	switch {
	case err == nil:
	case port < 1024 && errors.Is(err, syscall.EACCES):
		if lns, err = f.listenLoopback(port + LowPortOffset); err == nil {
			fw.info.Note = fmt.Sprintf("host port %d needs privileges; forwarded from %d", port, port+LowPortOffset)
		} else if lns, err = f.listenLoopback(0); err == nil {
			fw.info.Note = fmt.Sprintf("host port %d needs privileges and %d is taken; forwarded from a free port", port, port+LowPortOffset)
		}
	default:
		if lns, err = f.listenLoopback(0); err == nil {
			fw.info.Note = fmt.Sprintf("host port %d is taken; forwarded from a free port", port)
		}
	}
	if err != nil {
		f.log.Warn("cannot forward port", "guest", port, "err", err)
		return nil
	}
	fw.lns = lns
	fw.info.HostPort = lns[0].Addr().(*net.TCPAddr).Port
	f.log.Info("forwarding port", "guest", net.JoinHostPort(addr, strconv.Itoa(port)), "host", fw.info.HostPort, "note", fw.info.Note)
	f.serve(fw, addr)
	return fw
}

// listenLoopback listens on port (0: one the kernel picks) of 127.0.0.1
// and, with the same number, of ::1 (left out on a host without IPv6).
func (f *Forwarder) listenLoopback(port int) ([]net.Listener, error) {
	for try := 0; ; try++ {
		l4, err := f.listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			return nil, err
		}
		p := l4.Addr().(*net.TCPAddr).Port
		l6, err := f.listen("tcp6", net.JoinHostPort("::1", strconv.Itoa(p)))
		switch {
		case err == nil:
			return []net.Listener{l4, l6}, nil
		case noIPv6(err):
			return []net.Listener{l4}, nil
		}
		l4.Close()
		if port != 0 || try == 10 {
			return nil, err
		}
		// The kernel's pick for IPv4 is taken on ::1: pick again.
	}
}

// noIPv6 reports whether a listen failed for want of IPv6 on the host.
func noIPv6(err error) bool {
	return errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EAFNOSUPPORT) || errors.Is(err, syscall.EPROTONOSUPPORT)
}

// serve records fw's host addresses and accepts on its listeners,
// forwarding each connection to the guest's port at addr.
func (f *Forwarder) serve(fw *forward, addr string) {
	for _, ln := range fw.lns {
		fw.info.HostAddrs = append(fw.info.HostAddrs, ln.Addr().String())
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go f.handle(c.(*net.TCPConn), addr, fw.info.GuestPort)
			}
		}()
	}
}

// handle connects c to the guest's port and splices the two until both
// directions have ended.
func (f *Forwarder) handle(c *net.TCPConn, addr string, port int) {
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), DialTimeout)
	g, err := f.dial(ctx, addr, port)
	cancel()
	if err != nil {
		f.log.Debug("forwarded connection failed", "guest", port, "err", err)
		return
	}
	defer g.Close()
	proto.Splice(c, g, g)
}

func (fw *forward) close() {
	for _, ln := range fw.lns {
		ln.Close()
	}
}

// List returns the forwards, SSH first, then by guest port.
func (f *Forwarder) List() []control.PortForward {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]control.PortForward, 0, len(f.static)+len(f.auto))
	for _, fw := range f.static {
		out = append(out, fw.info)
	}
	for _, fw := range f.auto {
		out = append(out, fw.info)
	}
	slices.SortStableFunc(out, func(a, b control.PortForward) int {
		if (a.Kind == control.ForwardSSH) != (b.Kind == control.ForwardSSH) {
			if a.Kind == control.ForwardSSH {
				return -1
			}
			return 1
		}
		return a.GuestPort - b.GuestPort
	})
	return out
}

// Close closes every host socket of the Forwarder; it forwards nothing
// afterwards.
func (f *Forwarder) Close() {
	f.mu.Lock()
	f.closed = true
	for _, fw := range f.static {
		fw.close()
	}
	for _, fw := range f.auto {
		fw.close()
	}
	f.static, f.auto = nil, map[int]*forward{}
	f.mu.Unlock()
	f.notify()
}

func (f *Forwarder) notify() {
	if f.changed != nil {
		f.changed()
	}
}
