// Package client is the host side of the guest agent protocol
// (package proto): it opens the multiplexed session over the agent channel
// and makes calls on it. It is pure Go and builds on every OS.
package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/machinetop/machinetop/guest/proto"
)

// DefaultHandshakeTimeout is how long NewSession waits for the agent to
// answer; a machine whose first boot unpacks its image under TCG can take
// this long before the agent starts.
const DefaultHandshakeTimeout = 3 * time.Minute

// Dialer opens a new byte stream to the agent; each stream carries one call.
type Dialer func(ctx context.Context) (net.Conn, error)

// Client makes calls to a guest agent. It is safe for concurrent use; every
// call uses its own stream.
type Client struct {
	dial Dialer
}

// New returns a Client that opens a stream with dial for every call.
func New(dial Dialer) *Client { return &Client{dial: dial} }

// FromSession returns a Client whose calls open streams on s.
func FromSession(s *yamux.Session) *Client {
	return New(func(ctx context.Context) (net.Conn, error) {
		st, err := s.OpenStream()
		if err != nil {
			return nil, err
		}
		return st, nil
	})
}

// YamuxConfig returns the yamux settings both ends use: yamux's defaults
// (keepalive every 30 s) with its logging discarded and a longer wait for
// a keepalive answer or a write (60 s).
func YamuxConfig() *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	// A guest under TCG on a loaded host can stall for seconds (a build's
	// dpkg run was seen to): yamux's default 10 s for a keepalive answer
	// or a write would end the session, and every command in it, although
	// nothing is wrong. A dead channel is still seen at once when its
	// socket closes.
	cfg.ConnectionWriteTimeout = 60 * time.Second
	return cfg
}

// NewSession runs proto.ClientHandshake on conn (the agent channel, e.g.
// the host end of the virtio-serial port's socket) with
// DefaultHandshakeTimeout and starts a yamux client session over it. Open
// streams with the session's Open method, or wrap it with FromSession.
// Closing the session closes conn.
func NewSession(conn net.Conn) (*yamux.Session, error) {
	return NewSessionTimeout(conn, DefaultHandshakeTimeout)
}

// NewSessionTimeout is NewSession with a handshake timeout. The error wraps
// proto.ErrHandshakeTimeout when the agent did not answer in time.
func NewSessionTimeout(conn net.Conn, timeout time.Duration) (*yamux.Session, error) {
	c, err := proto.ClientHandshake(conn, timeout)
	if err != nil {
		return nil, err
	}
	return yamux.Client(c, YamuxConfig())
}

// call opens a stream, sends req and reads one Response line. A non-empty
// Response.Error is returned as an error.
func (c *Client) call(ctx context.Context, req proto.Request) (*proto.Response, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("agent: opening stream: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := proto.WriteLine(conn, req); err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("agent %s: %w", req.Op, err))
	}
	var resp proto.Response
	if err := proto.ReadLine(bufio.NewReader(conn), &resp); err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("agent %s: %w", req.Op, err))
	}
	if resp.Error != "" {
		return &resp, fmt.Errorf("agent %s: %s", req.Op, resp.Error)
	}
	return &resp, nil
}

// ctxErr prefers the context's error when it caused err.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// Ping returns information about the agent and the guest.
func (c *Client) Ping(ctx context.Context) (*proto.Info, error) {
	resp, err := c.call(ctx, proto.Request{Op: proto.OpPing})
	if err != nil {
		return nil, err
	}
	if resp.Info == nil {
		return nil, errors.New("agent ping: empty answer")
	}
	return resp.Info, nil
}

// Metrics returns a resource sample from the guest (see proto.Metrics for
// units).
func (c *Client) Metrics(ctx context.Context) (*proto.Metrics, error) {
	resp, err := c.call(ctx, proto.Request{Op: proto.OpMetrics})
	if err != nil {
		return nil, err
	}
	if resp.Metrics == nil {
		return nil, errors.New("agent metrics: empty answer")
	}
	return resp.Metrics, nil
}

// Network returns the guest's IP addresses, loopback excluded.
func (c *Client) Network(ctx context.Context) ([]proto.Address, error) {
	resp, err := c.call(ctx, proto.Request{Op: proto.OpNetwork})
	if err != nil {
		return nil, err
	}
	return resp.Addresses, nil
}

// Lease returns the DHCP lease the guest's network runs on, nil when it
// has none.
func (c *Client) Lease(ctx context.Context) (*proto.Lease, error) {
	resp, err := c.call(ctx, proto.Request{Op: proto.OpNetwork})
	if err != nil {
		return nil, err
	}
	return resp.Lease, nil
}

// Shutdown asks the guest to power off (reboot false) or reboot. It returns
// once the agent has acknowledged; the guest goes down afterwards, so the
// channel will close.
func (c *Client) Shutdown(ctx context.Context, reboot bool) error {
	_, err := c.call(ctx, proto.Request{Op: proto.OpShutdown, Shutdown: &proto.ShutdownArgs{Reboot: reboot}})
	return err
}

// SetTime sets the guest's wall clock (CLOCK_REALTIME) to t, e.g. after the
// host resumed from sleep.
func (c *Client) SetTime(ctx context.Context, t time.Time) error {
	_, err := c.call(ctx, proto.Request{Op: proto.OpSetTime, UnixNano: t.UnixNano()})
	return err
}

// Time returns the guest's wall clock (CLOCK_REALTIME).
func (c *Client) Time(ctx context.Context) (time.Time, error) {
	resp, err := c.call(ctx, proto.Request{Op: proto.OpTime})
	if err != nil {
		return time.Time{}, err
	}
	if resp.UnixNano == 0 {
		return time.Time{}, errors.New("agent time: empty answer")
	}
	return time.Unix(0, resp.UnixNano), nil
}

// Reclaim sets the guest's idle memory reclaim mode (mode "off", "gradual"
// or "aggressive"; "" leaves it) and, with now, reclaims the guest's page
// cache above its floor at once. An agent too old to know OpReclaim
// answers with an "unknown operation" error.
func (c *Client) Reclaim(ctx context.Context, mode string, now bool) (*proto.ReclaimResult, error) {
	resp, err := c.call(ctx, proto.Request{Op: proto.OpReclaim, Reclaim: &proto.ReclaimRequest{Mode: mode, Now: now}})
	if err != nil {
		return nil, err
	}
	if resp.Reclaim == nil {
		return nil, errors.New("agent reclaim: empty answer")
	}
	return resp.Reclaim, nil
}
