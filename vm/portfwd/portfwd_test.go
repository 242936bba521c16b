//go:build linux

package portfwd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/yamux"

	"github.com/machinetop/machinetop/guest/agent"
	"github.com/machinetop/machinetop/guest/client"
	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/vm/control"
)

// agentDialer runs the real guest agent on one end of a pipe and returns
// a Dialer over the other: the "guest" is this host.
func agentDialer(t *testing.T) Dialer {
	h, g := net.Pipe()
	gs, err := yamux.Server(g, client.YamuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	go new(agent.Server).Serve(gs)
	hs, err := yamux.Client(h, client.YamuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hs.Close(); gs.Close() })
	cl := client.FromSession(hs)
	return func(ctx context.Context, addr string, port int) (net.Conn, error) {
		return cl.DialGuest(ctx, addr, port)
	}
}

// upperServer listens on addr (port 0: any) and answers each connection
// with a banner, then, after the client's half-close, what it read in
// upper case.
func upperServer(t *testing.T, addr string) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte("hi\n"))
				b, _ := io.ReadAll(c)
				c.Write([]byte(strings.ToUpper(string(b))))
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// roundTrip connects to addr, sends msg, half-closes and returns all it
// read.
func roundTrip(addr, msg string) (string, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.Write([]byte(msg))
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	return string(b), err
}

func newForwarder(t *testing.T) (*Forwarder, chan struct{}) {
	changed := make(chan struct{}, 100)
	f := New(agentDialer(t), slog.New(slog.DiscardHandler), func() { changed <- struct{}{} })
	t.Cleanup(f.Close)
	return f, changed
}

func TestAutoForwardSamePort(t *testing.T) {
	f, _ := newForwarder(t)
	// The "guest" listens on 127.0.0.2, so the same port is free on the
	// host's 127.0.0.1.
	port := upperServer(t, "127.0.0.2:0")
	f.SetListeners([]proto.Listener{{Addr: "127.0.0.2", Port: port}})
	ls := f.List()
	if len(ls) != 1 || ls[0].HostPort != port || ls[0].Kind != control.ForwardAuto || ls[0].Note != "" || ls[0].Since.IsZero() {
		t.Fatalf("List = %+v, want guest port %d on host port %d", ls, port, port)
	}
	for _, a := range ls[0].HostAddrs {
		ip, _, _ := net.SplitHostPort(a)
		if !net.ParseIP(ip).IsLoopback() {
			t.Errorf("forward listens on %s, not loopback", a)
		}
	}
	got, err := roundTrip(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), "ping")
	if err != nil || got != "hi\nPING" {
		t.Fatalf("through the forward: %q, %v", got, err)
	}
	// The guest stops listening: the host port closes at once.
	f.SetListeners(nil)
	if len(f.List()) != 0 {
		t.Fatalf("List after close = %+v", f.List())
	}
	if _, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
		t.Fatal("the host port still accepts after the guest closed its listener")
	}
}

func TestAutoForwardTakenPort(t *testing.T) {
	f, _ := newForwarder(t)
	// The "guest" server holds 127.0.0.1:port on this host itself, so
	// the host's port is taken.
	port := upperServer(t, "127.0.0.1:0")
	f.SetListeners([]proto.Listener{{Addr: "0.0.0.0", Port: port}, {Addr: "::", Port: port, IPv6: true}})
	ls := f.List()
	if len(ls) != 1 || ls[0].HostPort == port || ls[0].HostPort == 0 || !strings.Contains(ls[0].Note, fmt.Sprintf("host port %d is taken", port)) {
		t.Fatalf("List = %+v, want another host port and a note", ls)
	}
	// A wildcard listener is preferred and dialled on loopback.
	if ls[0].GuestAddr != "0.0.0.0" {
		t.Errorf("GuestAddr = %q", ls[0].GuestAddr)
	}
	got, err := roundTrip(net.JoinHostPort("127.0.0.1", strconv.Itoa(ls[0].HostPort)), "x")
	if err != nil || got != "hi\nX" {
		t.Fatalf("through the forward: %q, %v", got, err)
	}
	// The same report again changes nothing.
	f.SetListeners([]proto.Listener{{Addr: "0.0.0.0", Port: port}})
	if again := f.List(); len(again) != 1 || again[0].HostPort != ls[0].HostPort {
		t.Fatalf("a repeated report moved the forward: %+v", again)
	}
}

func TestLowPortOffset(t *testing.T) {
	f, _ := newForwarder(t)
	f.listen = func(network, addr string) (net.Listener, error) {
		_, p, _ := net.SplitHostPort(addr)
		if n, _ := strconv.Atoi(p); n > 0 && n < 1024 {
			return nil, &net.OpError{Op: "listen", Net: network, Err: syscall.EACCES}
		}
		return net.Listen(network, addr)
	}
	f.SetListeners([]proto.Listener{{Addr: "::", Port: 80, IPv6: true}})
	ls := f.List()
	if len(ls) != 1 {
		t.Fatalf("List = %+v", ls)
	}
	if ls[0].HostPort != 80+LowPortOffset {
		// 10080 may be taken on this host: then a free port.
		if !strings.Contains(ls[0].Note, "10080 is taken") {
			t.Fatalf("guest port 80 forwarded from %d (%q), want %d", ls[0].HostPort, ls[0].Note, 80+LowPortOffset)
		}
	} else if !strings.Contains(ls[0].Note, "needs privileges") {
		t.Errorf("Note = %q", ls[0].Note)
	}
}

func TestStaticRules(t *testing.T) {
	f, changed := newForwarder(t)
	port := upperServer(t, "127.0.0.2:0")
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hostPort := free.Addr().(*net.TCPAddr).Port
	free.Close()
	taken := upperServer(t, "127.0.0.1:0")
	// The guest is reached on loopback: the server listens on 127.0.0.2
	// only, so a published port's connection to it fails; publish a guest
	// port whose server listens on the guest's 127.0.0.1 instead.
	guest := upperServer(t, "127.0.0.1:0")
	f.Static([]Rule{
		{Kind: control.ForwardPublished, HostIP: "127.0.0.1", HostPort: hostPort, GuestPort: guest},
		{Kind: control.ForwardSSH, HostIP: "127.0.0.1", HostPort: taken, GuestPort: 22},
	})
	<-changed
	ls := f.List()
	if len(ls) != 2 || ls[0].Kind != control.ForwardSSH || ls[0].Error == "" || ls[1].Kind != control.ForwardPublished || ls[1].Error != "" {
		t.Fatalf("List = %+v, want SSH failing (port taken) first, then the published port", ls)
	}
	got, err := roundTrip(net.JoinHostPort("127.0.0.1", strconv.Itoa(hostPort)), "pub")
	if err != nil || got != "hi\nPUB" {
		t.Fatalf("through the published port: %q, %v", got, err)
	}
	// A guest port that is published is not forwarded automatically too.
	f.SetListeners([]proto.Listener{{Addr: "0.0.0.0", Port: guest}, {Addr: "127.0.0.2", Port: port}})
	var auto []int
	for _, l := range f.List() {
		if l.Kind == control.ForwardAuto {
			auto = append(auto, l.GuestPort)
		}
	}
	if ls := f.List(); len(ls) != 3 || len(auto) != 1 || auto[0] != port {
		t.Fatalf("List = %+v, want the published port and only port %d automatic", ls, port)
	}
	// Nothing listens in the guest: the connection is closed.
	f.Static([]Rule{{Kind: control.ForwardPublished, HostIP: "127.0.0.1", HostPort: hostPort + 1, GuestPort: 1}})
	if got, err := roundTrip(net.JoinHostPort("127.0.0.1", strconv.Itoa(hostPort+1)), "x"); err == nil && got != "" {
		t.Errorf("a forward to a closed guest port answered %q", got)
	}
	f.Close()
	if _, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(hostPort))); err == nil {
		t.Error("a published port accepts after Close")
	}
}
