package tui

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/colorprofile"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/images"
	"github.com/machinetop/machinetop/images/progress"
	"github.com/machinetop/machinetop/theme"
	"github.com/machinetop/machinetop/tui/keys"
	"github.com/machinetop/machinetop/tui/source"
	"github.com/machinetop/machinetop/tui/source/sourcetest"
	"github.com/machinetop/machinetop/vm"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var now = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func row(name, state string, cpus int, mem uint64, def bool) source.Row {
	var r source.Row
	r.Name, r.State, r.CPUs, r.MemoryBytes, r.Default = name, state, cpus, mem, def
	r.Image, r.ImageDigest = "busybox:test", "sha256:"+strings.Repeat("ab", 32)
	r.DiskBytes, r.DiskAllocated = 64*vm.GiB, 5*vm.MiB
	r.Created = now.Add(-48 * time.Hour)
	if state == vm.StateRunning {
		r.IP = "10.0.2.15"
		r.Started = now.Add(-(3*time.Hour + 12*time.Minute))
		r.Accelerator = "tcg"
		r.Metrics = &proto.Metrics{MemUsed: 93 * vm.MiB, MemCache: 60 * vm.MiB, MemTotal: mem, CPUPercent: 12, DiskUsed: 40 * vm.MiB, DiskTotal: vm.GiB, ReclaimMode: "gradual"}
		r.HostRSS = 180 * vm.MiB
	}
	return r
}

func fake(t testing.TB) *sourcetest.Fake {
	d, _ := v1.NewHash("sha256:" + strings.Repeat("cd", 32))
	bb := row("bb", vm.StateRunning, 1, 512*vm.MiB, true)
	since := now.Add(-time.Minute)
	bb.Ports = []vm.PortForward{
		{Kind: "ssh", GuestPort: 22, HostPort: 41022, HostAddrs: []string{"127.0.0.1:41022"}, Since: since},
		{Kind: "auto", GuestPort: 3000, HostPort: 3000, HostAddrs: []string{"127.0.0.1:3000", "[::1]:3000"}, Since: since},
		{Kind: "auto", GuestPort: 8123, HostPort: 40123, HostAddrs: []string{"127.0.0.1:40123", "[::1]:40123"}, Since: since, Note: "host port 8123 is taken; forwarded from a free port"},
	}
	return &sourcetest.Fake{
		Dir: t.TempDir(),
		Rows: []source.Row{
			bb,
			row("deb", vm.StateRunning, 2, 2*vm.GiB, false),
			row("old", vm.StateStopped, 1, 1*vm.GiB, false),
		},
		Host: source.Host{CPUs: 2, MemUsed: 5 * vm.GiB, MemTotal: 24 * vm.GiB, Held: 360 * vm.MiB, Accel: "tcg"},
		Imgs: []images.Image{{Name: "busybox", Tag: "test", Digest: d, Size: 1 << 20, Created: now.Add(-time.Hour)}},
	}
}

// newModel returns a dashboard over src at w×h with a fixed clock and the
// dark theme, after its first snapshot.
func newModel(t testing.TB, src source.Source, w, h int) *Model {
	m := New(Options{Src: src, Theme: theme.New(theme.Dark, false), ThemeFixed: true, Now: func() time.Time { return now }})
	m.Update(tea.WindowSizeMsg{Width: w, Height: h})
	run(t, m, m.Init())
	return m
}

// run executes cmd and feeds its messages to m, following the Cmds they
// return up to six levels; Cmds slower than 100 ms (refresh ticks) are
// dropped.
func run(t testing.TB, m *Model, cmd tea.Cmd) {
	runDepth(t, m, cmd, 0)
}

func runDepth(t testing.TB, m *Model, cmd tea.Cmd, depth int) {
	if cmd == nil || depth > 6 {
		return
	}
	ch := make(chan tea.Msg, 1)
	go func() { ch <- cmd() }()
	var msg tea.Msg
	select {
	case msg = <-ch:
	case <-time.After(100 * time.Millisecond):
		return
	}
	switch msg := msg.(type) {
	case nil:
	case tea.BatchMsg:
		for _, c := range msg {
			runDepth(t, m, c, depth+1)
		}
	default:
		if rv := reflect.ValueOf(msg); fmt.Sprintf("%T", msg) == "tea.sequenceMsg" {
			for i := range rv.Len() {
				runDepth(t, m, rv.Index(i).Interface().(tea.Cmd), depth+1)
			}
			return
		}
		_, next := m.Update(msg)
		runDepth(t, m, next, depth+1)
	}
}

func press(t testing.TB, m *Model, keys ...string) {
	for _, k := range keys {
		var msg tea.KeyPressMsg
		switch k {
		case "enter":
			msg = tea.KeyPressMsg{Code: tea.KeyEnter}
		case "esc":
			msg = tea.KeyPressMsg{Code: tea.KeyEscape}
		case "tab":
			msg = tea.KeyPressMsg{Code: tea.KeyTab}
		case "down":
			msg = tea.KeyPressMsg{Code: tea.KeyDown}
		default:
			r := []rune(k)[0]
			msg = tea.KeyPressMsg{Code: r, Text: k}
		}
		_, cmd := m.Update(msg)
		run(t, m, cmd)
	}
}

// ascii renders the screen through the ASCII colour profile.
func ascii(m *Model) string {
	var b bytes.Buffer
	w := &colorprofile.Writer{Forward: &b, Profile: colorprofile.ASCII}
	w.Write([]byte(m.Render()))
	return b.String()
}

// plain is the screen's text without any escape sequence.
func plain(m *Model) string {
	var b bytes.Buffer
	w := &colorprofile.Writer{Forward: &b, Profile: colorprofile.NoTTY}
	w.Write([]byte(m.Render()))
	return b.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the golden file (run with -update after checking):\n%s", name, got)
	}
}

func TestGoldenScreens(t *testing.T) {
	for _, sz := range [][2]int{{80, 24}, {120, 30}, {60, 20}} {
		name := fmt.Sprintf("%dx%d", sz[0], sz[1])
		t.Run(name, func(t *testing.T) {
			m := newModel(t, fake(t), sz[0], sz[1])
			golden(t, "machines-"+name, ascii(m))
			press(t, m, "?")
			golden(t, "help-"+name, ascii(m))
			press(t, m, "x", "enter")
			golden(t, "detail-"+name, ascii(m))
			press(t, m, "esc", "2")
			golden(t, "images-"+name, ascii(m))
		})
	}
}

func TestNoLineWrapsAtAnySize(t *testing.T) {
	for _, w := range []int{40, 60, 80, 100, 200} {
		for _, h := range []int{10, 24, 50} {
			m := newModel(t, fake(t), w, h)
			for _, v := range [][]string{nil, {"enter"}, {"esc", "2"}, {"3"}, {"1", "?"}} {
				press(t, m, v...)
				lines := strings.Split(plain(m), "\n")
				if len(lines) != h {
					t.Fatalf("%dx%d after %v: %d lines", w, h, v, len(lines))
				}
				for i, l := range lines {
					if n := len([]rune(l)); n > w {
						t.Fatalf("%dx%d after %v: line %d is %d cells: %q", w, h, v, i, n, l)
					}
				}
			}
		}
	}
}

func TestMachineActions(t *testing.T) {
	f := fake(t)
	m := newModel(t, f, 100, 24)
	s := plain(m)
	for _, want := range []string{"bb *", "10.0.2.15", "93M/512M", "running", "stopped", "3h12m", "accel TCG", "held by machines 360M"} {
		if !strings.Contains(s, want) {
			t.Errorf("machines view lacks %q:\n%s", want, s)
		}
	}
	press(t, m, "x") // stop bb
	if got := f.Calls; len(got) != 1 || got[0] != "stop bb" {
		t.Fatalf("calls = %v", got)
	}
	if s := plain(m); !strings.Contains(s, "stop bb: done") {
		t.Errorf("no status after stop:\n%s", s)
	}
	run(t, m, m.Fetch())
	if r, _ := m.Machines().Row("bb"); r.State != vm.StateStopped {
		t.Errorf("bb is %s after stop", r.State)
	}
	press(t, m, "s")
	press(t, m, "j", "S")
	if r, _ := m.Machines().Row("deb"); !r.Default {
		run(t, m, m.Fetch())
		if r, _ := m.Machines().Row("deb"); !r.Default {
			t.Errorf("deb is not default after S: %v", f.Calls)
		}
	}
	// Delete asks; n keeps the machine, y removes it.
	press(t, m, "d")
	if s := plain(m); !strings.Contains(s, "Delete machine deb and its disk? [y/N]") {
		t.Fatalf("no confirmation:\n%s", s)
	}
	press(t, m, "n")
	run(t, m, m.Fetch())
	if _, ok := m.Machines().Row("deb"); !ok {
		t.Fatal("deb deleted after n")
	}
	press(t, m, "d", "y")
	run(t, m, m.Fetch())
	if _, ok := m.Machines().Row("deb"); ok {
		t.Fatalf("deb not deleted after y: %v", f.Calls)
	}
}

func TestActionErrorIsShown(t *testing.T) {
	f := fake(t)
	f.Err = fmt.Errorf("supervisor said no")
	m := newModel(t, f, 100, 24)
	press(t, m, "r")
	if s := plain(m); !strings.Contains(s, "error: restart bb: supervisor said no") {
		t.Errorf("error not shown:\n%s", s)
	}
}

func TestSpinnerWhileBusy(t *testing.T) {
	m := newModel(t, fake(t), 100, 24)
	// Send the key but do not run the action: the row shows the spinner.
	m.Update(tea.KeyPressMsg{Code: 'x', Text: "x"})
	if s := plain(m); !strings.Contains(s, "⠋ stopping") {
		t.Errorf("no spinner:\n%s", s)
	}
}

func TestFilterAndSort(t *testing.T) {
	m := newModel(t, fake(t), 100, 24)
	press(t, m, "/", "d", "e", "enter")
	s := plain(m)
	if strings.Contains(s, "old") || !strings.Contains(s, "deb") {
		t.Errorf("filter 'de':\n%s", s)
	}
	press(t, m, "esc")
	press(t, m, "M") // memory used, largest first
	if got := m.Machines().Selected(); got != "deb" {
		t.Errorf("selection moved to %s after sort", got)
	}
	press(t, m, "g")
	if got := m.Machines().Selected(); got != "bb" && got != "deb" {
		t.Errorf("first row by memory = %s", got)
	}
	press(t, m, "C", "G")
	if got := m.Machines().Selected(); got != "deb" {
		t.Errorf("last row by CPUs = %s", got)
	}
}

func TestCreateForm(t *testing.T) {
	f := fake(t)
	m := newModel(t, f, 100, 24)
	press(t, m, "c")
	if !strings.Contains(plain(m), "Create a machine") {
		t.Fatal("no form")
	}
	press(t, m, "tab") // image prefilled from the selection
	for _, k := range "new" {
		press(t, m, string(k))
	}
	press(t, m, "tab", "1", "tab", "5", "1", "2", "M", "enter")
	if len(f.Calls) != 1 || f.Calls[0] != fmt.Sprintf("create busybox:test new 1 %d", 512*vm.MiB) {
		t.Fatalf("calls = %v", f.Calls)
	}
}

func TestImageInUseIsNotDeleted(t *testing.T) {
	f := fake(t)
	m := newModel(t, f, 100, 24)
	press(t, m, "2", "d")
	if s := plain(m); !strings.Contains(s, "is used by bb, deb, old") {
		t.Errorf("no refusal:\n%s", s)
	}
	if len(f.Calls) != 0 {
		t.Errorf("calls = %v", f.Calls)
	}
	press(t, m, "p", "x", "enter")
	if s := plain(m); !strings.Contains(s, sourcetest.ErrPull.Error()) {
		t.Errorf("pull:\n%s", s)
	}
}

func TestBuildsViewFollowsJournal(t *testing.T) {
	f := fake(t)
	j, err := progress.Create(f.JournalDir(), "build -t app:dev .")
	if err != nil {
		t.Fatal(err)
	}
	j.Emit(progress.Event{Kind: progress.KindStepStart, Step: 1, Total: 2, Title: "FROM busybox:test"})
	j.Emit(progress.Event{Kind: progress.KindStepCached, Step: 1, Total: 2})
	j.Emit(progress.Event{Kind: progress.KindStepStart, Step: 2, Total: 2, Title: "RUN echo hello"})
	j.Emit(progress.Event{Kind: progress.KindLog, Step: 2, Line: "hello from the build"})
	m := newModel(t, f, 100, 30)
	press(t, m, "3")
	s := plain(m)
	for _, want := range []string{"build -t app:dev .", "cached", "FROM busybox:test", "RUN echo hello", "hello from the build", "running"} {
		if !strings.Contains(s, want) {
			t.Errorf("builds view lacks %q:\n%s", want, s)
		}
	}
	j.Emit(progress.Event{Kind: progress.KindStepDone, Step: 2, Duration: 1.5})
	j.Emit(progress.Event{Kind: progress.KindLog, Step: 2, Line: "second line"})
	j.Emit(progress.Event{Kind: progress.KindDone, Digest: "sha256:feed", Tags: []string{"app:dev"}})
	j.Close()
	deadline := time.Now().Add(3 * time.Second)
	for m.Builds().State() != "done" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		// The follow Cmd re-arms every 300 ms; the last one was dropped by
		// run(), so poke the view the way the root does.
		run(t, m, m.builds.Show())
	}
	s = plain(m)
	for _, want := range []string{"second line", "1.5s", "== done"} {
		if !strings.Contains(s, want) {
			t.Errorf("builds view lacks %q after more events:\n%s", want, s)
		}
	}
	// Search.
	press(t, m, "/", "h", "e", "l", "l", "o", "enter")
	if s := plain(m); !strings.Contains(s, "/hello (n/N)") {
		t.Errorf("no search state:\n%s", s)
	}
}

func TestConsoleTabFollowsFile(t *testing.T) {
	f := fake(t)
	os.WriteFile(f.ConsolePath("bb"), []byte("[    0.000000] Linux version 6.1\nboot line two\n"), 0o644)
	m := newModel(t, f, 100, 24)
	press(t, m, "enter", "tab")
	if s := plain(m); !strings.Contains(s, "boot line two") || !strings.Contains(s, "[Console log]") {
		t.Errorf("console tab:\n%s", s)
	}
}

func TestPortsTab(t *testing.T) {
	f := fake(t)
	m := newModel(t, f, 120, 30)
	if s := plain(m); !strings.Contains(s, "3000,40123->8123") {
		t.Errorf("machines table lacks the PORTS cell:\n%s", s)
	}
	press(t, m, "enter", "tab", "tab")
	s := plain(m)
	for _, want := range []string{"[Ports]", "SSH  127.0.0.1:41022 → 22", "▸  3000 → http://127.0.0.1:3000/", "8123 → http://127.0.0.1:40123/", "host port 8123 is taken", "o open", "y copy URL"} {
		if !strings.Contains(s, want) {
			t.Errorf("Ports tab lacks %q:\n%s", want, s)
		}
	}
	press(t, m, "j", "o")
	if len(f.Calls) != 1 || f.Calls[0] != "open http://127.0.0.1:40123/" {
		t.Fatalf("calls after j o: %v", f.Calls)
	}
	if s := plain(m); !strings.Contains(s, "▸  8123") || !strings.Contains(s, "opened http://127.0.0.1:40123/") {
		t.Errorf("after j o:\n%s", s)
	}
	press(t, m, "k", "y")
	if s := plain(m); !strings.Contains(s, "copied http://127.0.0.1:3000/") {
		t.Errorf("after k y:\n%s", s)
	}
	// A failing opener is reported.
	f.Err = errors.New("no browser here")
	press(t, m, "o")
	if s := plain(m); !strings.Contains(s, "no browser here") {
		t.Errorf("an opener's error is not shown:\n%s", s)
	}
	// Narrow terminals drop PORTS first.
	m = newModel(t, f, 60, 20)
	if s := plain(m); strings.Contains(s, "PORTS") || !strings.Contains(s, "STATE") {
		t.Errorf("at 60 columns:\n%s", s)
	}
}

func TestHelpIsGeneratedFromKeymap(t *testing.T) {
	m := newModel(t, fake(t), 120, 40)
	press(t, m, "?")
	s := plain(m)
	for _, want := range []string{"Machine actions", "delete the machine (asks y/N)", "sort by uptime", "quit (machines keep running)"} {
		if !strings.Contains(s, want) {
			t.Errorf("help lacks %q", want)
		}
	}
	press(t, m, "x") // closes help, does not stop
	if strings.Contains(plain(m), "Machine actions") {
		t.Error("help still open")
	}
}

func TestNoColorKeepsSelectionVisible(t *testing.T) {
	m := New(Options{Src: fake(t), Theme: theme.New(theme.Dark, true), ThemeFixed: true, Now: func() time.Time { return now }})
	m.Update(tea.WindowSizeMsg{Width: 100, Height: 24})
	run(t, m, m.Init())
	s := m.Render()
	if strings.Contains(s, "\x1b[") {
		t.Errorf("NO_COLOR output has escapes: %q", s)
	}
	if !strings.Contains(s, "▸ bb") {
		t.Errorf("no gutter glyph on the selected row:\n%s", s)
	}
}

func BenchmarkView100Machines(b *testing.B) {
	f := fake(b)
	f.Rows = nil
	for i := range 100 {
		st := vm.StateRunning
		if i%3 == 0 {
			st = vm.StateStopped
		}
		f.Rows = append(f.Rows, row(fmt.Sprintf("machine-%03d", i), st, 1+i%4, uint64(1+i%8)*vm.GiB, i == 0))
	}
	m := newModel(b, f, 200, 60)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		_ = m.View()
	}
}

// BenchmarkViewUncached100Machines moves the cursor before every View, so
// the machines table is rendered each time.
func BenchmarkViewUncached100Machines(b *testing.B) {
	f := fake(b)
	f.Rows = nil
	for i := range 100 {
		f.Rows = append(f.Rows, row(fmt.Sprintf("machine-%03d", i), vm.StateRunning, 1+i%4, uint64(1+i%8)*vm.GiB, i == 0))
	}
	m := newModel(b, f, 200, 60)
	down, up := tea.KeyPressMsg{Code: 'j', Text: "j"}, tea.KeyPressMsg{Code: 'k', Text: "k"}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if i++; i%2 == 0 {
			m.Update(down)
		} else {
			m.Update(up)
		}
		_ = m.View()
	}
}

func BenchmarkSnapshotUpdate100Machines(b *testing.B) {
	f := fake(b)
	f.Rows = nil
	for i := range 100 {
		f.Rows = append(f.Rows, row(fmt.Sprintf("machine-%03d", i), vm.StateRunning, 2, vm.GiB, false))
	}
	m := newModel(b, f, 200, 60)
	snap := f.Snapshot(b.Context())
	b.ResetTimer()
	for b.Loop() {
		m.machines.SetSnapshot(snap)
	}
}

func TestDetailActionsRunInTheMachinesView(t *testing.T) {
	f := fake(t)
	m := newModel(t, f, 100, 24)
	press(t, m, "enter", "x")
	if got := f.Calls; len(got) != 1 || got[0] != "stop bb" {
		t.Fatalf("calls = %v", got)
	}
	if m.ActiveView() != keys.Detail {
		t.Errorf("active view %s after x in the detail view", m.ActiveView())
	}
	if s := plain(m); !strings.Contains(s, "stop bb: done") {
		t.Errorf("no status after stop from the detail view:\n%s", s)
	}
}

func TestImageDeleteAsksAndNamesTheImage(t *testing.T) {
	f := fake(t)
	for i := range f.Rows {
		f.Rows[i].Image, f.Rows[i].ImageDigest = "other:1", "sha256:"+strings.Repeat("ef", 32)
	}
	m := newModel(t, f, 100, 24)
	press(t, m, "2", "d")
	if s := plain(m); !strings.Contains(s, "Delete image busybox:test? [y/N]") {
		t.Fatalf("no confirmation:\n%s", s)
	}
	press(t, m, "n")
	if s := plain(m); !strings.Contains(s, "delete image busybox:test: cancelled") || len(f.Calls) != 0 {
		t.Fatalf("after n: calls %v\n%s", f.Calls, s)
	}
	press(t, m, "d", "y")
	if len(f.Calls) != 1 || f.Calls[0] != "rmi busybox:test" {
		t.Fatalf("calls = %v", f.Calls)
	}
	if s := plain(m); !strings.Contains(s, "deleted image busybox:test") || !strings.Contains(s, "no images") {
		t.Errorf("after y:\n%s", s)
	}
}

func TestBuildFormStartsABuild(t *testing.T) {
	f := fake(t)
	m := newModel(t, f, 100, 30)
	press(t, m, "3")
	if s := plain(m); !strings.Contains(s, "b build") {
		t.Errorf("builds footer lacks the build key:\n%s", s)
	}
	press(t, m, "b", "tab", "tab")
	for _, k := range "app:dev" {
		press(t, m, string(k))
	}
	press(t, m, "enter")
	wd, _ := os.Getwd()
	if len(f.Calls) != 1 || f.Calls[0] != "build -t app:dev "+wd {
		t.Fatalf("calls = %v", f.Calls)
	}
	if s := plain(m); !strings.Contains(s, "build app:dev finished") {
		t.Errorf("no status after the build:\n%s", s)
	}
}

func TestReclaimKey(t *testing.T) {
	f := fake(t)
	m := newModel(t, f, 120, 24)
	s := plain(m)
	for _, want := range []string{"CACHE", "HELD", "93M/512M", "60M", "180M"} {
		if !strings.Contains(s, want) {
			t.Errorf("machines view lacks %q:\n%s", want, s)
		}
	}
	if !strings.Contains(s, "R reclaim") {
		t.Errorf("footer lacks the reclaim key:\n%s", s)
	}
	press(t, m, "R")
	if got := f.Calls; len(got) != 1 || got[0] != "reclaim bb" {
		t.Fatalf("calls = %v", got)
	}
	if s := plain(m); !strings.Contains(s, "bb: host-held 180M → 120M (guest used 93M, cache 60M → 0B)") {
		t.Errorf("no reclaim result in the status line:\n%s", s)
	}
	run(t, m, m.Fetch())
	if r, _ := m.Machines().Row("bb"); r.HostRSS != 120*vm.MiB || r.Metrics.MemCache != 0 {
		t.Errorf("after reclaim: held %d, cache %d", r.HostRSS, r.Metrics.MemCache)
	}

	// The detail view shows the three side by side and has the key too.
	press(t, m, "j", "enter")
	s = plain(m)
	for _, want := range []string{"guest used 93M", "cache (reclaimable) 60M", "host held 180M", "reclaim gradual"} {
		if !strings.Contains(s, want) {
			t.Errorf("detail view lacks %q:\n%s", want, s)
		}
	}
	press(t, m, "R")
	if got := f.Calls; len(got) != 2 || got[1] != "reclaim deb" {
		t.Fatalf("calls = %v", got)
	}
	if m.ActiveView() != keys.Detail {
		t.Errorf("active view %s after R in the detail view", m.ActiveView())
	}
	if s := plain(m); !strings.Contains(s, "deb: host-held 180M → 120M") {
		t.Errorf("no reclaim result from the detail view:\n%s", s)
	}
	press(t, m, "?")
	if s := plain(m); !strings.Contains(s, "return idle page cache to the host now") {
		t.Errorf("help lacks reclaim:\n%s", s)
	}
}
