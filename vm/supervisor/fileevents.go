package supervisor

import (
	"context"
	"time"

	"github.com/machinetop/machinetop/guest/client"
	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/vm/control"
	"github.com/machinetop/machinetop/vm/supervisor/fswatch"
)

// bridgeFileEvents watches this boot's shared directories on the host
// and sends their changes to the agent, which replays them on the
// guest's mounts so that inotify watchers there wake (package fswatch on
// this side, guest/fsreplay on the other), until done is closed or the
// session ends. It does nothing when the machine has file-events=off or
// shares nothing.
func (s *supervisor) bridgeFileEvents(cl *client.Client, done <-chan struct{}) {
	mounts := s.bootInfo.Mounts
	if !s.cfg.FileEventsEnabled() || len(mounts) == 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-done:
		case <-ctx.Done():
		}
		cancel()
	}()
	roots := make([]string, len(mounts))
	guests := make([]string, len(mounts))
	for i, m := range mounts {
		roots[i], guests[i] = m.Host, m.Guest
	}
	octx, ocancel := context.WithTimeout(ctx, 30*time.Second)
	st, err := cl.FileEvents(octx, guests)
	ocancel()
	if err != nil {
		s.log.Warn("host file events do not reach the machine", "err", err)
		return
	}
	defer st.Close()
	skip := s.hidden
	if skip == nil {
		// An adopted VM: prepareHost did not run in this process.
		skip, _ = s.m.Data.Hidden()
	}
	started := time.Now()
	ready := func(stats fswatch.Stats) {
		s.log.Info("watching shared directories for file events", "dirs", stats.Dirs, "capped", stats.Capped, "took", time.Since(started).Round(time.Millisecond))
		s.setStatus(func(st *control.Status) {
			st.FileEvents = &control.FileEvents{Dirs: stats.Dirs, Capped: stats.Capped, Cap: fswatch.DefaultMaxDirs}
		})
	}
	defer s.setStatus(func(st *control.Status) { st.FileEvents = nil })
	err = fswatch.Watch(ctx, roots, fswatch.Options{Skip: skip, Log: s.log}, ready, func(cs []fswatch.Change) error {
		return st.Send(toFileEvents(cs, time.Now()))
	})
	if err != nil && ctx.Err() == nil {
		s.log.Warn("host file events stopped", "err", err)
	}
}

// toFileEvents converts a window's changes for the wire, stamped now.
func toFileEvents(cs []fswatch.Change, now time.Time) []proto.FileEvent {
	evs := make([]proto.FileEvent, len(cs))
	for i, c := range cs {
		kind := proto.FileChanged
		if c.Op == fswatch.Removed {
			kind = proto.FileRemoved
		}
		evs[i] = proto.FileEvent{Mount: c.Root, Path: c.Rel, Kind: kind, Dir: c.Dir, UnixNano: now.UnixNano()}
	}
	return evs
}
