package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/machinetop/machinetop/guest/proto"
)

// stdinChunk is the largest stdin frame payload the client sends (bytes).
const stdinChunk = 32 << 10

// killGrace is how long a cancelled call waits for the exit status after
// sending SIGKILL before it drops the stream.
const killGrace = 5 * time.Second

// StartError reports a process the guest could not start (for example the
// program was not found). Status holds the code a shell would report: 127
// when the program does not exist, 126 when it cannot be run.
type StartError struct {
	Status proto.ExitStatus
}

// Error returns the guest's reason, prefixed "agent exec: ".
func (e *StartError) Error() string { return "agent exec: " + e.Status.Error }

// Process is a process running in the guest, started by Client.Start.
type Process struct {
	// PID is the process's PID in the guest.
	PID int

	conn net.Conn
	wmu  sync.Mutex // one frame at a time on conn
	done chan struct{}

	status   proto.ExitStatus
	err      error
	ctx      context.Context
	stop     func() bool
	waitOnce sync.Once
}

// Exec runs a process in the guest and waits for it to end. stdin is
// copied to the process, and its end (io.EOF, or any read error) closes the
// process's stdin; a nil stdin closes it at once. stdout and stderr receive
// the process's output (nil discards it); with req.TTY all terminal output
// goes to stdout. Window sizes received on resize (may be nil) resize the
// guest's PTY. Signals: cancelling ctx sends SIGKILL to the process and
// returns its status with ctx's error; to send other signals use Start and
// Process.Signal.
//
// A process that could not start is reported as a status with Error set and
// Code 127 or 126 and a nil error; the error is non-nil when the call
// itself failed (stream, protocol, or ctx).
//
// Exec does not wait for a goroutine blocked reading stdin (for example
// os.Stdin) after the process ended.
func (c *Client) Exec(ctx context.Context, req *proto.ExecRequest, stdin io.Reader, stdout, stderr io.Writer, resize <-chan proto.WindowSize) (proto.ExitStatus, error) {
	p, err := c.Start(ctx, req, stdin, stdout, stderr)
	if err != nil {
		var se *StartError
		if errors.As(err, &se) {
			return se.Status, nil
		}
		return proto.ExitStatus{}, err
	}
	if resize != nil {
		go func() {
			for {
				select {
				case ws, ok := <-resize:
					if !ok {
						return
					}
					p.Resize(ws)
				case <-p.done:
					return
				}
			}
		}()
	}
	return p.Wait()
}

// Start starts a process in the guest and returns once the guest reported
// its PID; stdin, stdout and stderr are handled as by Exec. Cancelling ctx
// before the process ends sends it SIGKILL. It returns a *StartError when
// the guest could not start the process, and another error when the call
// failed.
func (c *Client) Start(ctx context.Context, req *proto.ExecRequest, stdin io.Reader, stdout, stderr io.Writer) (*Process, error) {
	if req == nil {
		return nil, errors.New("agent exec: nil request")
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("agent exec: opening stream: %w", err)
	}
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	cancelStart := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	br := bufio.NewReader(conn)
	pid, err := startCall(conn, br, req, stdout, stderr)
	if !cancelStart() {
		conn.Close()
		return nil, ctx.Err()
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	p := &Process{PID: pid, conn: conn, done: make(chan struct{}), ctx: ctx}
	p.stop = context.AfterFunc(ctx, func() {
		p.Signal(int(syscall.SIGKILL))
		select {
		case <-p.done:
		case <-time.After(killGrace):
			conn.Close()
		}
	})
	go p.readFrames(br, stdout, stderr)
	go p.copyStdin(stdin)
	return p, nil
}

// startCall sends the request and reads the guest's first answer: a Started
// frame, an Exit frame (the process could not start) or a Response line (a
// malformed request). Output frames before Started (the guest telling a
// terminal what the process waits for) go to stdout and stderr.
func startCall(conn net.Conn, br *bufio.Reader, req *proto.ExecRequest, stdout, stderr io.Writer) (int, error) {
	if err := proto.WriteLine(conn, proto.Request{Op: proto.OpExec, Exec: req}); err != nil {
		return 0, fmt.Errorf("agent exec: %w", err)
	}
	first, err := br.Peek(1)
	if err != nil {
		return 0, fmt.Errorf("agent exec: %w", err)
	}
	if first[0] == '{' {
		var resp proto.Response
		if err := proto.ReadLine(br, &resp); err != nil {
			return 0, fmt.Errorf("agent exec: %w", err)
		}
		return 0, fmt.Errorf("agent exec: %s", resp.Error)
	}
	t, payload, err := proto.ReadFrame(br)
	for err == nil && (t == proto.FrameStdout || t == proto.FrameStderr) {
		w := stdout
		if t == proto.FrameStderr {
			w = stderr
		}
		w.Write(payload)
		t, payload, err = proto.ReadFrame(br)
	}
	if err != nil {
		return 0, fmt.Errorf("agent exec: %w", err)
	}
	switch t {
	case proto.FrameStarted:
		var s proto.Started
		if err := json.Unmarshal(payload, &s); err != nil {
			return 0, fmt.Errorf("agent exec: bad started frame: %w", err)
		}
		return s.PID, nil
	case proto.FrameExit:
		var st proto.ExitStatus
		if err := json.Unmarshal(payload, &st); err != nil {
			return 0, fmt.Errorf("agent exec: bad exit frame: %w", err)
		}
		if st.Error == "" {
			st.Error = "process did not start"
		}
		return 0, &StartError{Status: st}
	default:
		return 0, fmt.Errorf("agent exec: unexpected frame type %d before start", t)
	}
}

// ErrLost is wrapped by the error of a process whose stream ended before
// its exit status arrived: the connection to the agent (or to the
// supervisor that relays it) broke while the process ran, so it may still
// be running in the guest.
var ErrLost = errors.New("stream ended before exit")

func (p *Process) readFrames(br *bufio.Reader, stdout, stderr io.Writer) {
	defer close(p.done)
	defer p.conn.Close()
	var outErr error // a failing writer; output is discarded from then on
	for {
		t, payload, err := proto.ReadFrame(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			p.err = fmt.Errorf("agent exec: %w: %w", ErrLost, err)
			return
		}
		switch t {
		case proto.FrameStdout, proto.FrameStderr:
			w := stdout
			if t == proto.FrameStderr {
				w = stderr
			}
			if outErr == nil {
				_, outErr = w.Write(payload)
			}
		case proto.FrameExit:
			if err := json.Unmarshal(payload, &p.status); err != nil {
				p.err = fmt.Errorf("agent exec: bad exit frame: %w", err)
			}
			return
		}
	}
}

func (p *Process) copyStdin(stdin io.Reader) {
	if stdin == nil {
		p.writeFrame(proto.FrameCloseStdin, nil)
		return
	}
	buf := make([]byte, stdinChunk)
	for {
		n, err := stdin.Read(buf)
		if n > 0 {
			if p.exited() || p.writeFrame(proto.FrameStdin, buf[:n]) != nil {
				return
			}
		}
		if err != nil {
			if !p.exited() {
				p.writeFrame(proto.FrameCloseStdin, nil)
			}
			return
		}
	}
}

func (p *Process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *Process) writeFrame(t proto.FrameType, payload []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return proto.WriteFrame(p.conn, t, payload)
}

func (p *Process) writeJSON(t proto.FrameType, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return p.writeFrame(t, b)
}

// Signal sends signal number sig (signal(7), e.g. 2 for SIGINT) to the
// process, or to its process group when it has a TTY. It returns the
// stream's write error.
func (p *Process) Signal(sig int) error {
	return p.writeJSON(proto.FrameSignal, proto.Signal{Number: sig})
}

// Resize sets the size of the process's PTY; it does nothing useful for a
// process without a TTY. It returns the stream's write error.
func (p *Process) Resize(ws proto.WindowSize) error {
	return p.writeJSON(proto.FrameResize, ws)
}

// Done is closed when the process has ended or the stream broke.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits for the process to end and returns its exit status. The error
// is non-nil when the stream broke before the exit status arrived, or when
// the context given to Start was cancelled (the status then reports the
// SIGKILL, if it arrived).
func (p *Process) Wait() (proto.ExitStatus, error) {
	<-p.done
	p.waitOnce.Do(func() {
		// stop reports false when ctx was cancelled while the process
		// ran, so the SIGKILL came from us.
		if !p.stop() && p.err == nil {
			p.err = p.ctx.Err()
		}
	})
	return p.status, p.err
}
