//go:build linux

package fsreplay

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/machinetop/machinetop/guest/proto"
)

// watch starts an inotify watch on dir; events returns what fired since,
// as "NAME:MASK" strings with the masks inotifywait prints.
func watch(t *testing.T, dir string) (events func() []string) {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_ALL_EVENTS); err != nil {
		t.Fatal(err)
	}
	names := []struct {
		m uint32
		s string
	}{{unix.IN_CREATE, "CREATE"}, {unix.IN_OPEN, "OPEN"}, {unix.IN_ATTRIB, "ATTRIB"}, {unix.IN_MODIFY, "MODIFY"},
		{unix.IN_CLOSE_WRITE, "CLOSE_WRITE"}, {unix.IN_CLOSE_NOWRITE, "CLOSE_NOWRITE"}, {unix.IN_DELETE, "DELETE"},
		{unix.IN_MOVED_FROM, "MOVED_FROM"}, {unix.IN_MOVED_TO, "MOVED_TO"}, {unix.IN_ISDIR, "ISDIR"}}
	return func() []string {
		var out []string
		buf := make([]byte, 64<<10)
		for {
			n, err := unix.Read(fd, buf)
			if n <= 0 || err != nil {
				return out
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
				var ms []string
				for _, x := range names {
					if ev.Mask&x.m != 0 {
						ms = append(ms, x.s)
					}
				}
				if name != "" { // events on the watched directory itself are left out
					out = append(out, name+":"+strings.Join(ms, ","))
				}
				off += unix.SizeofInotifyEvent + int(ev.Len)
			}
		}
	}
}

func replay(t *testing.T, r *Replayer, ev proto.FileEvent) {
	t.Helper()
	if err := r.Replay(ev); err != nil {
		t.Fatal(err)
	}
}

func TestChangedFileFiresAttribAndCloseWrite(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "a.txt")
	os.WriteFile(f, []byte("hello"), 0o640)
	before, _ := os.Stat(f)
	events := watch(t, dir)
	r := New([]string{dir})
	defer r.Close()
	replay(t, r, proto.FileEvent{Path: "a.txt", Kind: proto.FileChanged})
	got := strings.Join(events(), " ")
	for _, want := range []string{"a.txt:OPEN", "a.txt:ATTRIB", "a.txt:CLOSE_WRITE"} {
		if !strings.Contains(got, want) {
			t.Errorf("events %q lack %s", got, want)
		}
	}
	after, _ := os.Stat(f)
	b, _ := os.ReadFile(f)
	if string(b) != "hello" || after.Mode() != before.Mode() || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("replay changed the file: %q %v %v (was %v %v)", b, after.Mode(), after.ModTime(), before.Mode(), before.ModTime())
	}
}

func TestChangedDirFiresAttribIsDir(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "d"), 0o751)
	events := watch(t, dir)
	r := New([]string{dir})
	defer r.Close()
	replay(t, r, proto.FileEvent{Path: "d", Kind: proto.FileChanged, Dir: true})
	if got := strings.Join(events(), " "); !strings.Contains(got, "d:ATTRIB,ISDIR") {
		t.Errorf("events %q lack d:ATTRIB,ISDIR", got)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "d")); fi.Mode().Perm() != 0o751 {
		t.Errorf("mode now %v", fi.Mode())
	}
}

func TestRemovedFileFiresCreateAndDelete(t *testing.T) {
	dir := t.TempDir()
	events := watch(t, dir)
	r := New([]string{dir})
	defer r.Close()
	replay(t, r, proto.FileEvent{Path: "gone.txt", Kind: proto.FileRemoved})
	got := events()
	if len(got) == 0 || got[0] != "gone.txt:CREATE" || got[len(got)-1] != "gone.txt:DELETE" {
		t.Errorf("events %q: want CREATE first and DELETE last", got)
	}
	if _, err := os.Lstat(filepath.Join(dir, "gone.txt")); !os.IsNotExist(err) {
		t.Errorf("replay left the file: %v", err)
	}
}

func TestRemovedDirFiresCreateAndDeleteIsDir(t *testing.T) {
	dir := t.TempDir()
	events := watch(t, dir)
	r := New([]string{dir})
	defer r.Close()
	replay(t, r, proto.FileEvent{Path: "gone", Kind: proto.FileRemoved, Dir: true})
	got := strings.Join(events(), " ")
	if got != "gone:CREATE,ISDIR gone:DELETE,ISDIR" {
		t.Errorf("events %q", got)
	}
}

// A removal whose path the host made again before the replay leaves the
// host's file alone.
func TestRemovedKeepsAFileThatIsBack(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "back.txt")
	os.WriteFile(f, []byte("new content"), 0o644)
	r := New([]string{dir})
	defer r.Close()
	replay(t, r, proto.FileEvent{Path: "back.txt", Kind: proto.FileRemoved})
	if b, err := os.ReadFile(f); err != nil || string(b) != "new content" {
		t.Errorf("file now %q, %v", b, err)
	}
	os.Mkdir(filepath.Join(dir, "backdir"), 0o755)
	replay(t, r, proto.FileEvent{Path: "backdir", Kind: proto.FileRemoved, Dir: true})
	if fi, err := os.Stat(filepath.Join(dir, "backdir")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("directory now %v, %v", fi, err)
	}
}

// removeIfMine leaves a file that replaced the one created.
func TestRemoveIfMineLeavesAReplacement(t *testing.T) {
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	f := filepath.Join(dir, "x")
	os.WriteFile(f, nil, 0)
	mine, _ := os.Lstat(f)
	// An editor's atomic save replaces it.
	os.WriteFile(f+".tmp", []byte("saved"), 0o644)
	os.Rename(f+".tmp", f)
	if err := removeIfMine(root, "x", mine); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(f); string(b) != "saved" {
		t.Errorf("file now %q", b)
	}
}

func TestReplayIgnoresWhatIsGoneAndRefusesBadPaths(t *testing.T) {
	dir := t.TempDir()
	r := New([]string{dir})
	defer r.Close()
	for _, ev := range []proto.FileEvent{
		{Path: "missing.txt", Kind: proto.FileChanged},
		{Path: "nodir/gone.txt", Kind: proto.FileRemoved},
	} {
		if err := r.Replay(ev); err != nil {
			t.Errorf("%+v: %v", ev, err)
		}
	}
	for _, ev := range []proto.FileEvent{
		{Path: "../etc/passwd", Kind: proto.FileChanged},
		{Path: "/etc/passwd", Kind: proto.FileChanged},
		{Path: "a/../b", Kind: proto.FileChanged},
		{Path: "a", Kind: "bogus"},
		{Mount: 3, Path: "a", Kind: proto.FileChanged},
	} {
		if err := r.Replay(ev); err == nil {
			t.Errorf("%+v: no error", ev)
		}
	}
	// A symbolic link out of the share is not followed.
	os.Symlink("/etc", filepath.Join(dir, "out"))
	if err := r.Replay(proto.FileEvent{Path: "out/passwd", Kind: proto.FileChanged}); err == nil {
		t.Errorf("replay through a link out of the share: no error")
	}
}

// A change of a file a guest process wrote just before is the echo of
// that write: not replayed. Past GuestWriteWindow it is replayed again.
func TestChangeAfterAGuestWriteIsNotReplayed(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "log.txt")
	os.WriteFile(f, []byte("x"), 0o644)
	events := watch(t, dir)
	r := New([]string{dir})
	defer r.Close()
	r.Writes = &Writes{}
	r.Writes.note(f, time.Now())
	replay(t, r, proto.FileEvent{Path: "log.txt", Kind: proto.FileChanged})
	if got := events(); len(got) != 0 {
		t.Errorf("a guest-written file was replayed: %q", got)
	}
	r.Writes.note(f, time.Now().Add(-GuestWriteWindow-time.Second))
	replay(t, r, proto.FileEvent{Path: "log.txt", Kind: proto.FileChanged})
	if got := strings.Join(events(), " "); !strings.Contains(got, "log.txt:ATTRIB") {
		t.Errorf("after the window: %q", got)
	}
	var none *Writes
	if none.Recent(f, time.Now()) {
		t.Error("a nil Writes knows of a write")
	}
}
