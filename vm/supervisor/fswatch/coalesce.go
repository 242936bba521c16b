package fswatch

import (
	"time"
)

// key names one path: the index of its root and its slash-separated path
// below the root.
type key struct {
	root int
	rel  string
}

// pending is what the coalescer knows of one path during a window.
type pending struct {
	// created is true when the first event of the window for the path
	// was a create: had the path gone again by the flush, the guest
	// never saw it and nothing is sent.
	created bool
}

// coalescer gathers the host events of a burst into one logical change
// per path: an editor's write temp + rename + chmod ends as one Changed
// for the file it saved, and the temporary file it created and renamed
// away within the window as nothing. A window ends when no event arrived
// for settle, or maxDelay after its first event, or when maxPending paths
// wait.
type coalescer struct {
	settle, maxDelay time.Duration
	maxPending       int

	paths       map[key]*pending
	order       []key // first-event order, for a stable batch
	first, last time.Time
}

func newCoalescer(settle, maxDelay time.Duration, maxPending int) *coalescer {
	return &coalescer{settle: settle, maxDelay: maxDelay, maxPending: maxPending, paths: map[key]*pending{}}
}

// add records an event on k at now; created says it was a create.
func (c *coalescer) add(k key, created bool, now time.Time) {
	if len(c.paths) == 0 {
		c.first = now
	}
	c.last = now
	if _, ok := c.paths[k]; ok {
		return
	}
	c.paths[k] = &pending{created: created}
	c.order = append(c.order, k)
}

// empty reports whether nothing waits.
func (c *coalescer) empty() bool { return len(c.paths) == 0 }

// full reports whether maxPending paths wait: the window must end now.
func (c *coalescer) full() bool { return len(c.paths) >= c.maxPending }

// deadline is when the current window ends, given no further events;
// zero when nothing waits.
func (c *coalescer) deadline() time.Time {
	if c.empty() {
		return time.Time{}
	}
	d := c.last.Add(c.settle)
	if m := c.first.Add(c.maxDelay); m.Before(d) {
		d = m
	}
	return d
}

// take ends the window: the waiting paths in first-event order, each with
// whether it was created in the window.
func (c *coalescer) take() (keys []key, created []bool) {
	keys = c.order
	created = make([]bool, len(keys))
	for i, k := range keys {
		created[i] = c.paths[k].created
	}
	c.order = nil
	clear(c.paths)
	return keys, created
}
