package tests

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"
)

// TestBenchNetwork prints guest → host download throughput through the
// machine network (vm/netd, to the host alias) next to QEMU's user
// network (to 10.0.2.2) on the same machine in the same run. The time is
// the host server's, from the request to the last byte handed to the
// kernel, for a body of benchBytes; the median of benchRounds.
func TestBenchNetwork(t *testing.T) {
	if os.Getenv("MACHINETOP_BENCH") == "" {
		t.Skip("set MACHINETOP_BENCH=1 (tests/bench-net.sh) to run the benchmark")
	}
	const benchBytes = 64 << 20
	const benchRounds = 3
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	took := make(chan time.Duration, 1)
	block := make([]byte, 1<<20)
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w.Header().Set("Content-Length", strconv.Itoa(benchBytes))
		for i := 0; i < benchBytes/len(block); i++ {
			if _, err := w.Write(block); err != nil {
				return
			}
		}
		took <- time.Since(start)
	}))
	port := ln.Addr().(*net.TCPAddr).Port

	e := newEnv(t)
	e.must("image", "import", filepath.Join(shared, "busybox.tar"), "busybox:bench")
	e.must("machine", "create", "busybox:bench", "-n", "bnet", "--cpus", "1", "--memory", "512M", "--home-mount", "none")
	measure := func(host string) float64 {
		var rates []float64
		for range benchRounds {
			e.mustRun("bnet", "wget", "-qO", "/dev/null", fmt.Sprintf("http://%s:%d/blob", host, port))
			d := <-took
			rates = append(rates, float64(benchBytes)/(1<<20)/d.Seconds())
		}
		sort.Float64s(rates)
		return rates[len(rates)/2]
	}
	machine := measure("192.168.127.254")
	e.must("machine", "stop", "bnet")
	e.extra = []string{"MACHINETOP_QEMU_NET=user"}
	e.must("machine", "start", "bnet")
	user := measure("10.0.2.2")
	e.extra = nil
	e.must("machine", "rm", "-f", "bnet")
	fmt.Printf("== machinetop network benchmark ==\n")
	fmt.Printf("guest -> host download, %d MiB, median of %d (TCG guest; host shared, numbers noisy):\n", benchBytes>>20, benchRounds)
	fmt.Printf("  machine network (gvisor-tap-vsock): %7.1f MiB/s\n", machine)
	fmt.Printf("  QEMU user network (slirp):          %7.1f MiB/s\n", user)
	fmt.Printf("  ratio machine/user:                 %7.2f\n", machine/user)
}
