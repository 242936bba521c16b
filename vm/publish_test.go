package vm

import (
	"context"
	"strings"
	"testing"
)

func TestParsePublish(t *testing.T) {
	for in, want := range map[string]PortMapping{
		"8080:80":             {HostPort: 8080, GuestPort: 80},
		"127.0.0.1:18080:80":  {HostIP: "127.0.0.1", HostPort: 18080, GuestPort: 80},
		"0.0.0.0:8080:80/tcp": {HostIP: "0.0.0.0", HostPort: 8080, GuestPort: 80},
		"[::1]:8443:443":      {HostIP: "::1", HostPort: 8443, GuestPort: 443},
		"[0:0::1]:8443:443":   {HostIP: "::1", HostPort: 8443, GuestPort: 443},
		"1:65535":             {HostPort: 1, GuestPort: 65535},
	} {
		got, err := ParsePublish(in)
		if err != nil {
			t.Errorf("ParsePublish(%q): %v", in, err)
			continue
		}
		if got != want {
			t.Errorf("ParsePublish(%q) = %+v, want %+v", in, got, want)
		}
		// String gives back a form that parses to the same.
		if again, err := ParsePublish(got.String()); err != nil || again != got {
			t.Errorf("ParsePublish(%q.String() = %q) = %+v, %v", in, got.String(), again, err)
		}
	}
	for in, wantErr := range map[string]string{
		"99999:80":         "host port 99999 is out of range 1-65535",
		"8080:0":           "guest port 0 is out of range",
		"http:80":          `host port "http" is not a number`,
		"8080":             "no host port",
		"8080:80/sctp":     `unknown protocol "sctp"`,
		"8080:80/udp":      "UDP ports are not forwarded yet",
		"localhost:80:80":  `"localhost" is not an IP address`,
		"::1:80:80":        "too many colons",
		"[::1:80:80":       "unclosed [",
		"[10.0.0.1]:80:80": "is not an IPv6 address",
		"1:2:3:4":          "too many colons",
		"":                 "no host port",
	} {
		_, err := ParsePublish(in)
		if err == nil || !strings.Contains(err.Error(), wantErr) || !strings.Contains(err.Error(), "--publish") {
			t.Errorf("ParsePublish(%q) = %v, want an error with %q", in, err, wantErr)
		}
	}
}

func TestPortMappingOverlaps(t *testing.T) {
	p := func(s string) PortMapping {
		m, err := ParsePublish(s)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"8080:80", "8080:81", true},
		{"8080:80", "8081:80", false},
		{"127.0.0.1:8080:80", "8080:80", true},
		{"[::1]:8080:80", "8080:80", true},
		{"127.0.0.1:8080:80", "[::1]:8080:80", false},
		{"0.0.0.0:8080:80", "127.0.0.1:8080:80", true},
		{"0.0.0.0:8080:80", "[::1]:8080:80", false},
		{"192.168.1.2:8080:80", "127.0.0.1:8080:80", false},
	} {
		if got := p(c.a).Overlaps(p(c.b)); got != c.want {
			t.Errorf("%s overlaps %s = %v, want %v", c.a, c.b, got, c.want)
		}
		if got := p(c.b).Overlaps(p(c.a)); got != c.want {
			t.Errorf("%s overlaps %s = %v, want %v", c.b, c.a, got, c.want)
		}
	}
}

func TestPublishCreateAndSet(t *testing.T) {
	m := newTestManager(t)
	ctx := context.Background()
	a, err := m.Create(ctx, CreateOptions{Image: "test:latest", Name: "a", CPUs: 1, MemoryBytes: GiB,
		Publish: []string{"127.0.0.1:18080:80", "18443:443"}, PortForwarding: "off"})
	if err != nil {
		t.Fatal(err)
	}
	if a, _ = m.Load("a"); len(a.Publish) != 2 || a.AutoForward() {
		t.Fatalf("stored: publish %v, port forwarding %q", a.Publish, a.PortForwarding)
	}
	// Another machine cannot publish the same host port; nothing is made.
	_, err = m.Create(ctx, CreateOptions{Image: "test:latest", Name: "b", CPUs: 1, MemoryBytes: GiB, Publish: []string{"18080:80"}})
	if err == nil || !strings.Contains(err.Error(), "machine a publishes host port 18080") {
		t.Fatalf("create with a taken host port: %v", err)
	}
	if _, err := m.Load("b"); err == nil {
		t.Fatal("a refused create left a machine")
	}
	for _, opts := range []CreateOptions{
		{Publish: []string{"8080:80", "8080:81"}},
		{Publish: []string{"99999:80"}},
		{PortForwarding: "maybe"},
	} {
		opts.Image, opts.Name, opts.CPUs, opts.MemoryBytes = "test:latest", "c", 1, GiB
		if _, err := m.Create(ctx, opts); err == nil {
			t.Errorf("Create(%+v) succeeded", opts)
		}
	}
	b, err := m.Create(ctx, CreateOptions{Image: "test:latest", Name: "b", CPUs: 1, MemoryBytes: GiB})
	if err != nil {
		t.Fatal(err)
	}
	if !b.AutoForward() {
		t.Fatal("auto forwarding is off by default")
	}
	for kv, wantErr := range map[string]string{
		"18443:8443":      "machine a publishes host port 18443",
		"9000:90,9000:91": "both take host port 9000",
		"9000:x":          `guest port "x" is not a number`,
	} {
		if err := m.Set(b, map[string]string{"publish": kv}); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("Set publish=%s: %v, want %q", kv, err, wantErr)
		}
	}
	if err := m.Set(b, map[string]string{"port-forwarding": "yes"}); err == nil {
		t.Error("Set port-forwarding=yes succeeded")
	}
	if err := m.Set(b, map[string]string{"publish": "9000:90,9001:91", "port-forwarding": "off"}); err != nil {
		t.Fatal(err)
	}
	if b, _ = m.Load("b"); len(b.Publish) != 2 || b.AutoForward() {
		t.Fatalf("after set: %+v", b)
	}
	if err := m.Set(b, map[string]string{"publish": ""}); err != nil {
		t.Fatal(err)
	}
	if b, _ = m.Load("b"); len(b.Publish) != 0 {
		t.Fatalf("publish= left %v", b.Publish)
	}
	// a machine can keep its own ports when set changes something else.
	if err := m.Set(a, map[string]string{"cpus": "1"}); err != nil {
		t.Fatal(err)
	}
}
