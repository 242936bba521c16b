//go:build linux

package agent

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/machinetop/machinetop/guest/listeners"
	"github.com/machinetop/machinetop/guest/proto"
)

// listenerPoll is how often an OpPorts stream looks at the socket tables.
// Reading both tables of a guest with a few dozen sockets takes well
// under a millisecond.
const listenerPoll = 500 * time.Millisecond

// dialTimeout bounds an OpDial connect inside the guest.
const dialTimeout = 5 * time.Second

// listeners returns the guest's listening TCP sockets: Server.Listeners,
// else the kernel's tables. The agent itself listens on no TCP socket
// (its channel is virtio-serial or vsock), so nothing of its own shows.
func (s *Server) listeners() ([]proto.Listener, error) {
	if s.Listeners != nil {
		return s.Listeners()
	}
	return listeners.Read("/proc")
}

// ports serves OpPorts: a Listeners line now and at every change, until
// the host closes the stream (or a write fails).
func (s *Server) ports(conn net.Conn, br *bufio.Reader) {
	gone := make(chan struct{})
	go func() { io.Copy(io.Discard, br); close(gone) }()
	t := time.NewTicker(listenerPoll)
	defer t.Stop()
	var last []proto.Listener
	first := true
	for {
		ls, err := s.listeners()
		if err != nil {
			proto.WriteLine(conn, proto.Response{Error: fmt.Sprintf("ports: %v", err)})
			return
		}
		if ls == nil {
			ls = []proto.Listener{}
		}
		if first || !slices.Equal(ls, last) {
			if proto.WriteLine(conn, proto.Listeners{Listeners: ls}) != nil {
				return
			}
			first, last = false, ls
		}
		select {
		case <-gone:
			return
		case <-t.C:
		}
	}
}

// dialTargets is where OpDial connects for a listener's address:
// loopback for a wildcard (for "::" and "" both families, as an IPv6
// wildcard socket may be IPv6-only and "" names no family), the address
// itself otherwise.
func dialTargets(addr string, port int) []string {
	p := strconv.Itoa(port)
	switch addr {
	case "0.0.0.0":
		return []string{net.JoinHostPort("127.0.0.1", p)}
	case "::":
		return []string{net.JoinHostPort("::1", p), net.JoinHostPort("127.0.0.1", p)}
	case "":
		return []string{net.JoinHostPort("127.0.0.1", p), net.JoinHostPort("::1", p)}
	}
	return []string{net.JoinHostPort(addr, p)}
}

// dial serves OpDial: connect inside the guest, answer, then copy bytes
// both ways, passing on each direction's end as a half-close.
func (s *Server) dial(conn net.Conn, br *bufio.Reader, req *proto.DialRequest) {
	if req.Port < 1 || req.Port > 65535 {
		proto.WriteLine(conn, proto.Response{Error: fmt.Sprintf("dial: port %d out of range 1-65535", req.Port)})
		return
	}
	var c net.Conn
	var err error
	for _, target := range dialTargets(req.Addr, req.Port) {
		ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp", target)
		cancel()
		if err == nil {
			break
		}
	}
	if err != nil {
		proto.WriteLine(conn, proto.Response{Error: fmt.Sprintf("dial: %v", err)})
		return
	}
	defer c.Close()
	if proto.WriteLine(conn, proto.Response{}) != nil {
		return
	}
	proto.Splice(c.(*net.TCPConn), conn, br)
}
