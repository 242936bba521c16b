//go:build linux

package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"path/filepath"

	"github.com/machinetop/machinetop/guest/fsreplay"
	"github.com/machinetop/machinetop/guest/proto"
)

// maxReplayLogs bounds the replay failures one stream logs.
const maxReplayLogs = 10

// fileEvents serves OpFileEvents: it answers, then replays every
// FrameFileEvents batch the host sends on the mounts (package fsreplay)
// until the host closes the stream. One batch is in memory at a time
// (at most proto.MaxFrame bytes of JSON).
func (s *Server) fileEvents(conn net.Conn, br *bufio.Reader, req *proto.FileEventsRequest) {
	for _, m := range req.Mounts {
		if !filepath.IsAbs(m) || filepath.Clean(m) != m {
			proto.WriteLine(conn, proto.Response{Error: "fileevents: bad mount point " + m})
			return
		}
	}
	if err := proto.WriteLine(conn, proto.Response{}); err != nil {
		return
	}
	r := fsreplay.New(req.Mounts)
	defer r.Close()
	stop := make(chan struct{})
	defer close(stop)
	r.Writes = fsreplay.WatchWrites(req.Mounts, stop)
	logged := 0
	for {
		t, b, err := proto.ReadFrame(br)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			log.Printf("file events: %v", err)
			return
		}
		if t != proto.FrameFileEvents {
			log.Printf("file events: unexpected frame type %d", t)
			return
		}
		var evs []proto.FileEvent
		if err := json.Unmarshal(b, &evs); err != nil {
			log.Printf("file events: bad batch: %v", err)
			return
		}
		for _, ev := range evs {
			if err := r.Replay(ev); err != nil && logged < maxReplayLogs {
				logged++
				log.Printf("file events: %v", err)
			}
		}
	}
}
