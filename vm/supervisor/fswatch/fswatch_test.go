package fswatch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// start runs Watch on roots and returns the channel of its batches,
// rendered as "op rel[/]" strings, once the roots are watched.
func start(t *testing.T, roots []string, opt Options) (<-chan []string, Stats) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan []string, 100)
	readyCh := make(chan Stats, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- Watch(ctx, roots, opt, func(s Stats) { readyCh <- s }, func(cs []Change) error {
			var b []string
			for _, c := range cs {
				s := fmt.Sprintf("%d:%s %s", c.Root, c.Op, c.Rel)
				if c.Dir {
					s += "/"
				}
				b = append(b, s)
			}
			out <- b
			return nil
		})
	}()
	t.Cleanup(func() { cancel(); <-errc })
	select {
	case s := <-readyCh:
		return out, s
	case err := <-errc:
		t.Fatal(err)
	}
	return nil, Stats{}
}

// next returns the next batch, failing after 10 s.
func next(t *testing.T, ch <-chan []string) []string {
	t.Helper()
	select {
	case b := <-ch:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no batch within 10 s")
	}
	return nil
}

// until gathers batches until one holds want, and returns everything seen.
func until(t *testing.T, ch <-chan []string, want string) []string {
	t.Helper()
	var all []string
	for {
		b := next(t, ch)
		all = append(all, b...)
		for _, s := range b {
			if s == want {
				return all
			}
		}
	}
}

func TestEditorSaveIsOneChange(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "main.go")
	os.WriteFile(f, []byte("v1"), 0o644)
	ch, _ := start(t, []string{dir}, Options{Settle: 100 * time.Millisecond, MaxDelay: time.Second})
	// An editor's save: write a temporary file, rename it over the
	// original, set its mode.
	tmp := filepath.Join(dir, ".main.go.swp")
	os.WriteFile(tmp, []byte("v2"), 0o600)
	os.Rename(tmp, f)
	os.Chmod(f, 0o644)
	got := next(t, ch)
	if strings.Join(got, " ") != "0:changed main.go" {
		t.Errorf("batch %q, want one change of main.go", got)
	}
}

func TestNewDirectoriesAreWatchedAndWalked(t *testing.T) {
	dir := t.TempDir()
	ch, st := start(t, []string{dir}, Options{})
	if st.Dirs != 1 || st.Capped {
		t.Errorf("stats %+v", st)
	}
	// Files made before the new directory's watch is set are found by
	// the walk; files after, by the watch.
	os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755)
	os.WriteFile(filepath.Join(dir, "a", "b", "one.txt"), nil, 0o644)
	got := until(t, ch, "0:changed a/b/one.txt")
	if !contains(got, "0:changed a/") {
		t.Errorf("batches %q lack the new directory", got)
	}
	os.WriteFile(filepath.Join(dir, "a", "b", "two.txt"), []byte("x"), 0o644)
	until(t, ch, "0:changed a/b/two.txt")
	// A renamed directory is watched under its new name.
	os.Rename(filepath.Join(dir, "a"), filepath.Join(dir, "c"))
	got = until(t, ch, "0:changed c/b/two.txt")
	if !contains(got, "0:removed a/") || !contains(got, "0:changed c/") {
		t.Errorf("batches %q: want a/ removed and c/ changed", got)
	}
	os.WriteFile(filepath.Join(dir, "c", "b", "three.txt"), []byte("x"), 0o644)
	got = until(t, ch, "0:changed c/b/three.txt")
	for _, s := range got {
		if strings.Contains(s, " a/") {
			t.Errorf("event under the old name: %q", s)
		}
	}
}

func TestRemovalAndNestedRoots(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "src")
	os.Mkdir(sub, 0o755)
	f := filepath.Join(sub, "x.txt")
	os.WriteFile(f, []byte("x"), 0o644)
	ch, _ := start(t, []string{dir, sub}, Options{})
	os.Remove(f)
	got := until(t, ch, "1:removed x.txt")
	if !contains(got, "0:removed src/x.txt") {
		t.Errorf("batches %q: the outer root did not see the removal", got)
	}
}

func TestSkipAndCap(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"hidden/deep", "d1", "d2", "d3"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	_, st := start(t, []string{dir}, Options{Skip: []string{filepath.Join(dir, "hidden")}})
	if st.Dirs != 4 || st.Capped {
		t.Errorf("with hidden skipped: %+v, want 4 directories", st)
	}
	_, st = start(t, []string{dir}, Options{MaxDirs: 2})
	if st.Dirs != 2 || !st.Capped {
		t.Errorf("capped at 2: %+v", st)
	}
	ch, _ := start(t, []string{dir}, Options{Skip: []string{filepath.Join(dir, "hidden")}})
	os.WriteFile(filepath.Join(dir, "hidden", "console.log"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "seen"), []byte("x"), 0o644)
	if got := until(t, ch, "0:changed seen"); contains(got, "0:changed hidden/console.log") {
		t.Errorf("a skipped directory was reported: %q", got)
	}
}

// The guest's replays change only the ctime (a chmod to the same mode),
// or make the removed path exist briefly with mode 0000: the watcher
// drops those echoes.
func TestGuestReplayEchoesAreDropped(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the replay is Linux's")
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "app.js")
	ch, _ := start(t, []string{dir}, Options{})
	os.WriteFile(f, []byte("x"), 0o644)
	until(t, ch, "0:changed app.js")
	os.Chmod(f, 0o644) // the replay of a change
	os.WriteFile(filepath.Join(dir, "mark1"), nil, 0o644)
	if got := until(t, ch, "0:changed mark1"); contains(got, "0:changed app.js") {
		t.Errorf("the echo of a replayed change was sent: %q", got)
	}
	os.Remove(f)
	until(t, ch, "0:removed app.js")
	// The replay of the removal: create with mode 0000, remove.
	os.WriteFile(f, nil, 0)
	os.WriteFile(filepath.Join(dir, "mark2"), nil, 0o644)
	got := until(t, ch, "0:changed mark2")
	os.Remove(f)
	os.WriteFile(filepath.Join(dir, "mark3"), nil, 0o644)
	got = append(got, until(t, ch, "0:changed mark3")...)
	for _, s := range got {
		if strings.Contains(s, "app.js") {
			t.Errorf("the echo of a replayed removal was sent: %q", got)
		}
	}
	// A real host write after that is sent.
	os.WriteFile(f, []byte("back"), 0o644)
	until(t, ch, "0:changed app.js")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestCoalescerWindows(t *testing.T) {
	c := newCoalescer(10*time.Millisecond, 50*time.Millisecond, 3)
	t0 := time.Unix(1000, 0)
	if !c.deadline().IsZero() {
		t.Fatal("deadline with nothing pending")
	}
	c.add(key{0, "a"}, true, t0)
	c.add(key{0, "b"}, false, t0.Add(5*time.Millisecond))
	c.add(key{0, "a"}, false, t0.Add(8*time.Millisecond))
	if d := c.deadline(); !d.Equal(t0.Add(18 * time.Millisecond)) {
		t.Errorf("deadline %v after the last event, want 18ms", d.Sub(t0))
	}
	// Events every 9 ms keep the window open only until maxDelay.
	for i := 2; i < 10; i++ {
		c.add(key{0, "b"}, false, t0.Add(time.Duration(i*9)*time.Millisecond))
	}
	if d := c.deadline(); !d.Equal(t0.Add(50 * time.Millisecond)) {
		t.Errorf("deadline %v, want maxDelay 50ms", d.Sub(t0))
	}
	if c.full() {
		t.Error("full with 2 of 3")
	}
	c.add(key{1, "c"}, false, t0)
	if !c.full() {
		t.Error("not full with 3 of 3")
	}
	keys, created := c.take()
	if fmt.Sprint(keys, created) != "[{0 a} {0 b} {1 c}] [true false false]" {
		t.Errorf("take: %v %v", keys, created)
	}
	if !c.empty() {
		t.Error("not empty after take")
	}
}

func TestMemoryDecides(t *testing.T) {
	m := newMemory(100, time.Second)
	t0 := time.Unix(1000, 0)
	k := key{0, "f"}
	file := state{exists: true, size: 3, mtime: 1, mode: 0o644, ino: 7}
	var log []string
	step := func(s state, created bool, at time.Duration) {
		c, ok := m.decide(k, s, created, t0.Add(at))
		if ok {
			log = append(log, c.Op.String())
		} else {
			log = append(log, "-")
		}
	}
	step(state{}, true, 0)                                                      // temp file created and gone in one window
	step(file, true, 0)                                                         // created
	step(file, false, 10*time.Millisecond)                                      // chmod echo: same state
	step(state{exists: true, size: 4, mtime: 2, mode: 0o644, ino: 7}, false, 0) // appended
	step(state{}, false, 0)                                                     // removed
	step(state{exists: true, mode: 0, ino: 9}, true, 100*time.Millisecond)      // guest replay's create
	step(state{}, false, 200*time.Millisecond)                                  // guest replay's removal
	step(state{exists: true, mode: 0o644, ino: 10}, true, 300*time.Millisecond) // host touch: sent
	step(state{}, false, 400*time.Millisecond)                                  // removed again
	step(state{exists: true, mode: 0, ino: 11}, true, 2*time.Second)            // mode 0 after the echo window: sent
	want := "- changed - changed removed - - changed removed changed"
	if got := strings.Join(log, " "); got != want {
		t.Errorf("decisions\n got %s\nwant %s", got, want)
	}
}

// The memory of sent states stays bounded.
func TestMemoryBound(t *testing.T) {
	m := newMemory(10, time.Second)
	t0 := time.Unix(1000, 0)
	for i := range 1000 {
		m.decide(key{0, fmt.Sprint(i)}, state{exists: true, ino: uint64(i)}, true, t0)
		m.decide(key{1, fmt.Sprint(i)}, state{}, false, t0)
	}
	if len(m.known) > 10 || len(m.removedAt) > 10 {
		t.Errorf("memory holds %d states and %d removals, bound 10", len(m.known), len(m.removedAt))
	}
}

// A burst of 10,000 new files reaches the other side as changes, in
// windows of at most MaxPending paths.
func TestBurstOfTenThousandFiles(t *testing.T) {
	dir := t.TempDir()
	ch, _ := start(t, []string{dir}, Options{MaxPending: 1000})
	const n = 10000
	t0 := time.Now()
	defer func() { t.Logf("took %v", time.Since(t0)) }()
	for i := range n {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d", i)), []byte("x"), 0o644)
	}
	seen := map[string]bool{}
	biggest := 0
	for len(seen) < n {
		b := next(t, ch)
		biggest = max(biggest, len(b))
		for _, s := range b {
			seen[s] = true
		}
	}
	t.Logf("%d changes in windows of at most %d paths", len(seen), biggest)
	if biggest > 1000 {
		t.Errorf("a window of %d paths, bound 1000", biggest)
	}
	if !seen["0:changed f00000"] || !seen[fmt.Sprintf("0:changed f%05d", n-1)] {
		t.Errorf("first or last file missing")
	}
}
