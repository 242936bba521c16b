package fswatch

import (
	"io/fs"
	"os"
	"time"
)

// state is what the host filesystem holds at a path when a window ends,
// without its ctime: replaying a change in the guest (a chmod to the same
// mode) changes only the ctime, so the echo of a replay has the state the
// change was sent with.
type state struct {
	exists bool
	dir    bool
	size   int64
	mtime  int64 // nanoseconds since the Unix epoch
	mode   fs.FileMode
	ino    uint64
}

// stateOf reads the state of path without following a final symbolic link.
func stateOf(path string) state {
	fi, err := os.Lstat(path)
	if err != nil {
		return state{}
	}
	return state{exists: true, dir: fi.IsDir(), size: fi.Size(), mtime: fi.ModTime().UnixNano(), mode: fi.Mode(), ino: inode(fi)}
}

// memory decides, for each path whose window ended, whether the guest
// must hear of it, and drops the echoes of the guest's own replays:
//   - a path whose state is the one last sent (a replayed chmod, or a
//     touch of nothing) is dropped;
//   - a path created and gone within one window (an editor's temporary
//     file) is dropped;
//   - for echoWindow after a Removed was sent, the path turning up as an
//     empty regular file or a directory is the guest's replay of the
//     removal (it creates and removes the path, see guest/fsreplay) and is
//     dropped, as is its disappearing again.
//
// It remembers at most max paths; past that it forgets them all, which
// costs one repeated event per path later, never a missed one.
type memory struct {
	known      map[key]state
	removedAt  map[key]time.Time
	max        int
	echoWindow time.Duration
}

func newMemory(max int, echoWindow time.Duration) *memory {
	return &memory{known: map[key]state{}, removedAt: map[key]time.Time{}, max: max, echoWindow: echoWindow}
}

// decide returns the change to send for k, now in state s; created says
// the window began with a create of k. ok is false when nothing is sent.
func (m *memory) decide(k key, s state, created bool, now time.Time) (c Change, ok bool) {
	if len(m.known) >= m.max {
		clear(m.known)
	}
	if t, rm := m.removedAt[k]; rm {
		if now.Sub(t) > m.echoWindow {
			delete(m.removedAt, k)
		} else if s.exists && s.mode.Perm() == 0 && (s.dir || s.mode.IsRegular() && s.size == 0) {
			return Change{}, false
		}
	}
	prev, had := m.known[k]
	c = Change{Root: k.root, Rel: k.rel}
	switch {
	case !s.exists && had && !prev.exists:
		return Change{}, false
	case !s.exists && !had && created:
		return Change{}, false
	case !s.exists:
		c.Op = Removed
		c.Dir = prev.dir
		m.known[k] = s
		if len(m.removedAt) >= m.max {
			clear(m.removedAt)
		}
		m.removedAt[k] = now
		return c, true
	case had && prev == s:
		return Change{}, false
	default:
		c.Op = Changed
		c.Dir = s.dir
		m.known[k] = s
		delete(m.removedAt, k) // a host change, not an echo: the window ends
		return c, true
	}
}
