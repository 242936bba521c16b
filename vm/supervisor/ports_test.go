//go:build linux

package supervisor_test

import (
	"context"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/vm/control"
	"github.com/machinetop/machinetop/vm/fake"
)

// TestPortsFollowTheGuest runs a supervisor over the fake backend whose
// guest reports a listener: the supervisor forwards it on the host's
// loopback, shows it in the status, and drops it when the guest stops
// listening; SSH and a published port are forwarded from the start.
func TestPortsFollowTheGuest(t *testing.T) {
	// The "guest" server runs on this host (the fake agent dials here),
	// on 127.0.0.2 so that the same port is free on 127.0.0.1.
	port := helloServer(t, "127.0.0.2:0")
	// A published port's server listens on the "guest's" loopback.
	pubGuest := helloServer(t, "127.0.0.1:0")
	pubHost := freePort(t)
	var mu sync.Mutex
	listening := []proto.Listener{{Addr: "127.0.0.2", Port: port}}
	mc := newMachine(t, fake.Script{Features: fake.DefaultFeatures(), Listeners: func() ([]proto.Listener, error) {
		mu.Lock()
		defer mu.Unlock()
		return listening, nil
	}})
	if err := mc.m.Set(mc.cfg, map[string]string{"publish": "127.0.0.1:" + strconv.Itoa(pubHost) + ":" + strconv.Itoa(pubGuest)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mc.supervise(ctx)

	find := func(st *control.Status, kind string) *control.PortForward {
		for i := range st.Ports {
			if st.Ports[i].Kind == kind {
				return &st.Ports[i]
			}
		}
		return nil
	}
	st := mc.watch(func(st *control.Status) bool { return find(st, control.ForwardAuto) != nil })
	auto := find(st, control.ForwardAuto)
	if auto.GuestPort != port || auto.HostPort != port || auto.GuestAddr != "127.0.0.2" {
		t.Fatalf("automatic forward %+v, want guest and host port %d", auto, port)
	}
	if ssh := find(st, control.ForwardSSH); ssh == nil || ssh.HostPort != st.SSHPort || ssh.GuestPort != 22 || st.Ports[0].Kind != control.ForwardSSH {
		t.Errorf("SSH forward: %+v (SSH port %d)", st.Ports, st.SSHPort)
	}
	if pub := find(st, control.ForwardPublished); pub == nil || pub.HostPort != pubHost || pub.GuestPort != pubGuest || pub.Error != "" {
		t.Errorf("published forward: %+v", pub)
	}
	for _, hp := range []int{port, pubHost} {
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(hp)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(c)
		c.Close()
		if string(b) != "hello from the guest" {
			t.Errorf("through host port %d: %q", hp, b)
		}
	}
	mu.Lock()
	listening = nil
	mu.Unlock()
	mc.watch(func(st *control.Status) bool { return find(st, control.ForwardAuto) == nil })
	if _, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
		t.Error("the host port still accepts after the guest stopped listening")
	}
}

// freePort returns a port free on 127.0.0.1 now.
func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// helloServer listens on addr and writes a greeting to each connection;
// the last listener made is ln0.
func helloServer(t *testing.T, addr string) int {
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
			c.Write([]byte("hello from the guest"))
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestPortForwardingOff(t *testing.T) {
	mc := newMachine(t, fake.Script{Features: fake.DefaultFeatures(), Listeners: func() ([]proto.Listener, error) {
		return []proto.Listener{{Addr: "127.0.0.2", Port: 1}}, nil
	}})
	if err := mc.m.Set(mc.cfg, map[string]string{"port-forwarding": "off"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mc.supervise(ctx)
	st := mc.watch(ready)
	for _, p := range st.Ports {
		if p.Kind == control.ForwardAuto {
			t.Errorf("forwarded automatically with port-forwarding=off: %+v", p)
		}
	}
}

// TestPortsAfterReconnect drops the agent channel: the forwards stay, and
// the reconnected agent's first report brings them in step.
func TestPortsAfterReconnect(t *testing.T) {
	a := helloServer(t, "127.0.0.2:0")
	b := helloServer(t, "127.0.0.2:0")
	var mu sync.Mutex
	listening := []proto.Listener{{Addr: "127.0.0.2", Port: a}}
	mc := newMachine(t, fake.Script{Features: fake.DefaultFeatures(), Listeners: func() ([]proto.Listener, error) {
		mu.Lock()
		defer mu.Unlock()
		return listening, nil
	}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mc.supervise(ctx)
	has := func(st *control.Status, port int) bool {
		for _, p := range st.Ports {
			if p.Kind == control.ForwardAuto && p.GuestPort == port {
				return true
			}
		}
		return false
	}
	mc.watch(func(st *control.Status) bool { return st.AgentReady && has(st, a) })
	mu.Lock()
	mc.be.VM(mc.run.Dir).DropAgent()
	listening = []proto.Listener{{Addr: "127.0.0.2", Port: b}}
	mu.Unlock()
	st := mc.watch(func(st *control.Status) bool { return st.AgentReady && has(st, b) && !has(st, a) })
	if len(st.Ports) != 2 { // SSH and b
		t.Errorf("after the reconnect: %+v", st.Ports)
	}
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(b)))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(c)
	c.Close()
	if string(got) != "hello from the guest" {
		t.Errorf("through the new forward: %q", got)
	}
}
