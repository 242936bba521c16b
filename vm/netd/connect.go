package netd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// Connect joins machine h to the network served at socket and returns the
// connection, as a file to hand to the hypervisor (the caller closes it
// once the hypervisor holds its copy). When nothing answers at socket it
// calls start, which must start the network process (Serve) without
// waiting for it, and waits for the socket; it also starts one when the
// process it reached was on its way out. It gives up when ctx ends, or
// after 15 s when ctx has no deadline. A Hello the network refuses (a bad
// address, an SSH port it cannot listen on) is returned as an error
// naming the reason.
func Connect(ctx context.Context, socket string, h Hello, start func() error) (*os.File, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
	}
	started := false
	var last error
	for {
		c, err := dial(ctx, socket)
		if err == nil {
			f, refused, err := hello(c, h)
			if err == nil {
				return f, nil
			}
			if refused {
				return nil, err
			}
			// The process was exiting (it closes what it accepts then):
			// start another, which waits for the first to go.
			last, started = err, false
		} else {
			last = err
		}
		if !started {
			if err := start(); err != nil {
				return nil, fmt.Errorf("starting the machine network: %w", err)
			}
			started = true
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the machine network did not answer on %s: %w", socket, errors.Join(ctx.Err(), last))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func dial(ctx context.Context, socket string) (*net.UnixConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, err
	}
	return c.(*net.UnixConn), nil
}

// hello sends h on c and reads the reply. refused is true when the
// network answered with an error (trying again will not help).
func hello(c *net.UnixConn, h Hello) (f *os.File, refused bool, err error) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := writeMessage(c, h); err != nil {
		return nil, false, err
	}
	var r reply
	if err := readMessage(c, &r); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("the machine network closed the connection")
		}
		return nil, false, err
	}
	if r.Error != "" {
		return nil, true, fmt.Errorf("the machine network refused machine %s: %s", h.Name, r.Error)
	}
	c.SetDeadline(time.Time{})
	f, err = c.File()
	return f, false, err
}
