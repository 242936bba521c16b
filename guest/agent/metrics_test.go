//go:build linux

package agent

import (
	"os"
	"path/filepath"
	"testing"
)

func TestNetTotals(t *testing.T) {
	p := filepath.Join(t.TempDir(), "dev")
	os.WriteFile(p, []byte(`Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  999999     100    0    0    0     0          0         0   999999     100    0    0    0     0       0          0
  eth0: 1000      10    0    0    0     0          0         0     2000      20    0    0    0     0       0          0
  eth1:   30       1    0    0    0     0          0         0       40       1    0    0    0     0       0          0
`), 0o644)
	if rx, tx := netTotals(p); rx != 1030 || tx != 2040 {
		t.Fatalf("netTotals = %d, %d; want 1030, 2040", rx, tx)
	}
}
