//go:build linux

package vm

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/machinetop/machinetop/vm/qemu"
)

// Create asks the backend which architectures it runs: the QEMU backend
// runs another than the host's only when that emulator is installed.
func TestCreateChecksBackendArchs(t *testing.T) {
	m := newTestManager(t)
	m.Backend = &qemu.Backend{}
	other := ArchAMD64
	if HostArch() == ArchAMD64 {
		other = ArchARM64
	}
	emulator, _ := qemu.Emulator(other)
	installed, lookErr := exec.LookPath(emulator)

	t.Run("emulator missing", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		_, err := m.Create(context.Background(), CreateOptions{Image: "test:latest", Name: "other", Arch: other})
		if err == nil || !strings.Contains(err.Error(), "cannot run "+other+" machines") {
			t.Fatalf("creating an %s machine without %s: %v", other, emulator, err)
		}
	})
	t.Run("emulator installed", func(t *testing.T) {
		if lookErr != nil {
			t.Skipf("%s is not installed", emulator)
		}
		t.Logf("%s is %s", emulator, installed)
		cfg, err := m.Create(context.Background(), CreateOptions{Image: "test:latest", Name: "other", Arch: other})
		if err != nil || cfg.Arch != other {
			t.Fatalf("creating an %s machine with %s installed: %+v, %v", other, emulator, cfg, err)
		}
	})
}
