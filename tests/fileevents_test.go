package tests

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// eventWait is how long a step may take to reach the guest's watchers.
const eventWait = 2 * time.Second

// guestWatcher is a file watcher running in a machine through `machine
// run`, its output lines read as they come, stamped with the host's clock
// on arrival.
type guestWatcher struct {
	name  string
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []stampedLine
	more  chan struct{} // closed and replaced at every line
	ready chan struct{} // closed when the watcher said its watches are set
}

type stampedLine struct {
	at   time.Time
	text string
}

// startWatcher runs argv as root in machine name; readyOn is the line (on
// stdout or stderr) by which the program says it watches.
func (e *env) startWatcher(t *testing.T, label, name, readyOn string, argv ...string) *guestWatcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "machinetop"), append([]string{"machine", "run", "-n", name, "--root", "--"}, argv...)...)
	cmd.Env = e.environ()
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	w := &guestWatcher{name: label, cmd: cmd, more: make(chan struct{}), ready: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	read := func(r io.Reader, events bool) {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			line := sc.Text()
			if strings.Contains(line, readyOn) {
				once.Do(func() { close(w.ready) })
				continue
			}
			if !events {
				t.Logf("%s: %s", label, line)
				continue
			}
			w.mu.Lock()
			w.lines = append(w.lines, stampedLine{time.Now(), line})
			close(w.more)
			w.more = make(chan struct{})
			w.mu.Unlock()
		}
	}
	go read(stdout, true)
	go read(stderr, false)
	t.Cleanup(func() { cancel(); cmd.Wait() })
	select {
	case <-w.ready:
	case <-time.After(2 * time.Minute):
		t.Fatalf("%s did not start watching", label)
	}
	return w
}

// since returns the lines that arrived from index i on, and a channel
// closed at the next line.
func (w *guestWatcher) since(i int) ([]stampedLine, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]stampedLine(nil), w.lines[i:]...), w.more
}

func (w *guestWatcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.lines)
}

// expect is one path a step must produce an event for, and the event
// that ends the guest's replay of it for each watcher (the step is over
// for that watcher once each path's final event arrived).
type expect struct {
	path         string
	inotifyFinal string // a word of inotifywait's event list
	fsnotifyOp   string // an fsnotify operation name
}

// stepResult is what one watcher saw for one step.
type stepResult struct {
	events  []string
	latency time.Duration // to the first event on an expected path; -1 when none came
	missing []string      // expected paths without their final event
}

// collect waits until every expected path had its final event from w, or
// eventWait after t0 passed, and returns the events that arrived.
func collect(w *guestWatcher, from int, t0 time.Time, exp []expect, inotify bool) stepResult {
	deadline := t0.Add(eventWait)
	for {
		lines, more := w.since(from)
		r := stepResult{latency: -1}
		done := map[string]bool{}
		for _, l := range lines {
			r.events = append(r.events, l.text)
			p := watcherLinePath(l.text, inotify)
			for _, x := range exp {
				if p != x.path {
					continue
				}
				if r.latency < 0 {
					r.latency = l.at.Sub(t0)
				}
				if hasWord(l.text, map[bool]string{true: x.inotifyFinal, false: x.fsnotifyOp}[inotify]) {
					done[x.path] = true
				}
			}
		}
		for _, x := range exp {
			if !done[x.path] {
				r.missing = append(r.missing, x.path)
			}
		}
		if len(r.missing) == 0 {
			return r
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return r
		}
		select {
		case <-more:
		case <-time.After(wait):
		}
	}
}

// watcherLinePath is the path an output line is about: inotifywait's
// "%w%f EVENTS" with the watched root cut, fsprobe's "OPS PATH".
func watcherLinePath(line string, inotify bool) string {
	f := strings.Fields(line)
	if len(f) < 2 {
		return ""
	}
	if inotify {
		return strings.TrimPrefix(f[0], "/src/")
	}
	return f[len(f)-1]
}

func hasWord(line, word string) bool {
	for _, f := range strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == ',' || r == '|' }) {
		if f == word {
			return true
		}
	}
	return false
}

// fsprobe returns the fsnotify watcher built for the guest, building it
// into the shared bin directory on first use (the root pass builds it for
// the ordinary user's, which may have no Go).
func fsprobe(t *testing.T) string {
	t.Helper()
	probe := filepath.Join(binDir, "fsprobe-linux-"+hostArch())
	if _, err := os.Stat(probe); err == nil && os.Getenv(envChild) != "" {
		return probe
	}
	build := exec.Command("go", "build", "-o", probe, "./fsprobe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+hostArch())
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building fsprobe: %v\n%s", err, b)
	}
	return probe
}

// TestFileEventsAsOrdinaryUser runs TestFileEvents as an ordinary user,
// whose shares are 9p, when the tests run as root.
func TestFileEventsAsOrdinaryUser(t *testing.T) {
	if os.Getenv(envChild) == "" && os.Getuid() == 0 {
		fsprobe(t)
	}
	asOrdinaryUser(t, "^TestFileEvents$")
}

// TestFileEvents shares a host directory into a Debian machine, runs two
// watchers of different kinds in it (inotifywait -m -r, and fsprobe on
// fsnotify), makes the changes a developer's editor and tools make on the
// host, and prints what each watcher saw per step with the latency from
// the host change to the watcher's output reaching the host (an upper
// bound of the event's latency in the guest). It fails when a step
// produced no event in a watcher within eventWait.
func TestFileEvents(t *testing.T) {
	tarball := filepath.Join(shared, "debian.tar")
	if _, err := os.Stat(tarball); err != nil {
		t.Skip("no Debian image: making one needs root (debootstrap); run the tests as root")
	}
	e := newEnv(t)
	e.must("image", "import", tarball, "debian:test")
	src := t.TempDir()
	os.Chmod(src, 0o755)
	e.must("machine", "create", "debian:test", "-n", "fsev", "--cpus", "2", "--memory", "1G", "--home-mount", "none", "--mount", src+":/src")
	if out := e.mustRun("fsev", "cat", "/proc/sys/fs/inotify/max_user_watches", "/proc/sys/fs/inotify/max_user_instances"); strings.Fields(out)[0] != "524288" || strings.Fields(out)[1] != "8192" {
		t.Errorf("inotify limits in the guest: %q, want 524288 and 8192", out)
	}

	// Copied as the mapped user, who may write /tmp.
	e.must("machine", "cp", fsprobe(t), "fsev:/tmp/fsprobe")

	inw := e.startWatcher(t, "inotifywait", "fsev", "Watches established",
		"stdbuf", "-oL", "inotifywait", "-m", "-r", "--format", "%w%f %e", "/src")
	fsn := e.startWatcher(t, "fsprobe", "fsev", "READY", "/tmp/fsprobe", "/src")

	path := func(p string) string { return filepath.Join(src, p) }
	write := func(p, s string, flag int) {
		f, err := os.OpenFile(path(p), flag, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(s)
		f.Close()
	}
	changed := func(p string) expect { return expect{p, "CLOSE_WRITE", "CHMOD"} }
	removed := func(p string) expect { return expect{p, "DELETE", "REMOVE"} }
	steps := []struct {
		name string
		do   func()
		exp  []expect
	}{
		{"create a.txt", func() { write("a.txt", "one\n", os.O_CREATE|os.O_WRONLY|os.O_EXCL) }, []expect{changed("a.txt")}},
		{"append to a.txt", func() { write("a.txt", "two\n", os.O_APPEND|os.O_WRONLY) }, []expect{changed("a.txt")}},
		{"replace a.txt (temp + rename)", func() {
			write(".a.txt.tmp", "three\n", os.O_CREATE|os.O_WRONLY|os.O_TRUNC)
			os.Rename(path(".a.txt.tmp"), path("a.txt"))
		}, []expect{changed("a.txt")}},
		{"rename a.txt to b.txt", func() { os.Rename(path("a.txt"), path("b.txt")) }, []expect{removed("a.txt"), changed("b.txt")}},
		{"delete b.txt", func() { os.Remove(path("b.txt")) }, []expect{removed("b.txt")}},
		{"mkdir d, create d/c.txt", func() {
			os.Mkdir(path("d"), 0o755)
			write("d/c.txt", "four\n", os.O_CREATE|os.O_WRONLY)
		}, []expect{{"d", "ATTRIB", "CHMOD"}}},
	}
	type row struct {
		step     string
		exp      []expect
		inotify  stepResult
		fsnotify stepResult
	}
	var rows []row
	for _, s := range steps {
		ni, nf := inw.count(), fsn.count()
		t0 := time.Now()
		s.do()
		var r row
		r.step, r.exp = s.name, s.exp
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); r.inotify = collect(inw, ni, t0, s.exp, true) }()
		go func() { defer wg.Done(); r.fsnotify = collect(fsn, nf, t0, s.exp, false) }()
		wg.Wait()
		rows = append(rows, r)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-30s | %-9s | %-60s | %-9s | %s\n", "host step", "inotify", "inotifywait -m -r events", "fsnotify", "fsnotify (Go) events")
	lat := func(d time.Duration) string {
		if d < 0 {
			return "none"
		}
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	for _, r := range rows {
		fmt.Fprintf(&b, "%-30s | %-9s | %-60s | %-9s | %s\n", r.step, lat(r.inotify.latency), strings.Join(r.inotify.events, "; "), lat(r.fsnotify.latency), strings.Join(r.fsnotify.events, "; "))
	}
	t.Log(b.String())
	for _, r := range rows {
		if r.inotify.latency < 0 || r.inotify.latency > eventWait {
			t.Errorf("%s: inotifywait saw no event on %v within %v", r.step, paths(r.exp), eventWait)
		}
		if r.fsnotify.latency < 0 || r.fsnotify.latency > eventWait {
			t.Errorf("%s: the fsnotify watcher saw no event on %v within %v", r.step, paths(r.exp), eventWait)
		}
		if len(r.inotify.missing) > 0 || len(r.fsnotify.missing) > 0 {
			t.Logf("%s: final replay event missing for %v (inotifywait) %v (fsnotify)", r.step, r.inotify.missing, r.fsnotify.missing)
		}
	}

	// The guest's own writes in the share come back from the host as
	// replays, at most one per burst window and path (see README, "File
	// events from the host"): the figure for 200 appends made in the
	// guest, then a host change that marks the end.
	n := inw.count()
	e.mustRun("fsev", "sh", "-c", "for i in $(seq 200); do echo $i >> /src/guest.txt; done")
	write("marker", "end\n", os.O_CREATE|os.O_WRONLY)
	if r := collect(inw, n, time.Now(), []expect{changed("marker")}, true); len(r.missing) > 0 {
		t.Fatalf("the marker did not arrive: %q", r.events)
	}
	lines, _ := inw.since(n)
	modify, replays := 0, 0
	for _, l := range lines {
		if watcherLinePath(l.text, true) == "guest.txt" {
			if hasWord(l.text, "MODIFY") {
				modify++
			}
			if hasWord(l.text, "ATTRIB") {
				replays++
			}
		}
	}
	t.Logf("200 appends made in the guest: %d MODIFY events from them, %d replays from the host (ATTRIB)", modify, replays)
	if modify != 200 {
		t.Errorf("inotifywait saw %d MODIFY events of the guest's 200 appends", modify)
	}
}

func paths(exp []expect) []string {
	var out []string
	for _, x := range exp {
		out = append(out, x.path)
	}
	return out
}
