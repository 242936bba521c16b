package tests

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBenchPorts prints the throughput and connection set-up latency of a
// forwarded port next to the same transfer inside the guest (its
// loopback); tests/bench-ports.sh runs it (MACHINETOP_BENCH=1). Nothing
// is asserted: the figures are for people, compared within one run.
func TestBenchPorts(t *testing.T) {
	if os.Getenv("MACHINETOP_BENCH") == "" {
		t.Skip("set MACHINETOP_BENCH=1 (tests/bench-ports.sh) to run the benchmark")
	}
	const mib = 32
	e := newEnv(t)
	e.must("image", "import", filepath.Join(shared, "busybox.tar"), "busybox:test")
	e.must("machine", "create", "busybox:test", "-n", "bench", "--cpus", "1", "--memory", "1G", "--home-mount", "none")
	e.mustRun("bench", "sh", "-c", fmt.Sprintf("mkdir -p /tmp/www && dd if=/dev/zero of=/tmp/www/big bs=1M count=%d 2>/dev/null && echo ok > /tmp/www/small && httpd -p 8123 -h /tmp/www", mib))
	var report []string
	add := func(format string, a ...any) {
		line := fmt.Sprintf(format, a...)
		report = append(report, line)
		t.Log(line)
	}
	// guestSeconds runs script in the guest between two readings of its
	// /proc/uptime and returns the seconds between them.
	guestSeconds := func(script string) float64 {
		out := e.mustRun("bench", "sh", "-c", "read a b < /proc/uptime; "+script+"; read c d < /proc/uptime; echo $a $c")
		f := strings.Fields(out)
		if len(f) < 2 {
			t.Fatalf("guest timing printed %q", out)
		}
		a, _ := strconv.ParseFloat(f[0], 64)
		c, _ := strconv.ParseFloat(f[1], 64)
		return c - a
	}
	if _, _, err := browse("http://127.0.0.1:8123/small", 3*time.Second); err != nil {
		t.Fatalf("the forward did not come up: %v", err)
	}

	// Guest → host: a download of the big file.
	cl := &http.Client{Timeout: 5 * time.Minute}
	start := time.Now()
	resp, err := cl.Get("http://127.0.0.1:8123/big")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != mib<<20 {
		t.Fatalf("download: %d bytes, %v", n, err)
	}
	fwdDown := float64(n) / (1 << 20) / time.Since(start).Seconds()
	rawDown := mib / guestSeconds("wget -qO /dev/null http://127.0.0.1:8123/big")
	add("guest → host download of %d MiB: forwarded %.1f MB/s, inside the guest (its loopback) %.1f MB/s (%.2f×)", mib, fwdDown, rawDown, fwdDown/rawDown)

	// Host → guest: an upload into nc.
	upload := func() float64 {
		// nc -l in the background in the guest; the forward follows it.
		e.mustRun("bench", "sh", "-c", "nc -l -p 9000 > /dev/null 2>&1 &")
		var c net.Conn
		deadline := time.Now().Add(5 * time.Second)
		for {
			c, err = net.Dial("tcp", "127.0.0.1:9000")
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("upload port: %v", err)
		}
		start := time.Now()
		buf := bytes.Repeat([]byte{0}, 1<<20)
		for range mib {
			if _, err := c.Write(buf); err != nil {
				t.Fatalf("upload: %v", err)
			}
		}
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c) // until nc has read everything and closed
		c.Close()
		return mib / time.Since(start).Seconds()
	}
	fwdUp := upload()
	rawUp := mib / guestSeconds(fmt.Sprintf("(nc -l -p 9001 > /dev/null &) ; sleep 0.2; dd if=/dev/zero bs=1M count=%d 2>/dev/null | nc 127.0.0.1 9001", mib))
	add("host → guest upload of %d MiB: forwarded %.1f MB/s, inside the guest (its loopback) %.1f MB/s (%.2f×)", mib, fwdUp, rawUp, fwdUp/rawUp)

	// Connection set-up: a small request, new connection each time.
	const rounds = 20
	var setup []time.Duration
	tr := &http.Transport{DisableKeepAlives: true}
	small := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for range rounds {
		start := time.Now()
		resp, err := small.Get("http://127.0.0.1:8123/small")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		setup = append(setup, time.Since(start))
	}
	rawSmall := guestSeconds(fmt.Sprintf("for i in $(seq %d); do wget -qO /dev/null http://127.0.0.1:8123/small; done", rounds)) / rounds
	add("new connection + small GET: forwarded median %v (of %d), inside the guest (wget, process start included) %.0f ms each",
		median(setup).Round(100*time.Microsecond), rounds, rawSmall*1000)
	fmt.Println("\n== machinetop port forwarding benchmark (one run, shared host: noisy) ==")
	for _, l := range report {
		fmt.Println(l)
	}
}
