package tests

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/charmbracelet/x/vt"
	"github.com/creack/pty"

	"github.com/machinetop/machinetop/images/progress"
	"github.com/machinetop/machinetop/vm/layout"
)

// screen runs the machinetop dashboard on a PTY and keeps what it draws in
// a terminal emulator, answering the dashboard's terminal queries like a
// real terminal would.
type screen struct {
	t    *testing.T
	cmd  *exec.Cmd
	pty  *os.File
	em   *vt.SafeEmulator
	done chan struct{}

	mu     sync.Mutex
	frames int       // output chunks seen
	last   time.Time // time of the last output chunk
}

// machineIP matches an address on the machine network (vm/netd), as the
// dashboard's IP column shows it.
const machineIP = `192\.168\.127\.\d+`

func (e *env) dashboard(t *testing.T, cols, rows int) *screen {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "machinetop"))
	cmd.Env = append(os.Environ(), "MACHINETOP_HOME="+e.data, "TERM=xterm-256color", "MACHINETOP_THEME=dark")
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: uint16(cols), Rows: uint16(rows)})
	if err != nil {
		t.Fatal(err)
	}
	s := &screen{t: t, cmd: cmd, pty: f, em: vt.NewSafeEmulator(cols, rows), done: make(chan struct{})}
	go func() { // the emulator's answers go back to the program
		buf := make([]byte, 1024)
		for {
			n, err := s.em.Read(buf)
			if n > 0 {
				f.Write(buf[:n])
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		defer close(s.done)
		buf := make([]byte, 32<<10)
		for {
			n, err := f.Read(buf)
			if n > 0 {
				s.em.Write(buf[:n])
				s.mu.Lock()
				s.frames++
				s.last = time.Now()
				s.mu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		f.Close()
	})
	return s
}

// text returns the screen's text.
func (s *screen) text() string { return s.em.String() }

// send types keys (raw bytes, e.g. "\r" or "\x1d").
func (s *screen) send(keys ...string) {
	for _, k := range keys {
		if _, err := io.WriteString(s.pty, k); err != nil {
			s.t.Fatalf("writing to the dashboard: %v", err)
		}
		time.Sleep(60 * time.Millisecond)
	}
}

// wait waits until the screen matches re, or fails the test showing the
// screen.
func (s *screen) wait(what string, re *regexp.Regexp, timeout time.Duration) string {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		txt := s.text()
		if re.MatchString(txt) {
			return txt
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("waiting for %s (%s): timed out after %v; screen:\n%s", what, re, timeout, txt)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *screen) waitText(want string, timeout time.Duration) string {
	s.t.Helper()
	return s.wait(fmt.Sprintf("%q", want), regexp.MustCompile(regexp.QuoteMeta(want)), timeout)
}

func (s *screen) resize(cols, rows int) {
	s.em.Resize(cols, rows)
	pty.Setsize(s.pty, &pty.Winsize{Cols: uint16(cols), Rows: uint16(rows)})
}

func rowRe(name, rest string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^[▸ ] ` + regexp.QuoteMeta(name) + `\b.*` + rest)
}

// TestDashboard drives the real dashboard over two busybox machines (and
// a systemd one when the Debian image exists): the table, the actions, the
// embedded shell with a full-screen program and resizing, a build journal
// written by another process, and quitting with the machines left running.
func TestDashboard(t *testing.T) {
	e := newEnv(t)
	e.must("image", "import", filepath.Join(shared, "busybox.tar"), "busybox:test")
	// A systemd machine too when the Debian image exists (root runs).
	systemd := false
	if _, err := os.Stat(filepath.Join(shared, "debian.tar")); err == nil {
		e.must("image", "import", filepath.Join(shared, "debian.tar"), "debian:test")
		systemd = true
	}
	start := time.Now()
	var wg sync.WaitGroup
	names := []string{"bb1", "bb2"}
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.must("machine", "create", "busybox:test", "-n", n, "--cpus", "1", "--memory", "512M")
		}()
	}
	if systemd {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.must("machine", "create", "debian:test", "-n", "deb", "--cpus", "1", "--memory", "512M")
		}()
	}
	wg.Wait()
	t.Logf("machines booted in %v (systemd machine: %v)", time.Since(start).Round(time.Second), systemd)

	s := e.dashboard(t, 120, 30)
	for _, n := range names {
		s.wait(n+" running", rowRe(n, machineIP+`\s+1\s+\d+[KMG]?/512M\s+\d+[KMG]?\s+\d+[KMG]?\s+\d+[KMG]?\s+running`), 30*time.Second)
	}
	if systemd {
		s.wait("deb running", rowRe("deb", `debian:test\s+`+machineIP+`\s+1\s+\d+[KMG]?/512M\s+\d+[KMG]?\s+\d+[KMG]?\s+\d+[KMG]?\s+running`), 30*time.Second)
		// Stop it now: the rest of the test does not need it, and two
		// cores are few.
		e.must("machine", "stop", "deb")
		s.wait("deb stopped", rowRe("deb", `stopped`), 30*time.Second)
	}
	s.waitText("accel TCG", 5*time.Second)

	// Shell: bb1 is the first row and the default.
	s.send("g", "\r")
	s.waitText("[Shell]", 5*time.Second)
	s.send("\r")
	s.waitText("typing into the shell", 20*time.Second)
	s.wait("a prompt", regexp.MustCompile(`(?m)#\s*$`), 20*time.Second)
	s.send("echo $((6*7))\r")
	s.wait("42", regexp.MustCompile(`(?m)^42\s*$`), 10*time.Second)
	// The pane is the screen minus 7 lines (title, 3 header lines, tabs,
	// status, footer).
	s.send("stty size\r")
	s.wait("stty size 23 120", regexp.MustCompile(`(?m)^23 120\s*$`), 10*time.Second)
	s.resize(100, 26)
	time.Sleep(500 * time.Millisecond)
	s.send("clear; stty size\r")
	s.wait("stty size 19 100", regexp.MustCompile(`(?m)^19 100\s*$`), 10*time.Second)
	// A full-screen program inside the pane.
	s.send("vi /tmp/hello\r")
	s.wait("vi's empty lines", regexp.MustCompile(`(?m)^~\s*$\n^~\s*$`), 10*time.Second)
	s.send("i", "written in vi", "\x1b")
	// busybox vi reads ESC and what follows in one read as an escape
	// sequence; a person types slower than this test.
	time.Sleep(500 * time.Millisecond)
	s.send(":wq\r")
	s.send("clear; cat /tmp/hello\r")
	s.wait("the file vi wrote", regexp.MustCompile(`(?m)^written in vi\s*$`), 10*time.Second)
	// Leave the shell, go back, and come back: the session survives.
	s.send("\x1d")
	s.waitText("enter: type into the shell", 5*time.Second)
	s.send("\x1b")
	s.wait("the machines view", rowRe("bb2", "running"), 5*time.Second)
	s.send("\r", "\r")
	s.waitText("written in vi", 5*time.Second)
	s.send("\x1d", "\x1b")
	s.resize(120, 30)

	// Actions on bb2 (second row).
	s.send("g", "j", "x") // rows sort by name: bb1, bb2[, deb]
	s.wait("bb2 stopped", rowRe("bb2", `stopped`), 60*time.Second)
	s.send("s")
	s.wait("bb2 running again", rowRe("bb2", machineIP+`.*running`), 120*time.Second)
	s.waitText("start bb2: done", 5*time.Second)
	s.send("r")
	s.waitText("restarting bb2", 5*time.Second)
	s.waitText("restart bb2: done", 120*time.Second)
	s.wait("bb2 running after restart", rowRe("bb2", machineIP+`.*running`), 30*time.Second)
	s.send("d")
	s.waitText("Delete machine bb2 and its disk? [y/N]", 5*time.Second)
	s.send("n")
	s.waitText("delete bb2: cancelled", 5*time.Second)
	s.send("d", "y")
	s.waitText("delete bb2: done", 60*time.Second)
	s.wait("bb2 gone", regexp.MustCompile(`machines \d \(1 running\)`), 10*time.Second)
	if out := e.must("machine", "ls", "-q"); strings.Contains(out, "bb2") {
		t.Fatalf("bb2 still listed after delete: %q", out)
	}

	// A build journalled by another process streams into the builds view.
	j, err := progress.Create(layout.Data{Root: e.data}.Builds(), "build -t e2e:test .")
	if err != nil {
		t.Fatal(err)
	}
	j.Emit(progress.Event{Kind: progress.KindStepStart, Step: 1, Total: 2, Title: "FROM busybox:test"})
	j.Emit(progress.Event{Kind: progress.KindStepCached, Step: 1, Total: 2})
	j.Emit(progress.Event{Kind: progress.KindStepStart, Step: 2, Total: 2, Title: "RUN echo streaming"})
	s.send("3")
	s.waitText("build -t e2e:test .", 5*time.Second)
	s.waitText("RUN echo streaming", 5*time.Second)
	for i := range 3 {
		j.Emit(progress.Event{Kind: progress.KindLog, Step: 2, Line: fmt.Sprintf("log line %d from the build", i)})
		s.waitText(fmt.Sprintf("log line %d from the build", i), 5*time.Second)
	}
	j.Emit(progress.Event{Kind: progress.KindStepDone, Step: 2, Duration: 0.4})
	j.Emit(progress.Event{Kind: progress.KindDone, Digest: "sha256:00", Tags: []string{"e2e:test"}})
	j.Close()
	s.waitText("== done", 5*time.Second)

	// Quit: the machine keeps running, and a new dashboard shows it.
	s.send("1", "q")
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the dashboard did not quit; screen:\n%s", s.text())
	}
	if out := e.must("machine", "ls"); !regexp.MustCompile(`bb1 .*running`).MatchString(out) {
		t.Fatalf("bb1 not running after quitting the dashboard:\n%s", out)
	}
	s2 := e.dashboard(t, 80, 24)
	s2.wait("bb1 after restarting the dashboard", rowRe("bb1", "running"), 20*time.Second)
	s2.send("q")
}

// TestDashboardBench prints the dashboard's idle CPU over three running
// machines and its keypress-to-frame latency. It runs only with
// MACHINETOP_BENCH=1 (see tests/bench-dashboard.sh); MACHINETOP_BENCH_IDLE
// sets the idle measurement in seconds (default 60).
func TestDashboardBench(t *testing.T) {
	if os.Getenv("MACHINETOP_BENCH") == "" {
		t.Skip("set MACHINETOP_BENCH=1 (tests/bench-dashboard.sh)")
	}
	idle := 60 * time.Second
	if v := os.Getenv("MACHINETOP_BENCH_IDLE"); v != "" {
		var sec int
		fmt.Sscan(v, &sec)
		idle = time.Duration(sec) * time.Second
	}
	e := newEnv(t)
	e.must("image", "import", filepath.Join(shared, "busybox.tar"), "busybox:test")
	var wg sync.WaitGroup
	for _, n := range []string{"b1", "b2", "b3"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.must("machine", "create", "busybox:test", "-n", n, "--cpus", "1", "--memory", "256M")
		}()
	}
	wg.Wait()
	s := e.dashboard(t, 120, 30)
	for _, n := range []string{"b1", "b2", "b3"} {
		s.wait(n+" running", rowRe(n, `running`), 30*time.Second)
	}
	time.Sleep(3 * time.Second)
	pid := s.cmd.Process.Pid
	c0, t0 := cpuTicks(t, pid), time.Now()
	time.Sleep(idle)
	c1, t1 := cpuTicks(t, pid), time.Now()
	pct := float64(c1-c0) / 100 / t1.Sub(t0).Seconds() * 100
	fmt.Printf("BENCH idle CPU with 3 running machines: %.2f %% of one core over %v\n", pct, t1.Sub(t0).Round(time.Second))

	// Keypress to frame: press j/k alternately and time the first output
	// after each key.
	var lat []time.Duration
	for i := range 40 {
		k := "j"
		if i%2 == 1 {
			k = "k"
		}
		s.mu.Lock()
		before := s.frames
		s.mu.Unlock()
		sent := time.Now()
		io.WriteString(s.pty, k)
		for {
			s.mu.Lock()
			f, last := s.frames, s.last
			s.mu.Unlock()
			if f > before {
				lat = append(lat, last.Sub(sent))
				break
			}
			if time.Since(sent) > 2*time.Second {
				t.Fatalf("no frame 2 s after key %q", k)
			}
			time.Sleep(200 * time.Microsecond)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var sum, worst time.Duration
	for _, d := range lat {
		sum += d
		worst = max(worst, d)
	}
	fmt.Printf("BENCH keypress-to-frame latency: mean %v, worst %v over %d keys\n", (sum / time.Duration(len(lat))).Round(10*time.Microsecond), worst.Round(10*time.Microsecond), len(lat))
	s.send("q")
}

// cpuTicks returns utime+stime of pid in clock ticks (USER_HZ, 100/s).
func cpuTicks(t *testing.T, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	var u, s int64
	fmt.Sscan(f[11], &u)
	fmt.Sscan(f[12], &s)
	return u + s
}
