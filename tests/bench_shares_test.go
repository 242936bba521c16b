package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBenchShares prints how fast a shared directory is over virtio-fs
// and over 9p for an ordinary user (when the tests run as root it re-runs
// itself as one), in one run so that the ratio compares like with like;
// tests/bench-shares.sh runs it (MACHINETOP_BENCH=1). Each figure is the
// median of three `machine run`s less the median of a `run -- true`, so
// the command's own round trip is not counted. Nothing is asserted about
// speed.
func TestBenchShares(t *testing.T) {
	if os.Getenv("MACHINETOP_BENCH") == "" {
		t.Skip("set MACHINETOP_BENCH=1 (tests/bench-shares.sh) to run the benchmark")
	}
	if os.Getuid() == 0 && os.Getenv(envChild) == "" {
		runAsOrdinaryUser(t, "^TestBenchShares$", "MACHINETOP_BENCH=1")
		return
	}
	e := newEnv(t)
	dir := filepath.Join(e.home, "bench-share")
	const bigMiB, small = 256, 3000
	if err := os.MkdirAll(filepath.Join(dir, "small"), 0o755); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, bigMiB<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	if err := os.WriteFile(filepath.Join(dir, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range small {
		if err := os.WriteFile(filepath.Join(dir, "small", "f"+strconv.Itoa(i)), []byte(strconv.Itoa(i)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e.must("image", "import", filepath.Join(shared, "busybox.tar"), "busybox:test")

	type result struct{ read, meta, write time.Duration }
	results := map[string]result{}
	modes := []string{"virtiofs", "9p"}
	for _, fs := range modes {
		name := "share-" + fs
		e.extra = nil
		if fs == "9p" {
			e.extra = []string{"MACHINETOP_SHARE_FS=9p"}
		} else if got := e.shareFS(); got != "virtiofs" {
			t.Logf("virtio-fs is not available to this user (shares would use %s): measuring 9p only", got)
			continue
		}
		e.must("machine", "create", "busybox:test", "-n", name, "--cpus", "2", "--memory", "1G",
			"--home-mount", "none", "--mount", dir+":/share")
		mounts := e.mustRun(name, "cat", "/proc/mounts")
		if !strings.Contains(mounts, " /share "+fs+" ") {
			t.Fatalf("%s: /share is not %s:\n%s", name, fs, mounts)
		}
		timed := func(argv ...string) time.Duration {
			var d []time.Duration
			for range 3 {
				start := time.Now()
				e.mustRun(name, argv...)
				d = append(d, time.Since(start))
			}
			return median(d)
		}
		base := timed("true")
		drop := "sync; echo 3 > /proc/sys/vm/drop_caches; "
		r := result{
			read:  timed("sh", "-c", drop+"cat /share/big > /dev/null") - base,
			meta:  timed("sh", "-c", drop+"ls -l /share/small > /dev/null; cat /share/small/* > /dev/null") - base,
			write: timed("sh", "-c", fmt.Sprintf("dd if=/dev/zero of=/share/w bs=1M count=%d 2>/dev/null && sync && rm /share/w", bigMiB)) - base,
		}
		results[fs] = r
		e.must("machine", "rm", "-f", name)
	}
	mbps := func(d time.Duration) string { return fmt.Sprintf("%.0f MB/s", float64(bigMiB)/d.Seconds()) }
	fmt.Printf("\n== machinetop share benchmark (uid %d, busybox guest, median of 3) ==\n", os.Getuid())
	fmt.Printf("%-9s %-14s %-26s %-14s\n", "share", "read 256 MiB", fmt.Sprintf("ls -l + cat %d files", small), "write 256 MiB")
	for _, fs := range modes {
		r, ok := results[fs]
		if !ok {
			continue
		}
		fmt.Printf("%-9s %-14s %-26s %-14s\n", fs, mbps(r.read), r.meta.Round(time.Millisecond), mbps(r.write))
	}
	if v, ok := results["virtiofs"]; ok {
		p := results["9p"]
		fmt.Printf("virtio-fs ÷ 9p time: read %.2f×, small files %.2f×, write %.2f×\n",
			v.read.Seconds()/p.read.Seconds(), v.meta.Seconds()/p.meta.Seconds(), v.write.Seconds()/p.write.Seconds())
	}
}
