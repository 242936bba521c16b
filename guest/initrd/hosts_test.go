//go:build linux

package initrd

import "testing"

func TestHostsWithName(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		changed  bool
	}{
		{"", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tdev\n", true},
		{"127.0.0.1 localhost\n", "127.0.0.1 localhost\n127.0.1.1\tdev\n", true},
		{"127.0.0.1 localhost", "127.0.0.1 localhost\n127.0.1.1\tdev\n", true},
		{"127.0.1.1 dev\n", "127.0.1.1 dev\n", false},
		{"10.0.0.1 other dev # mine\n", "10.0.0.1 other dev # mine\n", false},
		{"# dev\n127.0.0.1 localhost\n", "# dev\n127.0.0.1 localhost\n127.0.1.1\tdev\n", true},
		{"dev 127.0.0.1\n", "dev 127.0.0.1\n127.0.1.1\tdev\n", true},
	} {
		got, changed := hostsWithName(tc.in, "dev")
		if got != tc.want || changed != tc.changed {
			t.Errorf("hostsWithName(%q) = %q, %v; want %q, %v", tc.in, got, changed, tc.want, tc.changed)
		}
	}
}
