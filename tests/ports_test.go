package tests

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/machinetop/machinetop/guest/listeners"
)

// portJSON is one forwarded port as inspect shows it.
type portJSON struct {
	Kind      string   `json:"kind"`
	GuestPort int      `json:"guestPort"`
	HostPort  int      `json:"hostPort"`
	HostAddrs []string `json:"hostAddrs"`
	Since     string   `json:"since"`
	Note      string   `json:"note"`
	Error     string   `json:"error"`
}

// ports returns the forwards inspect lists for machine name.
func (e *env) ports(name string) []portJSON {
	e.t.Helper()
	var m struct {
		Ports []portJSON `json:"ports"`
	}
	if err := json.Unmarshal([]byte(e.must("machine", "inspect", name)), &m); err != nil {
		e.t.Fatal(err)
	}
	return m.Ports
}

// browse fetches url as a user refreshing a browser would: again every
// 100 ms until it answers, for at most limit. It returns the body and
// how long it took.
func browse(url string, limit time.Duration) (string, time.Duration, error) {
	start := time.Now()
	// A browser waits longer for an answer; the guest runs under
	// emulation on a shared host.
	cl := &http.Client{Timeout: limit}
	for {
		resp, err := cl.Get(url)
		if err == nil {
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(b), time.Since(start), err
		}
		if time.Since(start) > limit {
			return "", time.Since(start), err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// refusedWithin dials 127.0.0.1:port every 100 ms until the connection
// is refused, for at most limit, and returns how long that took.
func refusedWithin(port int, limit time.Duration) (time.Duration, bool) {
	start := time.Now()
	for time.Since(start) <= limit {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err != nil {
			return time.Since(start), true
		}
		c.Close()
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start), false
}

// hostListeners returns this host's listening sockets on port, read from
// /proc/net/tcp and tcp6 (what `ss -ltn` shows).
func hostListeners(t *testing.T, port int) []string {
	ls, err := listeners.Read("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		if l.Port == port {
			out = append(out, l.Addr)
		}
	}
	return out
}

// freeHostPort returns a TCP port free on the host's 127.0.0.1 now.
func freeHostPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestPorts starts web servers in a busybox machine as a user would and
// opens them from the host: forwarded automatically on the same port
// within 3 s, on loopback only, gone within 3 s after the server exits;
// a port taken on the host forwarded from another; a published port on a
// different host port, kept across a restart; automatic forwarding
// turned off; bad --publish values refused.
func TestPorts(t *testing.T) {
	e := newEnv(t)
	e.must("image", "import", filepath.Join(shared, "busybox.tar"), "busybox:test")
	pub := freeHostPort(t)
	e.must("machine", "create", "busybox:test", "-n", "web", "--cpus", "1", "--memory", "512M", "--home-mount", "none",
		"--publish", fmt.Sprintf("127.0.0.1:%d:8125", pub))

	t.Run("BadInput", func(t *testing.T) {
		e.fails("out of range 1-65535", "machine", "create", "busybox:test", "-n", "bad", "--no-boot", "--publish", "99999:80")
		e.fails("not a number", "machine", "create", "busybox:test", "-n", "bad", "--no-boot", "--publish", "80:http")
		e.fails(fmt.Sprintf("machine web publishes host port %d", pub), "machine", "create", "busybox:test", "-n", "bad", "--no-boot", "--publish", fmt.Sprintf("%d:80", pub))
		e.fails("use on or off", "machine", "set", "web", "port-forwarding=maybe")
		if out := e.must("machine", "ls", "-q"); strings.Contains(out, "bad") {
			t.Fatalf("a refused create left a machine: %s", out)
		}
	})

	e.mustRun("web", "sh", "-c", "mkdir -p /tmp/www && echo hello from web > /tmp/www/index.html")
	t.Run("Auto", func(t *testing.T) {
		// busybox httpd (the image's /usr/sbin/httpd) listens, then goes to the background: when the
		// command returns, the server listens.
		e.mustRun("web", "httpd", "-p", "8123", "-h", "/tmp/www")
		body, took, err := browse("http://127.0.0.1:8123/", 3*time.Second)
		if err != nil || strings.TrimSpace(body) != "hello from web" {
			t.Fatalf("http://127.0.0.1:8123/ after %v: %q, %v\nforwards: %+v", took, body, err, e.ports("web"))
		}
		t.Logf("guest port 8123 reachable from the host %v after the server listened", took.Round(time.Millisecond))
		for _, a := range hostListeners(t, 8123) {
			if ip := net.ParseIP(a); ip == nil || !ip.IsLoopback() {
				t.Errorf("host port 8123 listens on %s, not loopback only", a)
			}
		}
		var found bool
		for _, p := range e.ports("web") {
			if p.GuestPort == 8123 && p.HostPort == 8123 && p.Kind == "auto" && p.Since != "" {
				found = true
			}
		}
		if !found {
			t.Errorf("inspect does not list guest port 8123 on host port 8123: %+v", e.ports("web"))
		}
		if out := e.must("machine", "ls"); !strings.Contains(out, "8123") || !strings.Contains(out, "PORTS") {
			t.Errorf("machine ls shows no port 8123:\n%s", out)
		}
		e.mustRun("web", "killall", "httpd")
		took, ok := refusedWithin(8123, 3*time.Second)
		if !ok {
			t.Fatalf("host port 8123 still accepts %v after the server exited", took)
		}
		t.Logf("forward of 8123 gone %v after the server exited", took.Round(time.Millisecond))
		if l := hostListeners(t, 8123); len(l) != 0 {
			t.Errorf("host still listens on 8123: %v", l)
		}
	})

	t.Run("TakenPort", func(t *testing.T) {
		taken, err := net.Listen("tcp", "127.0.0.1:8124")
		if err != nil {
			t.Skipf("cannot hold host port 8124: %v", err)
		}
		defer taken.Close()
		e.mustRun("web", "httpd", "-p", "8124", "-h", "/tmp/www")
		defer e.mustRun("web", "killall", "httpd")
		var fwd *portJSON
		start := time.Now()
		// As a user re-running inspect until the port shows.
		for fwd == nil && time.Since(start) < 3*time.Second {
			for _, p := range e.ports("web") {
				if p.GuestPort == 8124 {
					fwd = &p
				}
			}
			if fwd == nil {
				time.Sleep(100 * time.Millisecond)
			}
		}
		if fwd == nil || fwd.HostPort == 8124 || fwd.HostPort == 0 || !strings.Contains(fwd.Note, "8124 is taken") {
			t.Fatalf("guest port 8124 with host port 8124 taken: %+v", fwd)
		}
		body, _, err := browse(fmt.Sprintf("http://127.0.0.1:%d/", fwd.HostPort), 3*time.Second)
		if err != nil || strings.TrimSpace(body) != "hello from web" {
			t.Fatalf("through host port %d: %q, %v", fwd.HostPort, body, err)
		}
		t.Logf("guest port 8124 forwarded from host port %d (%s)", fwd.HostPort, fwd.Note)
	})

	t.Run("Published", func(t *testing.T) {
		url := fmt.Sprintf("http://127.0.0.1:%d/", pub)
		e.mustRun("web", "httpd", "-p", "8125", "-h", "/tmp/www")
		if body, _, err := browse(url, 3*time.Second); err != nil || strings.TrimSpace(body) != "hello from web" {
			t.Fatalf("published %s: %q, %v", url, body, err)
		}
		for _, a := range hostListeners(t, pub) {
			if a != "127.0.0.1" {
				t.Errorf("published 127.0.0.1:%d listens on %s too", pub, a)
			}
		}
		// Published and not forwarded automatically as well.
		for _, p := range e.ports("web") {
			if p.GuestPort == 8125 && p.Kind != "published" {
				t.Errorf("guest port 8125 forwarded again: %+v", p)
			}
		}
		// Turn automatic forwarding off, restart: the published port
		// still works, nothing else is forwarded.
		e.must("machine", "set", "web", "port-forwarding=off")
		e.must("machine", "restart", "web")
		e.mustRun("web", "sh", "-c", "mkdir -p /tmp/www && echo hello again > /tmp/www/index.html && httpd -p 8125 -h /tmp/www && httpd -p 8126 -h /tmp/www")
		if body, _, err := browse(url, 3*time.Second); err != nil || strings.TrimSpace(body) != "hello again" {
			t.Fatalf("published %s after restart: %q, %v", url, body, err)
		}
		for _, p := range e.ports("web") {
			if p.Kind == "auto" {
				t.Errorf("forwarded automatically with port-forwarding=off: %+v", p)
			}
		}
	})
}
