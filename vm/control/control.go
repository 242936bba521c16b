// Package control is the protocol between a machine's supervisor and its
// clients (the CLI and the dashboard, through vm.Manager), over the unix
// socket layout.Run.Control (mode 0600, in a 0700 directory).
//
// A client writes one JSON Request line; the supervisor answers with one
// JSON Response line. For OpAgent the connection then carries one guest
// agent call (guest/proto) spliced through to the guest. For OpWatch the
// supervisor keeps writing a Response line with the new Status every time
// the status changes, until either side closes. Errors travel as a code and
// a message (Error), so that errors.Is(err, ErrNotRunning) holds on the
// client side for an error the supervisor returned.
package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/vm/layout"
)

// Op is a control operation.
type Op string

// The control operations.
const (
	// OpStatus answers with the supervisor's Status.
	OpStatus Op = "status"
	// OpWatch answers with the Status now and again at every change.
	OpWatch Op = "watch"
	// OpAgent connects the caller to a new stream of the guest agent once
	// the agent is ready (waiting at most Request.Timeout).
	OpAgent Op = "agent"
	// OpStop powers the guest off (the VM is killed after
	// Request.Timeout) and answers once the VM has exited.
	OpStop Op = "stop"
	// OpReclaim asks the guest to give back its page cache above the
	// floor now, waits (at most Request.Timeout, default 10 s) until the
	// memory the VM holds on the host stops shrinking, and answers with
	// Response.Reclaim.
	OpReclaim Op = "reclaim"
)

// Request is one control request line.
type Request struct {
	Op Op `json:"op"`
	// Timeout bounds OpAgent (waiting for the agent), OpStop (waiting
	// for the guest to power off before killing it) and OpReclaim (waiting
	// for the host memory to settle), nanoseconds; zero means the
	// operation's default.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// Response is one control response line. Error is nil on success.
type Response struct {
	Error   *Error         `json:"error,omitempty"`
	Status  *Status        `json:"status,omitempty"`
	Reclaim *ReclaimReport `json:"reclaim,omitempty"`
	// Killed answers OpStop: the guest did not power off within the
	// request's timeout, so its VM was killed.
	Killed bool `json:"killed,omitempty"`
}

// ReclaimReport answers OpReclaim.
type ReclaimReport struct {
	// HostBefore and HostAfter are the host memory the machine held
	// before the reclaim and once it had settled, bytes: the VM process's
	// resident set (QEMU), or the supervisor's where the VM runs inside
	// it (vz; see vm.HostHeld for what that misses).
	HostBefore uint64 `json:"hostBefore"`
	HostAfter  uint64 `json:"hostAfter"`
	// Guest is what the agent did and the guest's memory before and
	// after.
	Guest *proto.ReclaimResult `json:"guest"`
	// Millis is how long the whole reclaim took, settling included.
	Millis int64 `json:"millis"`
	// BackMillis is how long until the host memory reached HostAfter:
	// Millis without the 2.5 s that confirm it stopped shrinking
	// (vm.SettleHeld).
	BackMillis int64 `json:"backMillis,omitempty"`
}

// Machine states, as Status.State and `machine ls` show them.
const (
	StateStopped  = "stopped"
	StateStarting = "starting"
	StateRunning  = "running"
	StateStopping = "stopping"
)

// Status is what a supervisor reports about its machine.
type Status struct {
	State   string    `json:"state"`
	Started time.Time `json:"started"`
	// IP is the guest's address, once the agent reported it: its DHCP
	// lease's, else its first IPv4 address.
	IP string `json:"ip,omitempty"`
	// Lease is the guest's DHCP lease as the agent last reported it.
	Lease *proto.Lease `json:"lease,omitempty"`
	// Accelerator is what runs the guest: "kvm" or "tcg" (QEMU), "hvf" (vz).
	Accelerator string `json:"accelerator,omitempty"`
	// Kernel is the release booted, e.g. 6.1.0-57-cloud-amd64.
	Kernel  string `json:"kernel,omitempty"`
	Backend string `json:"backend,omitempty"`
	// AgentReady is true while the guest agent answers.
	AgentReady bool `json:"agentReady"`
	// Stage says what a starting machine is doing, for people: "fetching
	// the kernel: 12.0 of 26.7 MB", "unpacking the image: 45%", …; ""
	// once the agent answers.
	Stage string `json:"stage,omitempty"`
	// Error says why a start failed (State is then StateStopped).
	Error string `json:"error,omitempty"`
	// PID is the supervisor's process; VMPID the VM's (0 when the VM runs
	// inside the supervisor).
	PID   int `json:"pid"`
	VMPID int `json:"vmPid,omitempty"`
	// SSHPort is the host loopback port forwarded to the guest's SSH
	// port, 0 for none.
	SSHPort int `json:"sshPort,omitempty"`
	// Mounts are the directories this boot shares.
	Mounts []ActiveMount `json:"mounts,omitempty"`
	// CPUs and Memory (bytes) are what this boot has: the configuration
	// the VM started with (a later `machine set` applies at the next
	// boot); 0 before the boot chose them.
	CPUs   int    `json:"cpus,omitempty"`
	Memory uint64 `json:"memory,omitempty"`
	// Ports are the host ports forwarded to the guest now, by guest
	// port: SSH, the published ones and those forwarded automatically.
	Ports []PortForward `json:"ports,omitempty"`
	// FileEvents is the state of the file-event bridge of this boot's
	// shares; nil while it is not running (file-events=off, nothing
	// shared, the agent not connected).
	FileEvents *FileEvents `json:"fileEvents,omitempty"`
	// Guest is what the agent reported, once it answered.
	Guest *GuestFacts `json:"guest,omitempty"`
}

// FileEvents is what the file-event bridge watches on the host.
type FileEvents struct {
	// Dirs is the number of host directories watched once the bridge
	// had walked the shares at the start.
	Dirs int `json:"dirs"`
	// Capped is true when the directory cap left some unwatched: their
	// changes do not reach the machine.
	Capped bool `json:"capped,omitempty"`
	// Cap is the most directories the bridge watches.
	Cap int `json:"cap"`
}

// ActiveMount is a shared directory as the current boot has it.
type ActiveMount struct {
	// Host is the absolute host directory, Guest the absolute path it is
	// mounted at in the machine.
	Host     string `json:"host"`
	Guest    string `json:"guest"`
	ReadOnly bool   `json:"readOnly,omitempty"`
	// FSType is "virtiofs" or "9p".
	FSType string `json:"fstype"`
}

// Kinds of PortForward.
const (
	// ForwardAuto: a port the guest listens on, forwarded automatically.
	ForwardAuto = "auto"
	// ForwardPublished: a port published with --publish.
	ForwardPublished = "published"
	// ForwardSSH: the machine's SSH port (see `machine ssh-config`).
	ForwardSSH = "ssh"
)

// PortForward is a host port forwarded to a guest port through the agent
// channel (package vm/portfwd).
type PortForward struct {
	// Kind is ForwardAuto, ForwardPublished or ForwardSSH.
	Kind string `json:"kind"`
	// Proto is "tcp".
	Proto string `json:"proto"`
	// GuestPort is the port in the machine; GuestAddr the address a
	// guest listener is bound to ("0.0.0.0", "::", "127.0.0.1", …; ""
	// for a published port or SSH).
	GuestPort int    `json:"guestPort"`
	GuestAddr string `json:"guestAddr,omitempty"`
	// HostPort is the host port; HostAddrs the host sockets listening,
	// as HOST:PORT ("127.0.0.1:8123", "[::1]:8123"); none when Error is
	// set.
	HostPort  int      `json:"hostPort"`
	HostAddrs []string `json:"hostAddrs,omitempty"`
	// Since is when the forward began.
	Since time.Time `json:"since"`
	// Note says why HostPort is not GuestPort for an automatic forward
	// (the host's port was taken, or needs privileges).
	Note string `json:"note,omitempty"`
	// Error says why a published port or SSH could not listen.
	Error string `json:"error,omitempty"`
}

// GuestFacts is what the agent last reported about the image's support
// for host integration; the supervisor keeps it in the machine directory
// so that a stopped machine can still say it.
type GuestFacts struct {
	// Sudo is false when the image has no sudo (no passwordless sudo for
	// the mapped user then).
	Sudo bool `json:"sudo"`
	// SSHD is false when the image has no SSH server.
	SSHD bool `json:"sshd"`
	// Problems are setup steps that failed at the latest boot (user,
	// mounts, SSH key), as /init reported them.
	Problems []string `json:"problems,omitempty"`
	// DiskCheck is what /init did to the root disk before mounting it at
	// the latest boot (format, e2fsck).
	DiskCheck *proto.DiskCheck `json:"diskCheck,omitempty"`
}

// Error is an error that crosses the control socket: a Code that clients
// match with errors.Is against the sentinels below, and a message for
// people.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// Code classifies an Error.
type Code string

// The error codes.
const (
	CodeNotRunning   Code = "not-running"
	CodeStopping     Code = "stopping"
	CodeAgentTimeout Code = "agent-timeout"
	CodeStartFailed  Code = "start-failed"
	CodeBadRequest   Code = "bad-request"
	CodeInternal     Code = "internal"
)

// Sentinels for errors.Is; an *Error matches the one of its Code.
var (
	// ErrNotRunning: the machine is stopped, or no supervisor runs.
	ErrNotRunning = errors.New("machine is not running")
	// ErrStopping: the machine is being stopped.
	ErrStopping = errors.New("machine is stopping")
	// ErrAgentTimeout: the guest agent did not become ready in time.
	ErrAgentTimeout = errors.New("guest agent not ready")
	// ErrStartFailed: the boot failed; the message says why.
	ErrStartFailed = errors.New("start failed")
	// ErrBadRequest: the supervisor did not understand the request.
	ErrBadRequest = errors.New("bad control request")
)

var sentinels = map[Code]error{
	CodeNotRunning:   ErrNotRunning,
	CodeStopping:     ErrStopping,
	CodeAgentTimeout: ErrAgentTimeout,
	CodeStartFailed:  ErrStartFailed,
	CodeBadRequest:   ErrBadRequest,
}

// Errorf returns an *Error with code c and a formatted message.
func Errorf(c Code, format string, args ...any) *Error {
	return &Error{Code: c, Message: fmt.Sprintf(format, args...)}
}

// Error returns the message.
func (e *Error) Error() string { return e.Message }

// Is reports whether target is the sentinel of e's code.
func (e *Error) Is(target error) bool { return sentinels[e.Code] == target && target != nil }

// Dial connects to the control socket at path and sends req; it returns
// the connection, positioned after the first response line, and that
// response. A socket that does not exist or refuses connections (no
// supervisor) gives an error wrapping ErrNotRunning. A response carrying
// an Error is returned as that error, with the connection closed.
func Dial(ctx context.Context, path string, req Request) (net.Conn, *Response, error) {
	c, resp, err := dial(ctx, path, req)
	if err != nil {
		return nil, nil, err
	}
	return c, resp, nil
}

// dial is Dial returning the buffered connection, whose reader Watch
// reads further lines from.
func dial(ctx context.Context, path string, req Request) (*bufferedConn, *Response, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, nil, fmt.Errorf("%w (no supervisor answers at %s)", ErrNotRunning, path)
		}
		return nil, nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if err := proto.WriteLine(c, req); err != nil {
		c.Close()
		if closedByPeer(err) {
			return nil, nil, fmt.Errorf("%w: the supervisor closed the connection", ErrNotRunning)
		}
		return nil, nil, err
	}
	bc := &bufferedConn{Conn: c, br: bufio.NewReader(c)}
	var resp Response
	if err := readLine(bc.br, &resp); err != nil {
		c.Close()
		if closedByPeer(err) {
			return nil, nil, fmt.Errorf("%w: the supervisor closed the connection", ErrNotRunning)
		}
		return nil, nil, err
	}
	c.SetDeadline(time.Time{})
	if resp.Error != nil {
		c.Close()
		return nil, nil, resp.Error
	}
	return bc, &resp, nil
}

// bufferedConn is a connection whose reads drain br first: the bytes
// that arrived with the response line and were read along with it (the
// agent's, for OpAgent), then the connection's.
type bufferedConn struct {
	net.Conn
	br *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.br.Read(p) }

// readLine reads one JSON line of at most 64 KiB into v from br.
func readLine(br *bufio.Reader, v any) error {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > 1<<16 {
			return fmt.Errorf("%w: control line too long", ErrBadRequest)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return err
		}
		if err := json.Unmarshal(line, v); err != nil {
			return fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
		return nil
	}
}

// closedByPeer reports whether err means the supervisor closed the
// connection: an end of file, or a reset or broken pipe when it exited
// with the connection not yet accepted or not yet read.
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// Call is Dial for a request whose one response is the whole answer.
func Call(ctx context.Context, path string, req Request) (*Response, error) {
	c, resp, err := Dial(ctx, path, req)
	if err != nil {
		return nil, err
	}
	c.Close()
	return resp, nil
}

// Watch connects to the control socket at path and calls fn with every
// Status the supervisor sends until fn returns false, ctx ends, or the
// connection ends. It returns nil when fn returned false, ctx's error, or
// an error wrapping ErrNotRunning when the supervisor went away.
func Watch(ctx context.Context, path string, fn func(*Status) bool) error {
	c, resp, err := dial(ctx, path, Request{Op: OpWatch})
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	for {
		if resp.Status != nil && !fn(resp.Status) {
			return nil
		}
		resp = &Response{}
		if err := readLine(c.br, resp); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: the supervisor went away", ErrNotRunning)
		}
		if resp.Error != nil {
			return resp.Error
		}
	}
}

// ReadLine reads one JSON line into v, up to and including '\n', one byte
// at a time so that nothing after the line is consumed: the supervisor
// reads a request this way, since what follows it belongs to the op.
// Lines are limited to 64 KiB. (Dial, whose caller gets the connection
// back, reads its response through a buffer it hands on instead.)
func ReadLine(c io.Reader, v any) error {
	var line []byte
	b := make([]byte, 1)
	for len(line) < 1<<16 {
		if _, err := c.Read(b); err != nil {
			return err
		}
		if b[0] == '\n' {
			if err := json.Unmarshal(line, v); err != nil {
				return fmt.Errorf("%w: %v", ErrBadRequest, err)
			}
			return nil
		}
		line = append(line, b[0])
	}
	return fmt.Errorf("%w: control line too long", ErrBadRequest)
}

// WriteResponse writes r as one JSON line.
func WriteResponse(w io.Writer, r Response) error { return proto.WriteLine(w, r) }

// Listen listens on a unix socket at path that only the current user can
// connect to (layout.ListenUnix: mode 0600; its directory must be 0700). A
// stale socket file at path is replaced.
func Listen(path string) (net.Listener, error) {
	ln, err := layout.ListenUnix(path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}
