// Package proto is the wire protocol between machinetop on the host and the
// guest agent inside a machine.
//
// Transport: one byte stream (virtio-serial on QEMU, vsock on vz) carrying a
// yamux session (github.com/hashicorp/yamux). Before yamux starts, the host
// writes Hello followed by a nonce and "\n"; the guest, which discards any
// bytes until it sees Hello, answers Ready, the same nonce, and "\n". Both
// sides then run yamux over the stream, the guest as the yamux server. The
// handshake lets either side discard stale bytes left in the channel by an
// earlier connection. The host resends Hello until Ready arrives, so the
// guest drops Hello lines with its nonce that precede the first yamux byte,
// and answers a Hello with another nonce there in place (it had answered a
// stale Hello). See handshake.go.
//
// Every yamux stream carries one call. The host (client) writes a Request as
// one line of JSON. For OpExec the stream then carries Frames in both
// directions until the guest sends FrameExit: first FrameStarted, or, when
// the process could not start, a lone FrameExit with ExitStatus.Error set
// and Code 127 (program not found) or 126 (could not run it), as shells
// report them. FrameStarted may take seconds after a boot: the guest holds
// the process until the image's init accepts requests (see
// ExecRequest.Immediate), and with TTY it may send FrameStdout before
// FrameStarted to say so on the terminal. OpPorts streams Listeners
// lines until the host closes the stream; OpDial answers a Response line
// and then carries a TCP connection's bytes (see DialRequest). For every
// other operation the guest answers with one line of JSON, a Response,
// and closes the stream.
package proto

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Hello and Ready open the handshake described in the package comment.
const (
	Hello = "MACHINETOP-HELLO "
	Ready = "MACHINETOP-READY "
)

// AgentStarted is the line an agent writes when it opens a reconnecting channel
// (a virtio-serial port) for the first time since it started. A host that
// still holds a session with an earlier agent process (one that was
// killed; a virtio-serial port does not tell the host its guest end
// closed) reads it as a yamux frame with a bad version byte, which ends
// that session at once, so the host reconnects instead of waiting for its
// keepalive to time out. A host in the handshake discards it.
const AgentStarted = "MACHINETOP-STARTED\n"

// PortName is the virtio-serial port name the guest looks for in
// /sys/class/virtio-ports/*/name; VsockPort is the vsock port the guest agent
// listens on where the host has vsock (vz).
const (
	PortName  = "machinetop.agent"
	VsockPort = 1024
)

// Op names a call.
type Op string

// The calls the agent serves.
const (
	OpPing     Op = "ping"     // Response.Info
	OpExec     Op = "exec"     // Request.Exec; frames follow
	OpMetrics  Op = "metrics"  // Response.Metrics
	OpNetwork  Op = "network"  // Response.Addresses and Response.Lease
	OpShutdown Op = "shutdown" // Request.Shutdown; the guest answers, then powers off or reboots
	OpSetTime  Op = "settime"  // Request.UnixNano: set the guest clock
	OpTime     Op = "time"     // Response.UnixNano: read the guest clock
	OpCopyIn   Op = "copyin"   // Request.Copy; tar frames from the host follow (see CopyRequest)
	OpCopyOut  Op = "copyout"  // Request.Copy; Response.Copy, then tar frames to the host
	OpPorts    Op = "ports"    // Listeners lines from the guest until the host closes the stream
	OpDial     Op = "dial"     // Request.Dial; a Response line, then the connection's bytes
	OpReclaim  Op = "reclaim"  // Request.Reclaim: set the reclaim mode and/or reclaim now; Response.Reclaim
	// OpFileEvents: Request.FileEvents; the guest answers a Response line
	// (Error when it cannot replay), then the host sends FrameFileEvents
	// frames until it closes the stream.
	OpFileEvents Op = "fileevents"
)

// Request is the first line written on every stream.
type Request struct {
	Op       Op              `json:"op"`
	Exec     *ExecRequest    `json:"exec,omitempty"`
	Shutdown *ShutdownArgs   `json:"shutdown,omitempty"`
	UnixNano int64           `json:"unixNano,omitempty"`
	Copy     *CopyRequest    `json:"copy,omitempty"`
	Dial     *DialRequest    `json:"dial,omitempty"`
	Reclaim  *ReclaimRequest `json:"reclaim,omitempty"`
	// FileEvents opens the host's file-event stream (OpFileEvents).
	FileEvents *FileEventsRequest `json:"fileEvents,omitempty"`
}

// DialRequest is OpDial: the agent connects to a TCP port inside the
// guest and answers a Response line (Error when the connection was
// refused or failed); after a success the stream carries the
// connection's bytes both ways, unframed. Closing the stream for writing
// (yamux's Close is a half-close) shuts the guest connection down for
// writing, and the guest's end of file closes the stream the same way, so
// protocols that half-close work.
type DialRequest struct {
	// Port is the guest TCP port, 1..65535.
	Port int `json:"port"`
	// Addr is the address a guest listener is bound to, as Listener.Addr
	// reports it: a wildcard ("0.0.0.0", "::") or "" is dialled on
	// loopback ("::" and "" try 127.0.0.1 and ::1), any other address as
	// it is.
	Addr string `json:"addr,omitempty"`
}

// Listeners is one line of an OpPorts stream: every listening TCP socket
// of the guest at that moment. The agent sends one at once and another
// each time the set changes (it checks about twice a second), so each
// line replaces the one before.
type Listeners struct {
	Listeners []Listener `json:"listeners"`
}

// Listener is one listening TCP socket in the guest, as the kernel lists
// it in /proc/net/tcp and /proc/net/tcp6.
type Listener struct {
	// Addr is the local address it is bound to, in Go's text form:
	// "0.0.0.0" or "::" for any address, "127.0.0.1", "::1", or another.
	Addr string `json:"addr"`
	// Port is the TCP port, 1..65535.
	Port int `json:"port"`
	// IPv6 is true for an AF_INET6 socket (which may take IPv4 too).
	IPv6 bool `json:"ipv6,omitempty"`
}

// ReclaimRequest is OpReclaim's argument: Mode, when set, becomes the
// agent's idle reclaim policy ("off", "gradual" or "aggressive", package
// guest/reclaim) from now on; Now reclaims the page cache above the floor
// at once (`machine reclaim`), then compacts memory.
type ReclaimRequest struct {
	Mode string `json:"mode,omitempty"`
	Now  bool   `json:"now,omitempty"`
}

// ReclaimResult answers OpReclaim: the mode in force and, for Now, the
// guest's memory before and after, and how it reclaimed.
type ReclaimResult struct {
	Mode string `json:"mode"`
	// Method is "memory.reclaim" (cgroup v2 on the root cgroup),
	// "drop_caches" (the kernel has no memory.reclaim) or "" (nothing was
	// above the floor, or Now was false).
	Method string `json:"method,omitempty"`
	// Requested is the bytes asked of memory.reclaim.
	Requested uint64   `json:"requested,omitempty"`
	Before    GuestMem `json:"before"`
	After     GuestMem `json:"after"`
	Millis    int64    `json:"millis"`
}

// GuestMem is the guest's memory at one moment, bytes (/proc/meminfo).
type GuestMem struct {
	// Used is MemTotal less MemAvailable.
	Used uint64 `json:"used"`
	// Cache is the file-backed page cache, Active(file) + Inactive(file):
	// what reclaim can give back without swap.
	Cache uint64 `json:"cache"`
}

// FileEventsRequest opens the stream of host file changes in shared
// directories, which the guest replays on the mounts so that inotify
// watchers in the guest see them (package guest/fsreplay says which
// inotify events each change produces).
type FileEventsRequest struct {
	// Mounts are the guest mount points (absolute) of the shares the
	// host watches; FileEvent.Mount indexes them.
	Mounts []string `json:"mounts"`
}

// FileEvent kinds.
const (
	FileChanged = "changed" // the path exists: created, written, replaced, renamed to, chmod
	FileRemoved = "removed" // the path was deleted or renamed away
)

// FileEvent is one logical host change; a FrameFileEvents frame carries
// a JSON array of them, in the order the host saw them.
type FileEvent struct {
	// Mount indexes FileEventsRequest.Mounts.
	Mount int `json:"m"`
	// Path is slash-separated and relative to the mount, without "." or
	// ".." elements.
	Path string `json:"p"`
	// Kind is FileChanged or FileRemoved.
	Kind string `json:"k"`
	// Dir is true when the path is (changed) or was (removed) a
	// directory.
	Dir bool `json:"d,omitempty"`
	// UnixNano is when the host's window of events for it closed (host
	// clock), for latency figures.
	UnixNano int64 `json:"t,omitempty"`
}

// CopyRequest is the guest side of a `machine cp`. The archive is a tar
// stream in package tarcopy's format, carried as FrameData frames and
// ended by FrameEnd.
//
// OpCopyIn: the guest resolves where the copy lands (tarcopy.Target of
// Path, Base and IsDir) and answers a Response line (Error when Path cannot
// take the copy); the host then sends the archive; the guest unpacks it as
// it arrives and, after the host's FrameEnd, answers a second Response
// line (Error when unpacking failed).
//
// OpCopyOut: the guest answers a Response line with Copy set (or Error
// when Path cannot be read), then sends the archive of Path and a FrameEnd
// whose CopyEnd says whether it was complete.
//
// Files are read and written with the filesystem rights of UID and GID (or
// User, as in ExecRequest) and that user's groups; as root (UID 0) the
// archive's owners are applied on OpCopyIn.
type CopyRequest struct {
	// Path is the absolute guest path: the source (OpCopyOut) or the
	// destination (OpCopyIn).
	Path string `json:"path"`
	UID  uint32 `json:"uid"`
	GID  uint32 `json:"gid"`
	User string `json:"user,omitempty"`
	// Base is the source's base name and IsDir whether it is a directory
	// (OpCopyIn), for tarcopy.Target.
	Base  string `json:"base,omitempty"`
	IsDir bool   `json:"isDir,omitempty"`
}

// CopyInfo answers OpCopyOut before the archive: the regular-file bytes
// it will carry (tarcopy.Size) and whether the source is a directory.
type CopyInfo struct {
	Size  int64 `json:"size"`
	IsDir bool  `json:"isDir,omitempty"`
}

// CopyEnd is FrameEnd's JSON payload: Error is empty when the archive
// before it is complete.
type CopyEnd struct {
	Error string `json:"error,omitempty"`
}

// ShutdownArgs selects poweroff (the default) or reboot.
type ShutdownArgs struct {
	Reboot bool `json:"reboot,omitempty"`
}

// ExecRequest starts a process in the guest.
type ExecRequest struct {
	// Argv is the program and its arguments; Argv[0] is looked up in PATH
	// (the PATH in Env, else a default PATH). Empty Argv means the user's
	// login shell as a login shell ("-sh").
	Argv []string `json:"argv,omitempty"`
	// Env entries are KEY=VALUE; they are added to a minimal default
	// environment (PATH, HOME, USER, LOGNAME, SHELL, TERM when TTY).
	Env []string `json:"env,omitempty"`
	// Dir is the working directory; empty means the user's home directory
	// (or / when it does not exist).
	Dir string `json:"dir,omitempty"`
	// UID and GID the process runs as. Supplementary groups are those of
	// the user with that UID in the guest's /etc/group, if any.
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
	// User, when set, names the account to run as instead of UID and GID:
	// a user name from the guest's /etc/passwd (its uid and primary gid),
	// or a numeric "UID" or "UID:GID".
	User string `json:"user,omitempty"`
	// TTY asks for a PTY: stdout carries the terminal output, stderr is
	// unused, and Rows/Cols give the initial window size in character cells.
	TTY  bool   `json:"tty,omitempty"`
	Rows uint16 `json:"rows,omitempty"`
	Cols uint16 `json:"cols,omitempty"`
	// Term is the TERM value for a TTY session (default "xterm-256color").
	Term string `json:"term,omitempty"`
	// Immediate starts the process at once. Without it, while the
	// image's init is still starting (Info.InitReady false) the guest
	// holds the process until the init accepts requests (systemd's bus,
	// see package guest/ready), at most until a bound after boot; a
	// process started after the bound passed with the init still not
	// ready gets a line on its stderr (its terminal with TTY) saying so.
	// Stdin and resizes sent meanwhile reach the process once it runs;
	// signals sent before FrameStarted are dropped, and closing the
	// stream cancels the start.
	Immediate bool `json:"immediate,omitempty"`
}

// Response answers every operation but OpExec (and an OpExec request that is
// malformed, with Error set and no frames following).
type Response struct {
	// Error is empty on success; otherwise a message for the user.
	Error     string    `json:"error,omitempty"`
	Info      *Info     `json:"info,omitempty"`
	Metrics   *Metrics  `json:"metrics,omitempty"`
	Addresses []Address `json:"addresses,omitempty"`
	// Lease answers OpNetwork with the guest's DHCP lease; nil when the
	// guest has none (no DHCP server answered).
	Lease *Lease `json:"lease,omitempty"`
	// UnixNano answers OpTime: the guest's CLOCK_REALTIME, nanoseconds
	// since the Unix epoch.
	UnixNano int64 `json:"unixNano,omitempty"`
	// Copy answers OpCopyOut.
	Copy *CopyInfo `json:"copy,omitempty"`
	// Reclaim answers OpReclaim.
	Reclaim *ReclaimResult `json:"reclaim,omitempty"`
}

// Info describes the agent and the guest it runs in.
type Info struct {
	Version   string `json:"version"`
	Kernel    string `json:"kernel"` // uname -r
	Hostname  string `json:"hostname"`
	PID1      string `json:"pid1"`      // the executable PID 1 runs, e.g. /lib/systemd/systemd, or "agent"
	Populated bool   `json:"populated"` // the root disk holds the image's files
	// BootedUnixNano is when the guest kernel started (host wall clock as
	// seen by the guest), for uptime.
	BootedUnixNano int64 `json:"bootedUnixNano"`
	// Sudo is true when the image has sudo (/usr/bin/sudo or /bin/sudo).
	Sudo bool `json:"sudo"`
	// SSHD is true when the image has an SSH server (/usr/sbin/sshd).
	SSHD bool `json:"sshd"`
	// Setup is what /init reported about this boot's setup (user,
	// mounts, SSH key); nil when it wrote no report.
	Setup *SetupReport `json:"setup,omitempty"`
	// Init is the image's init system whose readiness commands wait for:
	// "systemd", "openrc", "runit", or "" when there is nothing to wait
	// for (no init, busybox init, sysvinit).
	Init string `json:"init,omitempty"`
	// InitReady is true once Init accepts requests (for systemd: its bus
	// is up), so that OpExec processes start at once; always true when
	// Init is "".
	InitReady bool `json:"initReady"`
}

// Metrics is a sample of the guest's resource use. Memory and disk figures
// are bytes; CPUPercent is 0..100*NumCPU over the interval since the
// previous sample taken by the agent (the first call, and one over 10 s
// after the previous, measures over 200 ms).
type Metrics struct {
	MemTotal     uint64 `json:"memTotal"`
	MemUsed      uint64 `json:"memUsed"`
	MemAvailable uint64 `json:"memAvailable"`
	// MemCache is the file-backed page cache (Active(file) +
	// Inactive(file)): memory the guest does not need and reclaim can
	// return to the host. MemAvailable counts most of it as available,
	// so it is mostly outside MemUsed.
	MemCache uint64 `json:"memCache"`
	// ReclaimMode is the agent's idle reclaim policy in force.
	ReclaimMode string     `json:"reclaimMode,omitempty"`
	CPUPercent  float64    `json:"cpuPercent"`
	NumCPU      int        `json:"numCPU"`
	DiskTotal   uint64     `json:"diskTotal"` // root filesystem
	DiskUsed    uint64     `json:"diskUsed"`
	Load        [3]float64 `json:"load"`
	UptimeSec   float64    `json:"uptimeSec"` // seconds since guest boot

	// Network totals since boot over every interface but loopback
	// (/proc/net/dev), bytes.
	NetRxBytes uint64 `json:"netRxBytes"`
	NetTxBytes uint64 `json:"netTxBytes"`
}

// Address is one IP address of a guest network interface.
type Address struct {
	Interface string `json:"interface"`
	CIDR      string `json:"cidr"` // e.g. "10.0.2.15/24"
	IPv6      bool   `json:"ipv6,omitempty"`
}

// Lease is the DHCPv4 lease (RFC 2131) the guest configured its network
// from. Times are the guest's wall clock when the agent answered,
// converted from the guest's boot clock (so a clock set since does not
// skew them).
type Lease struct {
	Interface string `json:"interface"`
	// Address is the leased address with the subnet's prefix length,
	// e.g. "10.0.2.15/24".
	Address string `json:"address"`
	// Gateway is the default router (option 3), "" for none.
	Gateway string `json:"gateway,omitempty"`
	// DNS are the name servers (option 6).
	DNS []string `json:"dns,omitempty"`
	// Server is the DHCP server's identifier (option 54).
	Server string `json:"server"`
	// Obtained is when the lease was got or last renewed; Renew when the
	// agent renews it next (T1); Expires when it ends.
	Obtained time.Time `json:"obtained"`
	Renew    time.Time `json:"renew"`
	Expires  time.Time `json:"expires"`
}

// FrameType says what a Frame's payload holds.
type FrameType uint8

// Frames of an OpExec stream.
const (
	FrameStdin      FrameType = 0 // host→guest: bytes for the process's stdin
	FrameStdout     FrameType = 1 // guest→host: bytes (the PTY output when TTY)
	FrameStderr     FrameType = 2 // guest→host: bytes
	FrameCloseStdin FrameType = 3 // host→guest: stdin reached EOF (empty payload)
	FrameResize     FrameType = 4 // host→guest: JSON WindowSize
	FrameSignal     FrameType = 5 // host→guest: JSON Signal
	FrameExit       FrameType = 6 // guest→host: JSON ExitStatus; the last frame
	FrameStarted    FrameType = 7 // guest→host: JSON Started; the first frame
)

// Frames of OpCopyIn and OpCopyOut streams (either direction).
const (
	FrameData FrameType = 8 // archive bytes
	FrameEnd  FrameType = 9 // JSON CopyEnd; the last frame of an archive
)

// FrameFileEvents (host→guest, OpFileEvents) carries a JSON []FileEvent.
const FrameFileEvents FrameType = 10

// MaxFrame is the largest payload a Frame may carry (bytes).
const MaxFrame = 1 << 20

// WindowSize is a terminal size in character cells.
type WindowSize struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

// Signal asks the guest to deliver a signal (number, as in signal(7)) to
// the process (its process group when TTY).
type Signal struct {
	Number int `json:"number"`
}

// Started reports the guest PID of a process that has started.
type Started struct {
	PID int `json:"pid"`
}

// ExitStatus is how a process ended. When Signal is non-zero the process was
// killed by that signal and Code is 128+Signal, as shells report it.
type ExitStatus struct {
	Code   int    `json:"code"`
	Signal int    `json:"signal,omitempty"`
	Error  string `json:"error,omitempty"` // the process could not be started
}

// WriteFrame writes one frame: a 1-byte type, a 4-byte big-endian payload
// length, then the payload. It returns an error if the payload is longer
// than MaxFrame or the write fails.
func WriteFrame(w io.Writer, t FrameType, payload []byte) error {
	if len(payload) > MaxFrame {
		return fmt.Errorf("proto: frame of %d bytes exceeds %d", len(payload), MaxFrame)
	}
	var hdr [5]byte
	hdr[0] = byte(t)
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	buf := make([]byte, 0, 5+len(payload))
	buf = append(append(buf, hdr[:]...), payload...)
	_, err := w.Write(buf)
	return err
}

// WriteJSONFrame marshals v and writes it as a frame of type t.
func WriteJSONFrame(w io.Writer, t FrameType, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return WriteFrame(w, t, b)
}

// ReadFrame reads one frame written by WriteFrame. It returns io.EOF at a
// clean end of stream and an error for a truncated or oversized frame.
func ReadFrame(r io.Reader) (FrameType, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, fmt.Errorf("proto: truncated frame header")
		}
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxFrame {
		return 0, nil, fmt.Errorf("proto: frame of %d bytes exceeds %d", n, MaxFrame)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, fmt.Errorf("proto: truncated frame: %w", err)
	}
	return FrameType(hdr[0]), p, nil
}

// WriteLine writes v as one line of JSON.
func WriteLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// ReadLine reads one line of JSON into v from br. Reading through a
// bufio.Reader means bytes after the line stay buffered in br, so callers
// keep using br for the frames that follow.
func ReadLine(br *bufio.Reader, v any) error {
	line, err := br.ReadBytes('\n')
	if err != nil {
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return io.EOF
		}
		return fmt.Errorf("proto: reading line: %w", err)
	}
	if err := json.Unmarshal(line, v); err != nil {
		return fmt.Errorf("proto: bad JSON line: %w", err)
	}
	return nil
}

// DataWriter sends the bytes written to it as FrameData frames of at most
// MaxFrame bytes; End sends FrameEnd. It is not safe for concurrent use.
type DataWriter struct{ W io.Writer }

// Write sends p as one or more FrameData frames.
func (d *DataWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		c := min(len(p), MaxFrame)
		if err := WriteFrame(d.W, FrameData, p[:c]); err != nil {
			return n, err
		}
		n += c
		p = p[c:]
	}
	return n, nil
}

// End sends FrameEnd carrying failure's message (nil: the archive is
// complete).
func (d *DataWriter) End(failure error) error {
	var e CopyEnd
	if failure != nil {
		e.Error = failure.Error()
	}
	return WriteJSONFrame(d.W, FrameEnd, e)
}

// DataReader reads the bytes of FrameData frames from R until FrameEnd:
// then Read returns io.EOF, or an *EndError when the sender reported a
// failure. Any other frame type is an error.
type DataReader struct {
	R    io.Reader
	buf  []byte
	done error
}

// EndError is a failure the sender of an archive reported in FrameEnd.
type EndError struct{ Msg string }

// Error returns the sender's message.
func (e *EndError) Error() string { return e.Msg }

// Read implements io.Reader.
func (d *DataReader) Read(p []byte) (int, error) {
	for len(d.buf) == 0 {
		if d.done != nil {
			return 0, d.done
		}
		t, b, err := ReadFrame(d.R)
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		switch {
		case err != nil:
			d.done = err
		case t == FrameData:
			d.buf = b
		case t == FrameEnd:
			var e CopyEnd
			if err := json.Unmarshal(b, &e); err != nil {
				d.done = fmt.Errorf("proto: bad end frame: %w", err)
			} else if e.Error != "" {
				d.done = &EndError{Msg: e.Error}
			} else {
				d.done = io.EOF
			}
		default:
			d.done = fmt.Errorf("proto: unexpected frame type %d in an archive", t)
		}
	}
	n := copy(p, d.buf)
	d.buf = d.buf[n:]
	return n, nil
}
