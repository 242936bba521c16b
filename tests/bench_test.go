package tests

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/machinetop/machinetop/vm"
	"github.com/machinetop/machinetop/vm/driver"
	"github.com/machinetop/machinetop/vm/kit"
	"github.com/machinetop/machinetop/vm/qemu"
)

// TestBenchBoot prints boot and run latency figures; tests/bench.sh runs
// it (MACHINETOP_BENCH=1). Nothing here asserts a wall-clock limit: the
// figures are for people, compared within one run.
func TestBenchBoot(t *testing.T) {
	if os.Getenv("MACHINETOP_BENCH") == "" {
		t.Skip("set MACHINETOP_BENCH=1 (tests/bench.sh) to run the benchmark")
	}
	e := newEnv(t)
	e.must("image", "import", filepath.Join(shared, "busybox.tar"), "busybox:test")
	e.must("machine", "create", "busybox:test", "-n", "bb", "--cpus", "1", "--memory", "1G", "--no-boot")
	images := []string{"bb"}
	const rounds = 3
	var report []string
	add := func(format string, a ...any) {
		line := fmt.Sprintf(format, a...)
		report = append(report, line)
		t.Log(line)
	}

	// bb's first boot also builds the guest kit (the kernel download),
	// which later first boots find cached.
	e.must("machine", "start", "bb")
	e.must("machine", "stop", "bb")
	// The Debian image's first boot, as a user has it: create, then the
	// first command's output (the guest unpacks the image meanwhile);
	// compared below with its later boots.
	var debFirst time.Duration
	if _, err := os.Stat(filepath.Join(shared, "debian.tar")); err == nil {
		e.must("image", "import", filepath.Join(shared, "debian.tar"), "debian:test")
		start := time.Now()
		e.must("machine", "create", "debian:test", "-n", "deb", "--cpus", "1", "--memory", "1G", "--no-boot")
		if out := e.mustRun("deb", "echo", "first"); out != "first\n" {
			t.Fatalf("first run printed %q", out)
		}
		debFirst = time.Since(start)
		e.must("machine", "stop", "deb")
		images = append(images, "deb")
	}
	raw := rawBoot(t, e, rounds)
	add("raw QEMU direct-kernel boot to a trivial init (the limit): median %v", raw.Round(time.Millisecond))
	// One machine runs at a time, so that an idle systemd does not slow
	// the others' boots.
	for _, n := range images {
		var ready, firstRun, systemd []time.Duration
		for range rounds {
			e.must("machine", "stop", n)
			start := time.Now()
			e.must("machine", "start", n)
			ready = append(ready, time.Since(start))
			if n == "deb" {
				// Degraded (a unit failed) exits 1 and still counts.
				e.run(n, "", "systemctl", "is-system-running", "--wait")
				systemd = append(systemd, time.Since(start))
			}
			e.must("machine", "stop", n)
			start = time.Now()
			if out := e.mustRun(n, "echo", "first"); out != "first\n" {
				t.Fatalf("first run printed %q", out)
			}
			firstRun = append(firstRun, time.Since(start))
		}
		add("%s: start → agent ready: median %v (%.2f× the limit)", n, median(ready).Round(time.Millisecond), float64(median(ready))/float64(raw))
		add("%s: start → first `run` output: median %v", n, median(firstRun).Round(time.Millisecond))
		if n == "deb" {
			add("deb: first boot, create → first `run` output: %v (%.2f× a later start → first `run` output)",
				debFirst.Round(time.Millisecond), float64(debFirst)/float64(median(firstRun)))
		}
		e.must("machine", "stop", n)
		if len(systemd) > 0 {
			add("%s: start → systemd is-system-running answers: median %v", n, median(systemd).Round(time.Millisecond))
		}
	}
	var rt []time.Duration
	e.must("machine", "start", "bb")
	for range 50 {
		start := time.Now()
		e.mustRun("bb", "true")
		rt = append(rt, time.Since(start))
	}
	add("bb: `machinetop m run -- true` round trip: median %v of 50 (min %v, max %v)", median(rt).Round(100*time.Microsecond), rt[0], rt[len(rt)-1])
	fmt.Println("\n== machinetop boot benchmark ==")
	for _, l := range report {
		fmt.Println(l)
	}
}

// median sorts d and returns its middle value.
func median(d []time.Duration) time.Duration {
	sort.Slice(d, func(a, b int) bool { return d[a] < d[b] })
	return d[len(d)/2]
}

// rawBoot boots machinetop's own kernel with QEMU's own command line as
// machinetop builds it, but with an initramfs holding only trivialinit, and
// returns the median time from QEMU's start to the init's console line.
func rawBoot(t *testing.T, e *env, rounds int) time.Duration {
	dir := t.TempDir()
	initBin := filepath.Join(dir, "init")
	cmd := exec.Command("go", "build", "-o", initBin, "./testdata/trivialinit")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building trivialinit: %v\n%s", err, b)
	}
	kernels, _ := filepath.Glob(filepath.Join(e.data, "kit", "*", "vmlinuz*"))
	if len(kernels) == 0 {
		t.Fatalf("no kernel in %s/kit", e.data)
	}
	// The same kit builder, given a bare kernel (so no modules) and
	// trivialinit as the guest binary.
	k, err := kit.Ensure(context.Background(), filepath.Join(dir, "kit"), kit.Source{Kernel: kernels[0]}, initBin, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	initrd := k.Initramfs
	be := &qemu.Backend{}
	accel, err := be.Accelerator(context.Background(), "", kernels[0])
	if err != nil {
		t.Fatal(err)
	}
	open := func(path string, flag int) *os.File {
		f, err := os.OpenFile(path, flag, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	var times []time.Duration
	for i := range rounds {
		run := filepath.Join(dir, fmt.Sprint("run", i))
		os.MkdirAll(run, 0o700)
		consoleLog := filepath.Join(run, "console.log")
		spec := &driver.Spec{Name: "rawbench", CPUs: 1, MemoryBytes: vm.GiB,
			Kernel: open(kernels[0], os.O_RDONLY), Initramfs: open(initrd, os.O_RDONLY),
			Cmdline: "quiet panic=-1", Console: open(consoleLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE), RunDir: run}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		q, release, err := be.Command(spec, accel)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := q.Start(); err != nil {
			t.Fatal(err)
		}
		release()
		spec.Kernel.Close()
		spec.Initramfs.Close()
		spec.Console.Close()
		go func() {
			<-ctx.Done()
			q.Process.Kill()
		}()
		for {
			b, _ := os.ReadFile(consoleLog)
			if strings.Contains(string(b), "TRIVIAL-INIT-UP") {
				times = append(times, time.Since(start))
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("raw boot did not reach the trivial init:\n%s", b)
			}
			time.Sleep(5 * time.Millisecond)
		}
		q.Wait()
		cancel()
	}
	return median(times)
}
