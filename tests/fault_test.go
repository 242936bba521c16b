package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestFaultMatrix runs the fault matrix (tests/fault.sh: kills of QEMU, the
// supervisor and the CLI, a full disk, an OOM, parallel verbs, corrupt
// state, a hostile guest's links) over this suite's binaries and busybox
// image: each fault $MACHINETOP_FAULT_N times (default 1, to stay inside
// the suite's time budget; `make fault` runs 20). Every run must recover,
// keep its synced data and host files, leave clean disks and no leftover
// processes or runtime directories.
func TestFaultMatrix(t *testing.T) {
	n := os.Getenv("MACHINETOP_FAULT_N")
	if n == "" {
		n = "1"
	}
	log := filepath.Join(t.TempDir(), "fault.log")
	cmd := exec.Command("./fault.sh")
	cmd.Env = append(os.Environ(),
		"FAULT_N="+n,
		"FAULT_BIN="+binDir,
		"FAULT_IMAGE="+filepath.Join(shared, "busybox.tar"),
		"FAULT_LOG="+log,
	)
	out, err := cmd.CombinedOutput()
	t.Logf("fault matrix, %s run(s) of each fault:\n%s", n, out)
	if err != nil {
		b, _ := os.ReadFile(log)
		t.Fatalf("fault.sh: %v; the end of its log:\n%s", err, lastLines(string(b), 60))
	}
	if !strings.Contains(string(out), "RECOVERED") {
		t.Fatalf("fault.sh printed no table")
	}
}
