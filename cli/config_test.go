package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/machinetop/machinetop/config"
	"github.com/machinetop/machinetop/vm"
)

// TestCreateDefaultsPrecedence: a flag given on the command line beats
// the config file, which beats the built-in default.
func TestCreateDefaultsPrecedence(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.toml")
	os.WriteFile(p, []byte("[create]\ncpus = 2\nmemory = \"3G\"\ndisk = \"9G\"\nhome-mount = \"none\"\nmounts = [\"/a\"]\n"), 0o644)
	cf, err := config.LoadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	cmd := newCreateCmd()
	if err := cmd.ParseFlags([]string{"--cpus", "1", "--memory", "1G", "--mount", "/b"}); err != nil {
		t.Fatal(err)
	}
	o := vm.CreateOptions{CPUs: 1, HomeMount: vm.HomeMountRW, Mounts: []string{"/b"}}
	memory, disk := "1G", ""
	applyCreateDefaults(cmd.Flags(), cf.Create, &o, &memory, &disk)
	if o.CPUs != 1 || memory != "1G" || strings.Join(o.Mounts, ",") != "/b" {
		t.Errorf("flags lost to the file: cpus %d memory %s mounts %v", o.CPUs, memory, o.Mounts)
	}
	if disk != "9G" || o.HomeMount != vm.HomeMountNone {
		t.Errorf("file lost to defaults: disk %q home-mount %q", disk, o.HomeMount)
	}
}
