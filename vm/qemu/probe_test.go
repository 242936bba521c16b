//go:build linux

package qemu

import (
	"context"
	"os/exec"
	"testing"
	"time"
)

// The probe must answer within its bound whatever the host's KVM does.
func TestProbeAccelBounded(t *testing.T) {
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}
	start := time.Now()
	got := probeAccel(context.Background(), bin, t.TempDir())
	el := time.Since(start)
	if got != "kvm" && got != "tcg" {
		t.Fatalf("probe returned %q", got)
	}
	if el > probeTimeout+10*time.Second { // generous: a missed bound means a hang, not slowness
		t.Fatalf("probe took %v, bound is %v", el, probeTimeout)
	}
	t.Logf("accelerator %s, probe took %v", got, el)
}
