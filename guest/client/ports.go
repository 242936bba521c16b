package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"

	"github.com/machinetop/machinetop/guest/proto"
)

// WatchPorts calls fn with the guest's listening TCP sockets now and
// again each time they change (proto.OpPorts; each call's list replaces
// the one before), until ctx ends or the stream does. It returns ctx's
// error, or the error that ended the stream (the session closing, or the
// guest failing to read its socket tables).
func (c *Client) WatchPorts(ctx context.Context, fn func([]proto.Listener)) error {
	conn, err := c.dial(ctx)
	if err != nil {
		return fmt.Errorf("agent: opening stream: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := proto.WriteLine(conn, proto.Request{Op: proto.OpPorts}); err != nil {
		return ctxErr(ctx, fmt.Errorf("agent ports: %w", err))
	}
	br := bufio.NewReader(conn)
	for {
		// A line is a Listeners, or a Response carrying the error
		// that ended the stream.
		var line struct {
			proto.Listeners
			Error string `json:"error"`
		}
		b, err := br.ReadBytes('\n')
		if err != nil {
			return ctxErr(ctx, fmt.Errorf("agent ports: %w", err))
		}
		if err := json.Unmarshal(b, &line); err != nil {
			return fmt.Errorf("agent ports: bad line: %w", err)
		}
		if line.Error != "" {
			return fmt.Errorf("agent ports: %s", line.Error)
		}
		fn(line.Listeners.Listeners)
	}
}

// DialGuest connects to TCP port port inside the guest (proto.OpDial; addr
// is the listener's address as proto.Listener.Addr reports it, "" for
// loopback) and returns the connection, a yamux stream: its Close is a
// half-close (the guest's server sees end of file and may still answer,
// which Read then returns), as proto.Splice expects.
// A connection the guest refused is an error carrying the guest's reason.
func (c *Client) DialGuest(ctx context.Context, addr string, port int) (*GuestConn, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("agent: opening stream: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*GuestConn, error) {
		stop()
		conn.Close()
		return nil, ctxErr(ctx, err)
	}
	if err := proto.WriteLine(conn, proto.Request{Op: proto.OpDial, Dial: &proto.DialRequest{Port: port, Addr: addr}}); err != nil {
		return fail(fmt.Errorf("agent dial: %w", err))
	}
	br := bufio.NewReader(conn)
	var resp proto.Response
	if err := proto.ReadLine(br, &resp); err != nil {
		return fail(fmt.Errorf("agent dial: %w", err))
	}
	if resp.Error != "" {
		return fail(fmt.Errorf("agent %s", resp.Error))
	}
	if !stop() {
		return fail(ctx.Err())
	}
	conn.SetDeadline(time.Time{})
	return &GuestConn{Conn: conn, r: br}, nil
}

// GuestConn is a connection to a guest TCP port made by DialGuest. Reads
// come through the buffer that read the guest's answer, so nothing the
// guest's server sent at once (an SSH banner) is lost.
type GuestConn struct {
	net.Conn
	r *bufio.Reader
}

// Read reads the guest server's bytes.
func (g *GuestConn) Read(p []byte) (int, error) { return g.r.Read(p) }
