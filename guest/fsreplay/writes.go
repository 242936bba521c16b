//go:build linux

package fsreplay

import (
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// GuestWriteWindow is how long after a guest process wrote a file the
// host's change of it is taken for the echo of that write and not
// replayed.
const GuestWriteWindow = 2 * time.Second

// maxWatchDirs bounds the directories WatchWrites watches over all mounts.
const maxWatchDirs = 32768

// Writes records the files that processes in the guest wrote (IN_MODIFY,
// which no replay fires), so that their echo from the host is not
// replayed on top of the events the writes fired themselves. It is safe
// for concurrent use.
type Writes struct {
	mu   sync.Mutex
	last map[string]time.Time // guest path -> last write
}

// Recent reports whether the guest path p was written by a guest process
// within GuestWriteWindow of now.
func (w *Writes) Recent(p string, now time.Time) bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.last[p]
	return ok && now.Sub(t) <= GuestWriteWindow
}

// note records a write of p at now, keeping the map bounded.
func (w *Writes) note(p string, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last == nil || len(w.last) >= 8192 {
		w.last = map[string]time.Time{}
	}
	w.last[p] = now
}

// WatchWrites watches mounts recursively in the guest (at most
// maxWatchDirs directories; directories made later are added) and
// records writes into the returned Writes until stop is closed. Watching
// fails quietly: without it every host change is replayed.
func WatchWrites(mounts []string, stop <-chan struct{}) *Writes {
	w := &Writes{}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return w
	}
	dirs := 0
	add := func(root string) {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			if dirs >= maxWatchDirs || fw.Add(p) != nil {
				return filepath.SkipDir
			}
			dirs++
			return nil
		})
	}
	go func() {
		defer fw.Close()
		for _, m := range mounts {
			add(m)
		}
		for {
			select {
			case <-stop:
				return
			case ev, ok := <-fw.Events:
				if !ok {
					return
				}
				if ev.Has(fsnotify.Write) {
					w.note(ev.Name, time.Now())
				}
				if ev.Has(fsnotify.Create) {
					if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
						add(ev.Name)
					}
				}
			case <-fw.Errors:
			}
		}
	}()
	return w
}
