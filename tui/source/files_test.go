package source

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/machinetop/machinetop/app"
	"github.com/machinetop/machinetop/images/progress"
	"github.com/machinetop/machinetop/vm/layout"
)

func TestReadLogFromFollowsTailsAndRestarts(t *testing.T) {
	p := filepath.Join(t.TempDir(), "console.log")
	if _, _, err := ReadLogFrom(p, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing log: %v", err)
	}
	os.WriteFile(p, []byte("one\ntwo\n"), 0o644)
	data, off, err := ReadLogFrom(p, 0)
	if err != nil || string(data) != "one\ntwo\n" || off != 8 {
		t.Fatalf("first read: %q %d %v", data, off, err)
	}
	if data, next, err := ReadLogFrom(p, off); len(data) != 0 || next != off || err != nil {
		t.Fatalf("nothing new: %q %d %v", data, next, err)
	}
	f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("three\n")
	f.Close()
	if data, next, _ := ReadLogFrom(p, off); string(data) != "three\n" || next != 14 {
		t.Fatalf("appended: %q %d", data, next)
	}
	// A new boot truncates the log: read from its start again.
	os.WriteFile(p, []byte("boot\n"), 0o644)
	if data, next, _ := ReadLogFrom(p, 14); string(data) != "boot\n" || next != 5 {
		t.Fatalf("truncated: %q %d", data, next)
	}
	// A long log: the first read is its tail, later reads come in chunks.
	big := bytes.Repeat([]byte("x"), LogTail+10)
	os.WriteFile(p, big, 0o644)
	if data, next, _ := ReadLogFrom(p, 0); len(data) != LogTail || next != int64(len(big)) {
		t.Fatalf("tail: %d bytes, next %d", len(data), next)
	}
	os.WriteFile(p, bytes.Repeat([]byte("y"), 2*LogChunk), 0o644)
	if data, next, _ := ReadLogFrom(p, 1); len(data) != LogChunk || next != LogChunk+1 {
		t.Fatalf("chunk: %d bytes, next %d", len(data), next)
	}
}

func TestBuildRequestArgs(t *testing.T) {
	for _, tc := range []struct {
		b    BuildRequest
		want string
	}{
		{BuildRequest{Dir: "."}, "build ."},
		{BuildRequest{Dir: "ctx", Tag: "app:dev"}, "build -t app:dev ctx"},
		{BuildRequest{Dir: "ctx", Dockerfile: "ctx/Other", Tag: "a:b"}, "build -t a:b -f ctx/Other ctx"},
	} {
		if got := strings.Join(tc.b.Args(), " "); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.b, got, tc.want)
		}
	}
}

// TestLiveBuildRunsTheExecutable runs Build with a script standing in for
// the machinetop binary: its arguments arrive, and a failure carries the
// last line it wrote to stderr.
func TestLiveBuildRunsTheExecutable(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "machinetop")
	script := "#!/bin/sh\necho \"$@\" > \"$0.args\"\nif [ \"$3\" = bad:tag ]; then echo step 1 >&2; echo 'error: no Dockerfile' >&2; exit 3; fi\n"
	if err := os.WriteFile(exe, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	l := &Live{App: testApp(t, dir), Exe: exe}
	if err := l.Build(context.Background(), BuildRequest{Dir: "ctx", Tag: "app:dev"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(exe + ".args"); string(b) != "build -t app:dev ctx\n" {
		t.Errorf("args = %q", b)
	}
	err := l.Build(context.Background(), BuildRequest{Dir: "ctx", Tag: "bad:tag"})
	if err == nil || err.Error() != "exit status 3: error: no Dockerfile" {
		t.Errorf("failed build: %v", err)
	}
}

func TestLiveReadsJournalsAndConsoleLog(t *testing.T) {
	dir := t.TempDir()
	l := &Live{App: testApp(t, dir)}
	if jobs, err := l.Jobs(); err != nil || len(jobs) != 0 {
		t.Fatalf("no journals yet: %v %v", jobs, err)
	}
	j, err := progress.Create(l.JournalDir(), "build -t app:dev .")
	if err != nil {
		t.Fatal(err)
	}
	j.Emit(progress.Event{Kind: progress.KindLog, Line: "hello"})
	jobs, err := l.Jobs()
	if err != nil || len(jobs) != 1 || jobs[0].Job != j.Job() {
		t.Fatalf("jobs = %+v %v", jobs, err)
	}
	evs, off, err := l.JobEvents(j.Job(), 0)
	if err != nil || len(evs) != 2 || evs[1].Line != "hello" {
		t.Fatalf("events = %+v %v", evs, err)
	}
	j.Emit(progress.Event{Kind: progress.KindDone})
	j.Close()
	if evs, _, _ := l.JobEvents(j.Job(), off); len(evs) != 1 || evs[0].Kind != progress.KindDone {
		t.Errorf("new events = %+v", evs)
	}
	// The console log of a machine that does not exist yet: not found.
	if _, _, err := l.ConsoleLog("nosuch", 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("console log of a missing machine: %v", err)
	}
	if used, err := l.ImageUsers("sha256:00", "none:1"); err != nil || len(used) != 0 {
		t.Errorf("ImageUsers with no machines = %v %v", used, err)
	}
}

// testApp opens a data directory in dir with no backend (nothing boots).
func testApp(t *testing.T, dir string) *app.App {
	t.Helper()
	a, err := app.OpenAt(layout.Data{Root: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
