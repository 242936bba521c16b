package client

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"time"

	"github.com/machinetop/machinetop/guest/proto"
)

// maxBatch is the most events one FrameFileEvents frame carries, so a
// frame stays well under proto.MaxFrame (paths are at most 4096 bytes;
// typical ones far shorter).
const maxBatch = 200

// FileEventStream sends host file changes to the agent, which replays
// them on the guest's mounts (proto.OpFileEvents). It is not safe for
// concurrent use.
type FileEventStream struct {
	conn net.Conn
}

// FileEvents opens the file-event stream for the guest mount points
// mounts (proto.FileEventsRequest). It returns an error when the stream
// cannot open or the agent refuses (an agent from before OpFileEvents
// answers "unknown operation").
func (c *Client) FileEvents(ctx context.Context, mounts []string) (*FileEventStream, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("agent: opening stream: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	req := proto.Request{Op: proto.OpFileEvents, FileEvents: &proto.FileEventsRequest{Mounts: mounts}}
	if err := proto.WriteLine(conn, req); err != nil {
		conn.Close()
		return nil, ctxErr(ctx, fmt.Errorf("agent %s: %w", req.Op, err))
	}
	// The guest sends nothing after its answer, so no byte is lost with
	// this reader.
	var resp proto.Response
	if err := proto.ReadLine(bufio.NewReader(conn), &resp); err != nil {
		conn.Close()
		return nil, ctxErr(ctx, fmt.Errorf("agent %s: %w", req.Op, err))
	}
	if resp.Error != "" {
		conn.Close()
		return nil, fmt.Errorf("agent %s: %s", req.Op, resp.Error)
	}
	if !stop() {
		conn.Close()
		return nil, ctx.Err()
	}
	return &FileEventStream{conn: conn}, nil
}

// Send sends evs, in frames of at most maxBatch events. It returns the
// write's error (the session ended).
func (s *FileEventStream) Send(evs []proto.FileEvent) error {
	for len(evs) > 0 {
		n := min(len(evs), maxBatch)
		if err := proto.WriteJSONFrame(s.conn, proto.FrameFileEvents, evs[:n]); err != nil {
			return fmt.Errorf("agent fileevents: %w", err)
		}
		evs = evs[n:]
	}
	return nil
}

// Close ends the stream.
func (s *FileEventStream) Close() error { return s.conn.Close() }
