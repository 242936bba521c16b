//go:build linux

package initrd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteResolvConf(t *testing.T) {
	dns, search := []string{"192.168.127.1"}, []string{"machine"}
	ours := resolvMarker + "nameserver 192.168.127.1\nsearch machine\n"
	hostCopy := "nameserver 10.255.255.53\n"
	for _, tc := range []struct {
		name      string
		setup     func(root string)
		firstBoot bool
		want      string // "" leaves the link
	}{
		{"missing", func(string) {}, false, ours},
		{"empty", func(r string) { os.WriteFile(r+"/etc/resolv.conf", nil, 0o644) }, false, ours},
		{"the image's copy at the first boot", func(r string) { os.WriteFile(r+"/etc/resolv.conf", []byte(hostCopy), 0o755) }, true, ours},
		{"the user's own later", func(r string) { os.WriteFile(r+"/etc/resolv.conf", []byte(hostCopy), 0o644) }, false, hostCopy},
		{"ours from an earlier boot", func(r string) {
			os.WriteFile(r+"/etc/resolv.conf", []byte(resolvMarker+"nameserver 10.0.2.3\n"), 0o644)
		}, false, ours},
		{"a dangling link", func(r string) { os.Symlink("../run/none/resolv.conf", r+"/etc/resolv.conf") }, true, ours},
		{"a working link", func(r string) {
			os.MkdirAll(r+"/run/systemd/resolve", 0o755)
			os.WriteFile(r+"/run/systemd/resolve/stub-resolv.conf", []byte("nameserver 127.0.0.53\n"), 0o644)
			os.Symlink("../run/systemd/resolve/stub-resolv.conf", r+"/etc/resolv.conf")
		}, true, ""},
	} {
		root := t.TempDir()
		os.MkdirAll(filepath.Join(root, "etc"), 0o755)
		tc.setup(root)
		writeResolvConf(root, dns, search, tc.firstBoot)
		p := filepath.Join(root, "etc", "resolv.conf")
		if tc.want == "" {
			if fi, err := os.Lstat(p); err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("%s: the link was replaced (%v)", tc.name, err)
			}
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil || string(b) != tc.want {
			t.Errorf("%s: resolv.conf = %q, %v; want %q", tc.name, b, err, tc.want)
		}
		if tc.want == ours && !strings.HasPrefix(string(b), "# machinetop") {
			t.Errorf("%s: no marker line", tc.name)
		}
	}
}
