//go:build linux

// Package ready tells when the image's init system accepts the requests
// that commands make of it, so that the agent can hold a command until
// then: `systemctl` fails with "Failed to connect to bus" until systemd has
// opened its bus, and OpenRC's rc-service refuses to run until OpenRC has
// booted.
//
// What is waited for, per init (Detect tells them apart):
//
//   - systemd: the manager's private socket /run/systemd/private accepts a
//     connection (what systemctl run by root connects to, see
//     bus_connect_system_systemd in systemd's src/shared/bus-util.c) and,
//     when the image enables dbus.socket, the D-Bus system bus socket
//     /run/dbus/system_bus_socket accepts one too (what systemctl run by
//     any other user connects to, sd-bus's default system bus address, and
//     what hostnamectl, loginctl, timedatectl, … need as root too).
//   - OpenRC: /run/openrc/softlevel exists (written by OpenRC's init.sh when
//     the sysinit runlevel starts; until then openrc-run refuses with "You
//     are attempting to run an openrc service on a system which openrc did
//     not boot").
//   - runit: stage 1 has finished, marked by /run/runit.stopit (Debian's
//     /etc/runit/1) or /run/runit/stopit (Void's), and runsvdir has started
//     a runsv for every service in the service directory (/etc/service,
//     /var/service or /service): each service's supervise/ok exists, which
//     is what sv(8) opens ("unable to open supervise/ok" before).
//   - busybox init, sysvinit and images without an init: nothing; they have
//     no service manager to wait for.
//
// Files are watched with inotify (fsnotify), not polled; /run must be
// mounted before Watch starts, as /init does.
package ready

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"
)

// Init names the kind of init system an image boots.
type Init string

// The init systems Detect recognises.
const (
	// None is an image without an init, or one whose init has nothing to
	// wait for (busybox init or sysvinit without OpenRC).
	None    Init = ""
	Systemd Init = "systemd"
	OpenRC  Init = "openrc"
	Runit   Init = "runit"
)

// Bound is how long after boot commands wait for the init at most; a TCG
// guest on a busy host brings systemd's bus up in under 10 s, so this is
// left only by an init that is broken or stuck.
const Bound = 60 * time.Second

// Detect returns the init system of the root filesystem at root ("/" in
// the guest): the file /sbin/init resolves to (systemd, openrc-init,
// runit-init or runit) or, for another /sbin/init (busybox, sysvinit), OpenRC
// when the image has its openrc program (Alpine's and Debian's inittab and
// rc scripts run it). A missing /sbin/init is None.
func Detect(root string) Init {
	target, ok := resolve(root, "/sbin/init")
	if !ok {
		return None
	}
	switch filepath.Base(target) {
	case "systemd":
		return Systemd
	case "openrc-init":
		return OpenRC
	case "runit-init", "runit":
		return Runit
	}
	for _, p := range []string{"/sbin/openrc", "/usr/sbin/openrc", "/bin/openrc", "/usr/bin/openrc"} {
		if fi, err := os.Stat(filepath.Join(root, p)); err == nil && fi.Mode().IsRegular() {
			return OpenRC
		}
	}
	return None
}

// resolve follows the symlinks of the guest path p inside root, as if
// root were "/" (at most 40, the kernel's MAXSYMLINKS), and returns the
// resolved path with true when every component exists; otherwise the
// deepest existing directory on the way, with false. A link whose target
// does not exist yet (runit's supervise links into an empty /run) thus
// names the directory where the target will be made.
func resolve(root, p string) (string, bool) {
	split := func(p string) []string { return strings.Split(strings.TrimPrefix(filepath.Clean(p), "/"), "/") }
	parts := split(p)
	at := "/"
	for hops := 0; len(parts) > 0; {
		if parts[0] == "" || parts[0] == "." {
			parts = parts[1:]
			continue
		}
		next := filepath.Join(at, parts[0])
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			return at, false
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			link, err := os.Readlink(filepath.Join(root, next))
			if hops++; err != nil || hops > 40 {
				return at, false
			}
			if !filepath.IsAbs(link) {
				link = filepath.Join(at, link)
			}
			// Start again from / along the link's target and the rest.
			parts = append(split(link), parts[1:]...)
			at = "/"
			continue
		}
		if !fi.IsDir() && len(parts) > 1 {
			return at, false
		}
		at, parts = next, parts[1:]
	}
	return at, true
}

// need is one thing commands need from the init: the first of paths to
// exist and, for a socket, to accept a connection.
type need struct {
	paths  []string // absolute in the guest; any one will do
	socket bool
	what   string // for the message when it never comes
	quiet  bool   // one of many alike: not logged when met
}

// needs lists what init must provide before commands run.
func needs(root string, init Init) []need {
	switch init {
	case Systemd:
		n := []need{{paths: []string{"/run/systemd/private"}, socket: true, what: "systemd's bus (/run/systemd/private)"}}
		if dbusSocketEnabled(root) {
			n = append(n, need{paths: []string{"/run/dbus/system_bus_socket"}, socket: true, what: "the D-Bus system bus (/run/dbus/system_bus_socket)"})
		}
		return n
	case OpenRC:
		return []need{{paths: []string{"/run/openrc/softlevel"}, what: "OpenRC (/run/openrc/softlevel)"}}
	case Runit:
		n := []need{{paths: []string{"/run/runit.stopit", "/run/runit/stopit"}, what: "runit's stage 1 (/run/runit.stopit or /run/runit/stopit)"}}
		for _, svc := range runitServices(root) {
			ok := filepath.Join(svc, "supervise/ok")
			n = append(n, need{paths: []string{ok}, what: "runit's runsv for " + filepath.Base(svc) + " (" + ok + ")", quiet: true})
		}
		return n
	}
	return nil
}

// runitServiceDirs are where runsvdir finds the services to supervise:
// runit's own and Debian's /etc/service, Void's /var/service, daemontools'
// /service. The first that exists is used.
var runitServiceDirs = []string{"/etc/service", "/var/service", "/service"}

// runitServices lists the service directories runsvdir will start a runsv
// for (runsvdir(8): every entry not starting with a dot), as paths in the
// guest.
func runitServices(root string) []string {
	for _, d := range runitServiceDirs {
		ents, err := os.ReadDir(filepath.Join(root, d))
		if err != nil {
			continue
		}
		var out []string
		for _, e := range ents {
			p := filepath.Join(d, e.Name())
			if strings.HasPrefix(e.Name(), ".") {
				continue
			}
			if t, ok := resolve(root, p); ok {
				if fi, err := os.Stat(filepath.Join(root, t)); err == nil && fi.IsDir() {
					out = append(out, p)
				}
			}
		}
		return out
	}
	return nil
}

// unitDirs are systemd's system unit directories in priority order
// (systemd.unit(5)); /run/systemd/system is left out as it is made at boot.
var unitDirs = []string{"/etc/systemd/system", "/usr/local/lib/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"}

// dbusSocketEnabled reports whether systemd will start dbus.socket at boot:
// the unit exists, is not masked (its first file a link to /dev/null or
// empty), and a .wants or .requires directory lists it (Debian, Fedora and
// Arch ship sockets.target.wants/dbus.socket).
func dbusSocketEnabled(root string) bool {
	found := false
	for _, d := range unitDirs {
		p := filepath.Join(root, d, "dbus.socket")
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			if t, _ := os.Readlink(p); t == "/dev/null" {
				return false
			}
		} else if fi.Size() == 0 {
			return false
		}
		found = true
		break
	}
	if !found {
		return false
	}
	for _, d := range unitDirs {
		for _, pat := range []string{"*.wants/dbus.socket", "*.requires/dbus.socket"} {
			if m, _ := filepath.Glob(filepath.Join(root, d, pat)); len(m) > 0 {
				return true
			}
		}
	}
	return false
}

// Gate opens when the init accepts requests (see the package comment).
type Gate struct {
	init     Init
	start    time.Time
	deadline time.Time
	met      chan struct{} // closed once every need is met

	mu      sync.Mutex
	missing string // the first need not met yet
}

// NotReadyError reports an init that was not ready by the gate's deadline.
type NotReadyError struct {
	Init Init
	// Missing names what is still missing, e.g. "systemd's bus
	// (/run/systemd/private)".
	Missing string
	// After is how long after Watch started the wait gave up.
	After time.Duration
}

func (e *NotReadyError) Error() string {
	return fmt.Sprintf("%s is not up %v after boot", e.Missing, e.After.Round(time.Second))
}

// Watch starts watching, in the background, for init on the root
// filesystem at root to accept requests; Wait gives up bound after Watch
// was called. Watching goes on past bound, so a late init still opens the
// gate, and stops when ctx ends. A None init is ready at once.
func Watch(ctx context.Context, root string, init Init, bound time.Duration) *Gate {
	now := time.Now()
	g := &Gate{init: init, start: now, deadline: now.Add(bound), met: make(chan struct{})}
	ns := needs(root, init)
	if len(ns) == 0 {
		close(g.met)
		return g
	}
	g.missing = ns[0].what
	go func() {
		if g.watch(ctx, root, ns) {
			close(g.met)
		}
	}()
	return g
}

// Init returns the init system the gate waits for.
func (g *Gate) Init() Init { return g.init }

// Ready reports, without waiting, whether the init accepts requests.
func (g *Gate) Ready() bool {
	select {
	case <-g.met:
		return true
	default:
		return false
	}
}

// Missing names what the init does not provide yet, e.g. "systemd's bus
// (/run/systemd/private)", or returns "" once it is ready.
func (g *Gate) Missing() string {
	if g.Ready() {
		return ""
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.missing
}

// Wait waits until the init accepts requests and returns nil; it returns
// a *NotReadyError when the gate's deadline passes (or has passed) first,
// and ctx's error when ctx ends first.
func (g *Gate) Wait(ctx context.Context) error {
	if g.Ready() {
		return nil
	}
	t := time.NewTimer(time.Until(g.deadline))
	defer t.Stop()
	select {
	case <-g.met:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	if m := g.Missing(); m != "" {
		return &NotReadyError{Init: g.init, Missing: m, After: time.Since(g.start)}
	}
	return nil
}

// refusedRetry is how soon a socket that exists but refused a connection
// is tried again: the file appears at bind(2), connections are accepted
// from listen(2), which follows at once, and no file event marks it.
const refusedRetry = 10 * time.Millisecond

// watch waits until every need is met and returns true, or false when ctx
// ends first. Each round checks the needs and watches the deepest existing
// directory above each missing path; a round that added a watch is
// followed at once by another, so a directory made between a check and
// its parent's watch is not missed.
func (g *Gate) watch(ctx context.Context, root string, ns []need) bool {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		g.setMissing(ns[0].what + ": " + err.Error())
		return false
	}
	defer w.Close()
	watched := map[string]bool{}
	logged := make([]bool, len(ns))
	for {
		missing, retry, added := "", false, false
		for i, n := range ns {
			ok, refused := n.met(root)
			if ok {
				if !logged[i] && !n.quiet {
					logged[i] = true
					log.Printf("%s up %v after the agent started (uptime %v)", n.what,
						time.Since(g.start).Round(time.Millisecond), uptime().Round(time.Millisecond))
				}
				continue
			}
			if missing == "" {
				missing = n.what
			}
			retry = retry || refused
			for _, p := range n.paths {
				dir := watchDir(root, p)
				if watched[dir] {
					continue
				}
				if err := w.Add(dir); err != nil {
					g.setMissing(n.what + ": " + err.Error())
					return false
				}
				watched[dir], added = true, true
			}
		}
		if missing == "" {
			g.setMissing("")
			log.Printf("%s ready %v after the agent started (uptime %v)", g.init,
				time.Since(g.start).Round(time.Millisecond), uptime().Round(time.Millisecond))
			return true
		}
		g.setMissing(missing)
		if added {
			continue
		}
		var tick <-chan time.Time
		if retry {
			tick = time.After(refusedRetry)
		}
		select {
		case <-w.Events:
		case <-w.Errors:
		case <-tick:
		case <-ctx.Done():
			return false
		}
	}
}

func (g *Gate) setMissing(what string) {
	g.mu.Lock()
	g.missing = what
	g.mu.Unlock()
}

// met reports whether n is met; refused is true when a socket file exists
// but does not accept connections yet.
func (n need) met(root string) (ok, refused bool) {
	for _, p := range n.paths {
		dir, ok := resolve(root, filepath.Dir(p))
		if !ok {
			continue
		}
		full := filepath.Join(root, dir, filepath.Base(p))
		if !n.socket {
			if _, err := os.Lstat(full); err == nil {
				return true, false
			}
			continue
		}
		c, err := net.DialTimeout("unix", full, time.Second)
		if err == nil {
			c.Close()
			return true, false
		}
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EAGAIN) {
			refused = true
		}
	}
	return false, refused
}

// watchDir returns the directory (a host path under root) to watch for the
// guest path p to appear: p's directory, or the deepest existing one on
// the way to it, symlinks followed inside root (see resolve).
func watchDir(root, p string) string {
	dir, _ := resolve(root, filepath.Dir(p))
	return filepath.Join(root, dir)
}

// uptime is the time since the kernel booted (CLOCK_BOOTTIME).
func uptime() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
