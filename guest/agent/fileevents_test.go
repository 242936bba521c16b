//go:build linux

package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/machinetop/machinetop/guest/proto"
)

// A change sent on the file-event stream fires inotify in the guest.
func TestFileEventsReplay(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "app.js"), []byte("x"), 0o644)
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_ATTRIB|unix.IN_CREATE|unix.IN_DELETE); err != nil {
		t.Fatal(err)
	}
	c := connectNew(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.FileEvents(ctx, []string{"relative/dir"}); err == nil || !strings.Contains(err.Error(), "bad mount point") {
		t.Fatalf("a relative mount point: %v", err)
	}
	st, err := c.FileEvents(ctx, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Send([]proto.FileEvent{{Path: "app.js", Kind: proto.FileChanged}, {Path: "old.js", Kind: proto.FileRemoved}}); err != nil {
		t.Fatal(err)
	}
	want := []string{"app.js ATTRIB", "old.js CREATE", "old.js DELETE"}
	var got []string
	buf := make([]byte, 4096)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for len(got) < len(want) {
			n, err := unix.Read(fd, buf)
			if err != nil {
				return
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
				kind := map[uint32]string{unix.IN_ATTRIB: "ATTRIB", unix.IN_CREATE: "CREATE", unix.IN_DELETE: "DELETE"}[ev.Mask]
				got = append(got, name+" "+kind)
				off += unix.SizeofInotifyEvent + int(ev.Len)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the events %q did not all come within 10 s", want)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("events %q, want %q", got, want)
	}
}
