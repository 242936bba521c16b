package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// hostToolsAbsent are the programs a host need not have: machinetop
// formats and checks disks in the guest and fetches the kernel and the
// guest's tools from the Debian archive itself.
var hostToolsAbsent = []string{"apt-get", "apt", "dpkg", "mkfs.ext4", "mke2fs", "e2fsck", "debootstrap"}

// TestWithoutHostTools runs the CLI with a PATH holding only QEMU, so
// that none of hostToolsAbsent can be found, and an empty data directory:
// importing the busybox rootfs, creating a machine (the kit comes from
// the archive, verified) and running a command in it must work.
func TestWithoutHostTools(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-" + map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[hostArch()])
	if err != nil {
		t.Skipf("QEMU not installed: %v", err)
	}
	pathDir := t.TempDir()
	if err := os.Symlink(qemu, filepath.Join(pathDir, filepath.Base(qemu))); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	e.extra = []string{"PATH=" + pathDir}
	for _, tool := range hostToolsAbsent {
		cmd := exec.Command("sh", "-c", "command -v "+tool)
		cmd.Env = e.environ()
		if out, err := cmd.Output(); err == nil {
			t.Fatalf("%s is on the test's PATH (%s): the test would prove nothing", tool, out)
		}
	}
	if ents, _ := os.ReadDir(e.data); len(ents) != 0 {
		t.Fatalf("data directory %s is not empty", e.data)
	}
	e.must("image", "import", filepath.Join(shared, "busybox.tar"), "busybox:notools")
	e.must("machine", "create", "busybox:notools", "-n", "notools", "--cpus", "1", "--memory", "512M", "--home-mount", "none")
	out := e.must("machine", "run", "-n", "notools", "--", "uname", "-sr")
	if !strings.HasPrefix(out, "Linux ") {
		t.Fatalf("uname -sr: %q", out)
	}
	if dc := e.inspect("notools").diskCheck(t); !dc.Formatted || dc.Result != "clean" {
		t.Fatalf("disk check: %+v, want formatted by the guest and clean", dc)
	}
	debs, _ := filepath.Glob(filepath.Join(e.data, "kit", "debs", "*.deb"))
	var names []string
	for _, d := range debs {
		names = append(names, filepath.Base(d))
	}
	if !strings.Contains(strings.Join(names, " "), "linux-image-") || !strings.Contains(strings.Join(names, " "), "e2fsprogs_") {
		t.Fatalf("the kit's packages did not come from the archive into the empty data directory: %v", names)
	}
	e.must("machine", "rm", "-f", "notools")
}

// TestQEMUSubnet boots a machine on a user network of another subnet
// ($MACHINETOP_QEMU_NET): the address inspect and ls report is the one
// the guest's DHCP lease gave, and it follows the subnet from boot to
// boot.
func TestQEMUSubnet(t *testing.T) {
	e := newEnv(t)
	e.must("image", "import", filepath.Join(shared, "busybox.tar"), "busybox:net")
	e.extra = []string{"MACHINETOP_QEMU_NET=192.168.77.0/24"}
	e.must("machine", "create", "busybox:net", "-n", "net", "--cpus", "1", "--memory", "512M", "--home-mount", "none")
	m := e.inspect("net")
	if m.IP != "192.168.77.15" || m.Lease == nil || m.Lease.Address != "192.168.77.15/24" || m.Lease.Gateway != "192.168.77.2" {
		t.Fatalf("on 192.168.77.0/24: address %q, lease %+v", m.IP, m.Lease)
	}
	if out := e.mustRun("net", "ip", "-4", "addr", "show", "eth0"); !strings.Contains(out, "192.168.77.15/24") {
		t.Fatalf("the guest's eth0 does not have the leased address:\n%s", out)
	}
	if ls := e.must("machine", "ls"); !strings.Contains(ls, "192.168.77.15") {
		t.Fatalf("machine ls does not show the leased address:\n%s", ls)
	}
	e.must("machine", "stop", "net")
	e.extra = []string{"MACHINETOP_QEMU_NET=10.0.9.0/24"}
	e.must("machine", "start", "net")
	if m := e.inspect("net"); m.IP != "10.0.9.15" || m.Lease == nil || m.Lease.Gateway != "10.0.9.2" {
		t.Fatalf("after moving to 10.0.9.0/24: address %q, lease %+v", m.IP, m.Lease)
	}
	e.extra = []string{"MACHINETOP_QEMU_NET=10.0.9.0/29"}
	e.must("machine", "stop", "net")
	e.fails("MACHINETOP_QEMU_NET", "machine", "start", "net")
	e.extra = nil
	e.must("machine", "rm", "net")
}
