package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/guest/tarcopy"
)

// GuestError is a failure the guest reported during a copy; its message
// names the guest path. Errors of other types happened on the host (or on
// the channel).
type GuestError struct{ Msg string }

// Error returns the guest's message.
func (e *GuestError) Error() string { return e.Msg }

// Progress is called with the archive bytes moved so far (tar headers and
// padding included, so slightly more than the files' total).
type Progress func(done int64)

// counter counts bytes through Read or Write and reports them.
type counter struct {
	r    io.Reader
	w    io.Writer
	n    int64
	last time.Time
	fn   Progress
}

func (c *counter) add(n int) {
	c.n += int64(n)
	if c.fn != nil && time.Since(c.last) > 100*time.Millisecond {
		c.last = time.Now()
		c.fn(c.n)
	}
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.add(n)
	return n, err
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.add(n)
	return n, err
}

func (c *counter) finish() {
	if c.fn != nil {
		c.fn(c.n)
	}
}

// CopyIn copies the host path src (a file, symlink or directory tree) to
// the guest path req.Path (see proto.CopyRequest for where it lands and
// as which user; CopyIn fills in Base and IsDir). onStart, if set, gets the
// bytes of file content about to be sent, and progress (may be nil) the
// bytes sent so far. Cancelling ctx aborts the copy. A *GuestError is the
// guest's failure; other errors are the host's (naming src) or the
// channel's.
func (c *Client) CopyIn(ctx context.Context, src string, req proto.CopyRequest, onStart func(size int64), progress Progress) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	size, err := tarcopy.Size(src)
	if err != nil {
		return err
	}
	req.Base, req.IsDir = filepath.Base(filepath.Clean(src)), fi.IsDir()
	conn, br, _, done, err := c.copyCall(ctx, proto.OpCopyIn, &req, 4096)
	if err != nil {
		return err
	}
	defer done()
	if onStart != nil {
		onStart(size)
	}
	w := &proto.DataWriter{W: bufio.NewWriterSize(conn, proto.MaxFrame+5)}
	cw := &counter{w: w, fn: progress}
	werr := tarcopy.Write(cw, src)
	cw.finish()
	if err := w.End(werr); err != nil {
		return ctxErr(ctx, fmt.Errorf("agent copy: %w", err))
	}
	if err := w.W.(*bufio.Writer).Flush(); err != nil {
		return ctxErr(ctx, fmt.Errorf("agent copy: %w", err))
	}
	var end proto.Response
	if err := proto.ReadLine(br, &end); err != nil {
		return ctxErr(ctx, fmt.Errorf("agent copy: %w", err))
	}
	if werr != nil {
		return werr
	}
	if end.Error != "" {
		return &GuestError{Msg: end.Error}
	}
	return nil
}

// CopyOut copies the guest path req.Path to the host path dst, placed as
// tarcopy.Target says. onStart and progress are as for CopyIn. The copy is
// unpacked through an os.Root at its host directory, so nothing it holds
// is written outside dst (see tarcopy.Extract). Errors are as for CopyIn.
func (c *Client) CopyOut(ctx context.Context, req proto.CopyRequest, dst string, onStart func(size int64), progress Progress) error {
	_, br, resp, done, err := c.copyCall(ctx, proto.OpCopyOut, &req, 256<<10)
	if err != nil {
		return err
	}
	defer done()
	if resp.Copy == nil {
		return errors.New("agent copy: empty answer")
	}
	dir, name, err := tarcopy.Target(dst, path.Base(path.Clean(req.Path)), resp.Copy.IsDir)
	if err != nil {
		return err
	}
	if onStart != nil {
		onStart(resp.Copy.Size)
	}
	data := &proto.DataReader{R: br}
	cr := &counter{r: data, fn: progress}
	err = tarcopy.Extract(cr, dir, name, tarcopy.Options{})
	cr.finish()
	var end *proto.EndError
	if errors.As(err, &end) {
		return &GuestError{Msg: end.Msg}
	}
	if err != nil {
		return ctxErr(ctx, err)
	}
	// The archive's end blocks came; wait for the guest's FrameEnd.
	if _, err := io.Copy(io.Discard, data); err != nil {
		if errors.As(err, &end) {
			return &GuestError{Msg: end.Msg}
		}
		return ctxErr(ctx, fmt.Errorf("agent copy: %w", err))
	}
	return nil
}

// copyCall opens a stream for a copy op, sends req and reads the guest's
// first answer (an error, or what it is about to send) through a reader
// of bufSize bytes. Until done is called (it closes the stream), ending
// ctx ends the stream's reads and writes.
func (c *Client) copyCall(ctx context.Context, op proto.Op, req *proto.CopyRequest, bufSize int) (conn net.Conn, br *bufio.Reader, resp *proto.Response, done func(), err error) {
	conn, err = c.dial(ctx)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("agent copy: opening stream: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	done = func() { stop(); conn.Close() }
	fail := func(err error) (net.Conn, *bufio.Reader, *proto.Response, func(), error) {
		done()
		return nil, nil, nil, nil, err
	}
	if err := proto.WriteLine(conn, proto.Request{Op: op, Copy: req}); err != nil {
		return fail(ctxErr(ctx, fmt.Errorf("agent copy: %w", err)))
	}
	br = bufio.NewReaderSize(conn, bufSize)
	resp = &proto.Response{}
	if err := proto.ReadLine(br, resp); err != nil {
		return fail(ctxErr(ctx, fmt.Errorf("agent copy: %w", err)))
	}
	if resp.Error != "" {
		return fail(&GuestError{Msg: resp.Error})
	}
	return conn, br, resp, done, nil
}
