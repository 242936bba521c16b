//go:build linux

package qemu

import (
	"strings"
	"testing"

	"github.com/machinetop/machinetop/vm/driver"
)

func TestSubnet(t *testing.T) {
	for _, c := range []struct {
		field, env string
		want, err  string
	}{
		{"", "", "", ""},
		{"", "192.168.77.0/24", "192.168.77.0/24", ""},
		{"10.1.2.3/24", "192.168.77.0/24", "10.1.2.0/24", ""},
		{"", "10.0.0.0/28", "10.0.0.0/28", ""},
		{"", "10.0.0.0/29", "", "too small"},
		{"", "10.0.0.0", "", "CIDR"},
		{"fd00::/64", "", "", "IPv4"},
	} {
		t.Setenv(NetEnv, c.env)
		b := &Backend{Net: c.field}
		got, err := b.subnet()
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("Net %q, $%s %q: err %v, want it to mention %q", c.field, NetEnv, c.env, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("Net %q, $%s %q: %q %v, want %q", c.field, NetEnv, c.env, got, err, c.want)
		}
		args := "-netdev " + netdev(&driver.Spec{Name: "x"}, got)
		wantNet := "-netdev user,id=net0"
		if c.want != "" {
			wantNet += ",net=" + c.want
		}
		if !strings.HasSuffix(args, wantNet) {
			t.Errorf("Net %q, $%s %q: QEMU arguments lack %q: %s", c.field, NetEnv, c.env, wantNet, args)
		}
	}
}
