//go:build unix

package layout

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestOpenBeneath(t *testing.T) {
	root := t.TempDir()
	outside := filepath.Join(t.TempDir(), "host-file")
	write(t, outside, "host\n")
	write(t, filepath.Join(root, "machines", "m", "console.log"), "log\n")

	f, err := OpenBeneath(root, "machines/m/console.log", os.O_RDONLY, 0)
	if err != nil {
		t.Fatalf("plain file: %v", err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != "log\n" {
		t.Fatalf("read %q", b)
	}

	// A link at the file, at a directory on the way, a dangling link with
	// O_CREATE, and O_TRUNC through a link: all refused, the host file
	// untouched.
	os.Symlink(outside, filepath.Join(root, "machines", "m", "disk.img"))
	os.Symlink(filepath.Dir(outside), filepath.Join(root, "machines", "linked"))
	os.Symlink(filepath.Join(filepath.Dir(outside), "new-host-file"), filepath.Join(root, "machines", "m", "dangling"))
	refused := []struct {
		rel  string
		flag int
	}{
		{"machines/m/disk.img", os.O_RDWR},
		{"machines/m/disk.img", os.O_WRONLY | os.O_APPEND | os.O_CREATE},
		{"machines/m/disk.img", os.O_WRONLY | os.O_TRUNC},
		{"machines/linked/host-file", os.O_RDONLY},
		{"machines/m/dangling", os.O_WRONLY | os.O_CREATE},
		{"machines/m/../m/console.log", os.O_RDONLY},
		{"../" + filepath.Base(root) + "/machines/m/console.log", os.O_RDONLY},
		{"/etc/passwd", os.O_RDONLY},
		{"", os.O_RDONLY},
	}
	for _, c := range refused {
		f, err := OpenBeneath(root, c.rel, c.flag, 0o600)
		if err == nil {
			f.Close()
			t.Errorf("OpenBeneath(%q, %#x) succeeded", c.rel, c.flag)
			continue
		}
		if !errors.Is(err, ErrUnsafe) {
			t.Errorf("OpenBeneath(%q): %v, want ErrUnsafe", c.rel, err)
		}
	}
	if b, _ := os.ReadFile(outside); string(b) != "host\n" {
		t.Fatalf("the host file changed: %q", b)
	}
	if _, err := os.Lstat(filepath.Join(filepath.Dir(outside), "new-host-file")); err == nil {
		t.Fatal("a file was created through a dangling link")
	}

	// A FIFO is refused at once instead of blocking the open.
	fifo := filepath.Join(root, "machines", "m", "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		f, err := OpenBeneath(root, "machines/m/fifo", os.O_RDONLY, 0)
		if err == nil {
			f.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrUnsafe) {
			t.Fatalf("FIFO: %v, want ErrUnsafe", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("opening a FIFO blocked")
	}

	// O_CREATE makes a missing file with perm; O_TRUNC truncates a real one.
	f, err = OpenBeneath(root, "machines/m/new.log", os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if fi, err := os.Stat(filepath.Join(root, "machines", "m", "new.log")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("created file: %v %v", fi, err)
	}
	f, err = OpenBeneath(root, "machines/m/console.log", os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if b, _ := os.ReadFile(filepath.Join(root, "machines", "m", "console.log")); len(b) != 0 {
		t.Fatalf("O_TRUNC left %q", b)
	}
	// A missing file without O_CREATE is fs.ErrNotExist, not a refusal.
	if _, err := OpenBeneath(root, "machines/m/missing", os.O_RDONLY, 0); !errors.Is(err, os.ErrNotExist) || errors.Is(err, ErrUnsafe) {
		t.Fatalf("missing file: %v", err)
	}
	// root itself may be a link: it is the user's choice.
	link := filepath.Join(t.TempDir(), "data")
	os.Symlink(root, link)
	if f, err := OpenBeneath(link, "machines/m/new.log", os.O_RDONLY, 0); err != nil {
		t.Fatalf("root behind a link: %v", err)
	} else {
		f.Close()
	}
}

// TestOpenBeneathOwner: a file or directory of another user is refused
// (needs root to make one).
func TestOpenBeneathOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("making a file of another user needs root")
	}
	root := t.TempDir()
	write(t, filepath.Join(root, "m", "config.json"), "{}")
	write(t, filepath.Join(root, "other", "config.json"), "{}")
	os.Chown(filepath.Join(root, "m", "config.json"), 4242, 4242)
	os.Chown(filepath.Join(root, "other"), 4242, 4242)
	for _, rel := range []string{"m/config.json", "other/config.json"} {
		if f, err := OpenBeneath(root, rel, os.O_RDONLY, 0); !errors.Is(err, ErrUnsafe) {
			if f != nil {
				f.Close()
			}
			t.Errorf("%s of uid 4242: %v, want ErrUnsafe", rel, err)
		}
	}
}

func TestMachineOpen(t *testing.T) {
	d := Data{Root: t.TempDir()}
	m := d.Machine("bb")
	write(t, m.Disk(), "disk")
	f, err := m.Open(m.Disk(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	// The machine directory itself replaced by a link to another one.
	other := d.Machine("other")
	write(t, other.Disk(), "other disk")
	os.RemoveAll(m.Dir)
	os.Symlink(other.Dir, m.Dir)
	if f, err := m.Open(m.Disk(), os.O_RDWR, 0); !errors.Is(err, ErrUnsafe) {
		if f != nil {
			f.Close()
		}
		t.Fatalf("machine dir as a link: %v, want ErrUnsafe", err)
	}
	if _, err := m.Open("/etc/passwd", os.O_RDONLY, 0); !errors.Is(err, ErrUnsafe) {
		t.Fatalf("a path outside the data directory: %v", err)
	}
}

func TestSameFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	write(t, p, "x")
	f, _ := os.Open(p)
	defer f.Close()
	if !SameFile(f, p) {
		t.Fatal("SameFile of the file itself is false")
	}
	os.Rename(p, p+".old")
	os.Symlink(p+".old", p)
	if SameFile(f, p) {
		t.Fatal("SameFile through a link is true")
	}
}

func TestListenUnix(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.sock")
	for range 2 { // the second replaces the first's stale socket
		ln, err := ListenUnix(p)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("socket mode: %v %v, want 0600", fi.Mode(), err)
		}
		c, err := net.Dial("unix", p)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		ln.SetUnlinkOnClose(false)
		ln.Close()
	}
}

func TestContains(t *testing.T) {
	for _, c := range []struct {
		dir, path string
		want      bool
	}{
		{"/home/u", "/home/u", true},
		{"/home/u", "/home/u/.local/share/machinetop", true},
		{"/home/u", "/home/user", false},
		{"/home/u/x", "/home/u", false},
		{"/", "/tmp", true},
	} {
		if got := Contains(c.dir, c.path); got != c.want {
			t.Errorf("Contains(%q, %q) = %v", c.dir, c.path, got)
		}
	}
}
