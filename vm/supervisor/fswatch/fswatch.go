// Package fswatch watches a machine's shared host directories recursively
// (github.com/fsnotify/fsnotify: inotify on Linux, kqueue on macOS) and
// turns bursts of host events into logical changes for the guest: one
// Changed or Removed per path and window (see coalescer), the echoes of
// the guest's own replays dropped (see memory).
//
// Resources: one watch per directory (inotify watches directories; kqueue
// also opens each file), at most Options.MaxDirs over all roots. Past the
// cap, the directories not yet watched are left unwatched: changes in
// them do not reach the guest, and Watch logs it once. Directories that
// appear later are watched as they appear, within the cap, and what was
// created in them before their watch was set is found by walking them.
// A window ends once Options.MaxPending paths wait (a walk of a new
// directory adds at most MaxPending more before that check), and the
// memory of sent states holds at most 8*MaxPending paths, so memory is
// bounded by the number of watched directories plus a constant. On macOS
// kqueue also holds a descriptor per file in a watched directory, which
// MaxDirs does not bound.
package fswatch

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Op is what happened to a path.
type Op uint8

// The changes Watch reports.
const (
	// Changed: the path exists and was created, written, replaced or
	// renamed to, or its mode changed.
	Changed Op = 1
	// Removed: the path was deleted or renamed away.
	Removed Op = 2
)

// String returns "changed" or "removed".
func (o Op) String() string {
	switch o {
	case Changed:
		return "changed"
	case Removed:
		return "removed"
	}
	return "unknown"
}

// Change is one logical change below a root.
type Change struct {
	// Root is the index of the root in Watch's roots.
	Root int
	// Rel is the slash-separated path below the root, never "" or ".".
	Rel string
	Op  Op
	// Dir is true when the path is (Changed) or was (Removed) a
	// directory.
	Dir bool
}

// Defaults of Options.
const (
	DefaultMaxDirs    = 32768
	DefaultSettle     = 20 * time.Millisecond
	DefaultMaxDelay   = 150 * time.Millisecond
	DefaultMaxPending = 4096
	// EchoWindow is how long after a Removed the guest's replay of it
	// (see memory) is recognised.
	EchoWindow = 3 * time.Second
)

// Options tune Watch; zero fields take the defaults above.
type Options struct {
	// MaxDirs bounds the directories watched over all roots.
	MaxDirs int
	// Skip are host directories never watched nor reported, with
	// everything under them (machinetop's own directories).
	Skip []string
	// Settle is the quiet time that ends a window; MaxDelay the longest
	// a window lasts; MaxPending the most paths a window holds.
	Settle, MaxDelay time.Duration
	MaxPending       int
	// Log receives the cap being reached, lost events and watch errors;
	// nil discards them.
	Log *slog.Logger
}

// Stats describe what Watch watches; Watch passes them to its ready
// callback once the initial walk is done.
type Stats struct {
	// Dirs is the number of directories watched.
	Dirs int
	// Capped is true when MaxDirs stopped the walk: some directories are
	// not watched.
	Capped bool
}

// Watch watches roots (absolute host directories) until ctx ends or send
// fails, calling send with each window's changes in the order their paths
// first changed (send may block; host events wait in the kernel's queue
// meanwhile, and an overflow there is logged). ready, when not nil, is
// called once the roots are watched. Watch returns ctx's error, send's
// error, or an error setting up the watcher (e.g. the inotify instance
// limit reached).
func Watch(ctx context.Context, roots []string, opt Options, ready func(Stats), send func([]Change) error) error {
	opt = withDefaults(opt)
	fw, err := fsnotify.NewBufferedWatcher(1024)
	if err != nil {
		return err
	}
	defer fw.Close()
	w := &watcher{fw: fw, roots: roots, opt: opt, dirs: map[string]struct{}{},
		co:  newCoalescer(opt.Settle, opt.MaxDelay, opt.MaxPending),
		mem: newMemory(8*opt.MaxPending, EchoWindow)}
	for _, r := range roots {
		w.addTree(r, false)
	}
	if ready != nil {
		ready(Stats{Dirs: len(w.dirs), Capped: w.capped})
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-fw.Events:
			if !ok {
				return errors.New("fswatch: watcher closed")
			}
			w.event(ev, time.Now())
		case err, ok := <-fw.Errors:
			if !ok {
				return errors.New("fswatch: watcher closed")
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.opt.Log.Warn("host file events lost: the kernel's queue overflowed", "err", err)
			} else {
				w.opt.Log.Warn("host file watch", "err", err)
			}
		case <-timer.C:
		}
		if w.co.empty() {
			continue
		}
		now := time.Now()
		if d := w.co.deadline(); !w.co.full() && d.After(now) {
			timer.Reset(d.Sub(now))
			continue
		}
		if batch := w.flush(now); len(batch) > 0 {
			if err := send(batch); err != nil {
				return err
			}
		}
	}
}

func withDefaults(o Options) Options {
	if o.MaxDirs <= 0 {
		o.MaxDirs = DefaultMaxDirs
	}
	if o.Settle <= 0 {
		o.Settle = DefaultSettle
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = DefaultMaxDelay
	}
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}

type watcher struct {
	fw     *fsnotify.Watcher
	roots  []string
	opt    Options
	dirs   map[string]struct{}
	capped bool
	co     *coalescer
	mem    *memory
}

// skipped reports whether p is one of Options.Skip or below one.
func (w *watcher) skipped(p string) bool {
	for _, s := range w.opt.Skip {
		if within(s, p) {
			return true
		}
	}
	return false
}

// within reports whether p is dir or below it.
func within(dir, p string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, string(filepath.Separator))+string(filepath.Separator))
}

// addTree watches dir and the directories below it, within the cap; with
// report, what it finds is recorded as created (it appeared before its
// directory's watch was set), the first MaxPending paths of it (a
// directory renamed in from elsewhere may hold a whole tree; its rename
// is what the guest needs).
func (w *watcher) addTree(dir string, report bool) {
	now := time.Now()
	reported := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || w.skipped(p) {
			if d != nil && d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if report && p != dir && reported < w.opt.MaxPending {
			reported++
			w.record(p, true, now)
		}
		if !d.IsDir() {
			return nil
		}
		if _, ok := w.dirs[p]; ok {
			return nil
		}
		if len(w.dirs) >= w.opt.MaxDirs {
			if !w.capped {
				w.capped = true
				w.opt.Log.Warn("host file events: directory cap reached; changes in the directories left unwatched do not reach the machine", "cap", w.opt.MaxDirs, "first", p)
			}
			return filepath.SkipDir
		}
		if err := w.fw.Add(p); err != nil {
			w.opt.Log.Warn("host file watch", "dir", p, "err", err)
			return filepath.SkipDir
		}
		w.dirs[p] = struct{}{}
		return nil
	})
}

// dropTree forgets the watches of dir and below (it was removed or
// renamed away; a rename's new name is walked when its create arrives).
func (w *watcher) dropTree(dir string) {
	for d := range w.dirs {
		if within(dir, d) {
			w.fw.Remove(d)
			delete(w.dirs, d)
		}
	}
}

// event handles one host event at now.
func (w *watcher) event(ev fsnotify.Event, now time.Time) {
	p := filepath.Clean(ev.Name)
	if w.skipped(p) {
		return
	}
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		if _, ok := w.dirs[p]; ok {
			w.dropTree(p)
		}
	}
	created := ev.Has(fsnotify.Create)
	w.record(p, created, now)
	if created {
		if fi, err := lstatDir(p); err == nil && fi {
			w.addTree(p, true)
		}
	}
}

// lstatDir reports whether p is a directory (not a link to one).
func lstatDir(p string) (bool, error) {
	s := stateOf(p)
	if !s.exists {
		return false, fs.ErrNotExist
	}
	return s.dir, nil
}

// record adds p to the window once for every root it is below.
func (w *watcher) record(p string, created bool, now time.Time) {
	for i, r := range w.roots {
		if p == r || !within(r, p) {
			continue
		}
		rel, err := filepath.Rel(r, p)
		if err != nil {
			continue
		}
		w.co.add(key{root: i, rel: filepath.ToSlash(rel)}, created, now)
	}
}

// flush ends the window and returns the changes to send.
func (w *watcher) flush(now time.Time) []Change {
	keys, created := w.co.take()
	var out []Change
	for i, k := range keys {
		s := stateOf(filepath.Join(w.roots[k.root], filepath.FromSlash(k.rel)))
		if c, ok := w.mem.decide(k, s, created[i], now); ok {
			out = append(out, c)
		}
	}
	return out
}
