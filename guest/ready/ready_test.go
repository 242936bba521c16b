//go:build linux

package ready

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mkfile creates root/p (and its directories); a target makes it a
// symlink to target.
func mkfile(t *testing.T, root, p, target string) {
	t.Helper()
	full := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	var err error
	if target != "" {
		err = os.Symlink(target, full)
	} else {
		err = os.WriteFile(full, []byte("x\n"), 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string // path -> symlink target ("" for a file)
		want  Init
	}{
		{"no init", map[string]string{"/bin/sh": ""}, None},
		{"systemd, relative link", map[string]string{"/lib/systemd/systemd": "", "/sbin/init": "../lib/systemd/systemd"}, Systemd},
		{"systemd via /sbin -> usr/sbin", map[string]string{"/usr/lib/systemd/systemd": "", "/sbin": "usr/sbin", "/usr/sbin/init": "/usr/lib/systemd/systemd"}, Systemd},
		{"dangling link", map[string]string{"/sbin/init": "/lib/systemd/systemd"}, None},
		{"openrc-init", map[string]string{"/sbin/openrc-init": "", "/sbin/init": "openrc-init"}, OpenRC},
		{"busybox init with openrc (Alpine)", map[string]string{"/bin/busybox": "", "/sbin/init": "/bin/busybox", "/sbin/openrc": ""}, OpenRC},
		{"sysvinit with openrc (Debian)", map[string]string{"/sbin/init": "", "/sbin/openrc": ""}, OpenRC},
		{"busybox init alone", map[string]string{"/bin/busybox": "", "/sbin/init": "/bin/busybox"}, None},
		{"runit-init (Debian)", map[string]string{"/lib/runit/runit-init": "", "/sbin/init": "/lib/runit/runit-init"}, Runit},
		{"runit (Void)", map[string]string{"/usr/bin/runit": "", "/sbin/init": "/usr/bin/runit"}, Runit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			// Directories and links to directories first.
			for p, target := range tc.files {
				if p == "/sbin" {
					mkfile(t, root, p, target)
				}
			}
			for p, target := range tc.files {
				if p != "/sbin" {
					mkfile(t, root, p, target)
				}
			}
			if got := Detect(root); got != tc.want {
				t.Fatalf("Detect = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDbusSocketEnabled(t *testing.T) {
	debian := func(t *testing.T) string {
		root := t.TempDir()
		mkfile(t, root, "/lib/systemd/system/dbus.socket", "")
		mkfile(t, root, "/lib/systemd/system/sockets.target.wants/dbus.socket", "../dbus.socket")
		return root
	}
	if root := debian(t); !dbusSocketEnabled(root) {
		t.Errorf("Debian's dbus-system-bus-common layout: not enabled")
	}
	root := debian(t)
	mkfile(t, root, "/etc/systemd/system/dbus.socket", "/dev/null")
	if dbusSocketEnabled(root) {
		t.Errorf("masked dbus.socket: enabled")
	}
	root = t.TempDir()
	mkfile(t, root, "/usr/lib/systemd/system/dbus.socket", "")
	if dbusSocketEnabled(root) {
		t.Errorf("dbus.socket that nothing wants: enabled")
	}
	if dbusSocketEnabled(t.TempDir()) {
		t.Errorf("no dbus.socket: enabled")
	}
}

// listen makes a listening unix socket at root/p, closed at the end of
// the test.
func listen(t *testing.T, root, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(root, p))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
}

// systemdRoot is a root filesystem with systemd as init and an empty /run.
func systemdRoot(t *testing.T, dbus bool) string {
	root := t.TempDir()
	mkfile(t, root, "/lib/systemd/systemd", "")
	mkfile(t, root, "/sbin/init", "/lib/systemd/systemd")
	if dbus {
		mkfile(t, root, "/lib/systemd/system/dbus.socket", "")
		mkfile(t, root, "/lib/systemd/system/sockets.target.wants/dbus.socket", "../dbus.socket")
	}
	os.Mkdir(filepath.Join(root, "run"), 0o755)
	return root
}

// waitCtx waits on g for at most d.
func waitCtx(g *Gate, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return g.Wait(ctx)
}

func TestSystemdBusAppears(t *testing.T) {
	root := systemdRoot(t, false)
	g := Watch(t.Context(), root, Detect(root), time.Minute)
	if g.Init() != Systemd {
		t.Fatalf("init %q", g.Init())
	}
	if err := waitCtx(g, 100*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) || g.Ready() {
		t.Fatalf("ready before systemd made its bus: %v", err)
	}
	// systemd makes /run/systemd, then binds its socket there.
	if err := os.Mkdir(filepath.Join(root, "run/systemd"), 0o755); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if g.Ready() {
		t.Fatal("ready with /run/systemd but no socket")
	}
	start := time.Now()
	listen(t, root, "/run/systemd/private")
	if err := waitCtx(g, 5*time.Second); err != nil {
		t.Fatalf("socket listening, gate: %v", err)
	}
	t.Logf("gate opened %v after the socket", time.Since(start))
	if !g.Ready() {
		t.Fatal("Wait returned nil but Ready is false")
	}
}

func TestSocketBoundBeforeListen(t *testing.T) {
	root := systemdRoot(t, false)
	os.Mkdir(filepath.Join(root, "run/systemd"), 0o755)
	// bind(2) makes the file; connections are refused until listen(2).
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: filepath.Join(root, "run/systemd/private")}); err != nil {
		t.Fatal(err)
	}
	g := Watch(t.Context(), root, Systemd, time.Minute)
	if err := waitCtx(g, 100*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ready with a socket that refuses connections: %v", err)
	}
	if err := syscall.Listen(fd, 8); err != nil {
		t.Fatal(err)
	}
	if err := waitCtx(g, 5*time.Second); err != nil {
		t.Fatalf("after listen(2): %v", err)
	}
}

func TestSystemdWithDbus(t *testing.T) {
	root := systemdRoot(t, true)
	g := Watch(t.Context(), root, Detect(root), time.Minute)
	listen(t, root, "/run/systemd/private")
	if err := waitCtx(g, 200*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ready without the D-Bus system bus: %v", err)
	}
	listen(t, root, "/run/dbus/system_bus_socket")
	if err := waitCtx(g, 5*time.Second); err != nil {
		t.Fatalf("both sockets listening: %v", err)
	}
}

func TestBoundPassesThenLateInit(t *testing.T) {
	root := systemdRoot(t, false)
	g := Watch(t.Context(), root, Systemd, 150*time.Millisecond)
	err := waitCtx(g, 5*time.Second)
	var nr *NotReadyError
	if !errors.As(err, &nr) || nr.Init != Systemd || !strings.Contains(nr.Error(), "/run/systemd/private") {
		t.Fatalf("after the bound: %v, want a NotReadyError naming /run/systemd/private", err)
	}
	t.Logf("message: %v", nr)
	// Once past the bound, Wait does not wait again.
	start := time.Now()
	if err := waitCtx(g, 5*time.Second); !errors.As(err, &nr) || time.Since(start) > time.Second {
		t.Fatalf("second Wait after the bound: %v after %v", err, time.Since(start))
	}
	// An init that comes up late still opens the gate.
	listen(t, root, "/run/systemd/private")
	deadline := time.Now().Add(5 * time.Second)
	for !g.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("late socket did not open the gate")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := waitCtx(g, time.Second); err != nil {
		t.Fatalf("after the late socket: %v", err)
	}
}

func TestOpenRCAndRunit(t *testing.T) {
	root := t.TempDir()
	os.Mkdir(filepath.Join(root, "run"), 0o755)
	g := Watch(t.Context(), root, OpenRC, time.Minute)
	if g.Ready() {
		t.Fatal("OpenRC ready before softlevel")
	}
	mkfile(t, root, "/run/openrc/softlevel", "")
	if err := waitCtx(g, 5*time.Second); err != nil {
		t.Fatalf("OpenRC with softlevel: %v", err)
	}

	// runit as Debian lays it out: services link to /etc/sv, whose
	// supervise directories link into /run, empty at boot.
	root = t.TempDir()
	os.Mkdir(filepath.Join(root, "run"), 0o755)
	mkfile(t, root, "/lib/runit/runit-init", "")
	mkfile(t, root, "/sbin/init", "/lib/runit/runit-init")
	for _, svc := range []string{"getty-tty1", "ssh"} {
		mkfile(t, root, "/etc/sv/"+svc+"/run", "")
		mkfile(t, root, "/etc/sv/"+svc+"/supervise", "/run/runit/supervise/"+svc)
		mkfile(t, root, "/etc/service/"+svc, "/etc/sv/"+svc)
	}
	mkfile(t, root, "/etc/service/.hidden/run", "")
	g = Watch(t.Context(), root, Detect(root), time.Minute)
	if g.Init() != Runit {
		t.Fatalf("init %q", g.Init())
	}
	// Stage 1 ends, stage 2 makes the supervise directory, runsvdir
	// starts the first runsv.
	mkfile(t, root, "/run/runit.stopit", "")
	os.MkdirAll(filepath.Join(root, "run/runit/supervise/getty-tty1"), 0o700)
	if err := syscall.Mkfifo(filepath.Join(root, "run/runit/supervise/getty-tty1/ok"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := waitCtx(g, 100*time.Millisecond); err == nil {
		t.Fatal("runit ready with one service's runsv missing")
	}
	if m := g.Missing(); !strings.Contains(m, "ssh") {
		t.Fatalf("missing %q, want the ssh service", m)
	}
	os.MkdirAll(filepath.Join(root, "run/runit/supervise/ssh"), 0o700)
	if err := syscall.Mkfifo(filepath.Join(root, "run/runit/supervise/ssh/ok"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := waitCtx(g, 5*time.Second); err != nil {
		t.Fatalf("runit with every runsv up: %v", err)
	}

	// Void's stage 1 marks its end with /run/runit/stopit; no services.
	root = t.TempDir()
	os.Mkdir(filepath.Join(root, "run"), 0o755)
	g = Watch(t.Context(), root, Runit, time.Minute)
	if err := waitCtx(g, 50*time.Millisecond); err == nil {
		t.Fatal("runit ready before stage 1 ended")
	}
	mkfile(t, root, "/run/runit/stopit", "")
	if err := waitCtx(g, 5*time.Second); err != nil {
		t.Fatalf("runit after /run/runit/stopit: %v", err)
	}
}

func TestNoInitIsReady(t *testing.T) {
	g := Watch(t.Context(), t.TempDir(), None, time.Minute)
	if !g.Ready() {
		t.Fatal("no init: not ready")
	}
	if err := g.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
}
