//go:build linux

package qemu

import (
	"fmt"
	"os"
	"path/filepath"
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
		args := "-netdev " + netdev(got)
		wantNet := "-netdev user,id=net0"
		if c.want != "" {
			wantNet += ",net=" + c.want
		}
		if !strings.HasSuffix(args, wantNet) {
			t.Errorf("Net %q, $%s %q: QEMU arguments lack %q: %s", c.field, NetEnv, c.env, wantNet, args)
		}
	}
}

// TestMachineNetSetting: unset or "machine" joins the machine network,
// "user" and a subnet keep QEMU's user network.
func TestMachineNetSetting(t *testing.T) {
	for env, want := range map[string]bool{"": true, "machine": true, "user": false, "10.0.9.0/24": false} {
		t.Setenv(NetEnv, env)
		if got := (&Backend{}).Features().MachineNet; got != want {
			t.Errorf("$%s=%q: MachineNet %v, want %v", NetEnv, env, got, want)
		}
		if _, err := (&Backend{}).subnet(); err != nil {
			t.Errorf("$%s=%q: %v", NetEnv, env, err)
		}
	}
}

// TestCommandMachineNet: a spec with a machine network connection gives
// QEMU the connection as a descriptor of a socket netdev, with the
// machine's MAC address and no user network (so no hostfwd: the network
// forwards SSH).
func TestCommandMachineNet(t *testing.T) {
	dir := t.TempDir()
	file := func(name string) *os.File {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	netConn := file("net")
	spec := &driver.Spec{
		Name: "m", CPUs: 1, MemoryBytes: 256 << 20, RunDir: dir,
		Kernel: file("kernel"), Initramfs: file("initrd"), Console: file("console"),
		Disks:   []driver.Disk{{File: file("disk"), Serial: "root"}},
		Network: netConn, MAC: "5a:94:ef:a8:7f:02",
	}
	cmd, release, err := (&Backend{}).Command(spec, "tcg")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	args := strings.Join(cmd.Args, " ")
	fd := -1
	for i, f := range cmd.ExtraFiles {
		if f == netConn {
			fd = 3 + i
		}
	}
	if fd < 0 || !strings.Contains(args, fmt.Sprintf("-netdev socket,id=net0,fd=%d ", fd)) {
		t.Fatalf("the connection is not QEMU's descriptor %d of a socket netdev: %s", fd, args)
	}
	if !strings.Contains(args, "virtio-net-pci,netdev=net0,romfile=,mac=5a:94:ef:a8:7f:02") {
		t.Fatalf("the NIC lacks the machine's MAC address: %s", args)
	}
	if strings.Contains(args, "user,") || strings.Contains(args, "hostfwd") {
		t.Fatalf("a user network besides the machine network: %s", args)
	}
}
