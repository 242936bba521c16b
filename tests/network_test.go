package tests

import (
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// TestMachineNetwork boots two machines on the machine network: each has
// its own address, which ls shows and the guest's eth0 has; one reaches a
// server in the other by the name OTHER.machine and the host's loopback
// through the host alias; an address stays across restart and stop/start.
func TestMachineNetwork(t *testing.T) {
	e := newEnv(t)
	e.must("image", "import", filepath.Join(shared, "busybox.tar"), "busybox:net")
	for _, n := range []string{"neta", "netb"} {
		e.must("machine", "create", "busybox:net", "-n", n, "--cpus", "1", "--memory", "512M", "--home-mount", "none")
	}
	a, b := e.inspect("neta"), e.inspect("netb")
	if a.IP == b.IP || !strings.HasPrefix(a.IP, "192.168.127.") || !strings.HasPrefix(b.IP, "192.168.127.") {
		t.Fatalf("addresses %q and %q: want two distinct ones on 192.168.127.0/24", a.IP, b.IP)
	}
	for _, m := range []machineJSON{a, b} {
		if m.Lease == nil || m.Lease.Address != m.IP+"/24" || m.Lease.Gateway != "192.168.127.1" {
			t.Fatalf("%s: address %q, lease %+v; want the lease's, from the gateway 192.168.127.1", m.Name, m.IP, m.Lease)
		}
		if out := e.mustRun(m.Name, "ip", "-4", "addr", "show", "eth0"); !strings.Contains(out, m.IP+"/24") {
			t.Fatalf("%s: eth0 lacks %s:\n%s", m.Name, m.IP, out)
		}
	}
	ls := e.must("machine", "ls")
	if !strings.Contains(ls, a.IP) || !strings.Contains(ls, b.IP) {
		t.Fatalf("machine ls does not show both addresses %s and %s:\n%s", a.IP, b.IP, ls)
	}

	// A serves; B fetches from A by name.
	e.mustRun("neta", "sh", "-c", "mkdir -p /srv && echo hello-from-neta > /srv/index.html && busybox httpd -p 8124 -h /srv")
	if out := e.mustRun("netb", "wget", "-qO-", "http://neta.machine:8124/"); out != "hello-from-neta\n" {
		t.Fatalf("netb fetching http://neta.machine:8124/: %q", out)
	}
	// The DHCP search domain makes the bare name work too.
	if out := e.mustRun("netb", "wget", "-qO-", "http://neta:8124/"); out != "hello-from-neta\n" {
		t.Fatalf("netb fetching http://neta:8124/: %q", out)
	}

	// The host's loopback, through the host alias (as 10.0.2.2 on QEMU's
	// user network).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello-from-host") }))
	port := ln.Addr().(*net.TCPAddr).Port
	if out := e.mustRun("netb", "wget", "-qO-", fmt.Sprintf("http://192.168.127.254:%d/", port)); out != "hello-from-host\n" {
		t.Fatalf("netb fetching from the host's loopback: %q", out)
	}

	// The machine still has its SSH port (the network forwards it).
	if m := e.inspect("neta"); m.SSHPort == 0 {
		t.Fatalf("neta has no SSH port: %+v", m)
	}

	// The addresses survive restart and stop/start.
	e.must("machine", "restart", "neta")
	if m := e.inspect("neta"); m.IP != a.IP {
		t.Fatalf("after restart neta has %q, was %q", m.IP, a.IP)
	}
	e.must("machine", "stop", "netb")
	e.must("machine", "start", "netb")
	if m := e.inspect("netb"); m.IP != b.IP {
		t.Fatalf("after stop/start netb has %q, was %q", m.IP, b.IP)
	}
	e.mustRun("neta", "sh", "-c", "busybox httpd -p 8124 -h /srv")
	if out := e.mustRun("netb", "wget", "-qO-", "http://neta.machine:8124/"); out != "hello-from-neta\n" {
		t.Fatalf("after the restarts, netb fetching from neta: %q", out)
	}
	// A stopped machine's name is not found.
	e.must("machine", "stop", "neta")
	if _, errs, code := e.run("netb", "", "nslookup", "neta.machine"); code == 0 {
		t.Fatalf("nslookup of a stopped machine succeeded: %s", errs)
	}
}
