//go:build linux

// Package agent is the guest agent: it serves the calls of package proto on
// yamux sessions that the host opens over virtio-serial or vsock, and it can
// run as the guest's PID 1 when the image has no init.
package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
	"golang.org/x/sys/unix"

	"github.com/machinetop/machinetop/guest/hostuser"
	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/guest/ready"
	"github.com/machinetop/machinetop/internal/version"
)

// Version is the agent version reported by ping: the build's version,
// commit, Go toolchain and platform on one line (see package
// internal/version, which the Makefile sets at link time).
var Version = version.Get().String()

// Server serves agent calls. The zero value is ready to use; one Server may
// serve many sessions, one after another or at once.
type Server struct {
	// Shutdown powers the guest off (reboot false) or reboots it. It is
	// called after the answer to OpShutdown was sent. Nil means PowerOff.
	Shutdown func(reboot bool) error

	// Ready, when set, holds each OpExec process until the image's init
	// accepts requests (package ready); other calls never wait. Nil
	// means commands run at once.
	Ready *ready.Gate

	// CommandCgroup, when set, is the cgroup v2 directory commands start
	// in (normally agent.CommandCgroup; see there why); it is created when
	// its parent is a cgroup2 mount. Empty means the agent's own cgroup.
	CommandCgroup string

	// Listeners, when set, replaces reading the guest's socket tables
	// for OpPorts (tests, and a fake guest running on the host).
	Listeners func() ([]proto.Listener, error)

	// reaper, when set, collects the exit status of every child because
	// the agent is PID 1 and also reaps orphans.
	reaper *reaper

	cpuMu   sync.Mutex
	lastCPU *cpuSample

	reclaimOnce sync.Once
	reclaim     *reclaimer

	cgroupOnce sync.Once
	cgroup     *commandCgroup
}

// commandCgroup returns the cgroup commands start in; nil without
// CommandCgroup.
func (s *Server) commandCgroup() *commandCgroup {
	s.cgroupOnce.Do(func() {
		if s.CommandCgroup != "" {
			s.cgroup = &commandCgroup{dir: s.CommandCgroup, fd: -1}
		}
	})
	return s.cgroup
}

// Serve serves every stream the host opens on session with a new Server
// (see Server.Serve).
func Serve(session *yamux.Session) error { return new(Server).Serve(session) }

// Serve accepts streams on session and serves each in its own goroutine
// until the session ends; it returns the error that ended it (yamux reports
// io.EOF or ErrSessionShutdown when the host went away).
func (s *Server) Serve(session *yamux.Session) error {
	for {
		st, err := session.AcceptStream()
		if err != nil {
			return err
		}
		go s.serveStream(st)
	}
}

// ServeConn serves the calls of one stream: a Request line, then the answer.
func (s *Server) ServeConn(conn net.Conn) { s.serveStream(conn) }

func (s *Server) serveStream(conn net.Conn) {
	defer conn.Close()
	br := bufio.NewReader(conn)
	var req proto.Request
	if err := proto.ReadLine(br, &req); err != nil {
		proto.WriteLine(conn, proto.Response{Error: err.Error()})
		return
	}
	switch req.Op {
	case proto.OpExec:
		if req.Exec == nil {
			proto.WriteLine(conn, proto.Response{Error: "exec: missing exec arguments"})
			return
		}
		s.exec(conn, br, req.Exec)
	case proto.OpCopyIn, proto.OpCopyOut:
		if req.Copy == nil {
			proto.WriteLine(conn, proto.Response{Error: "copy: missing copy arguments"})
			return
		}
		if req.Op == proto.OpCopyIn {
			s.copyIn(conn, br, req.Copy)
		} else {
			s.copyOut(conn, req.Copy)
		}
	case proto.OpPorts:
		s.ports(conn, br)
	case proto.OpDial:
		if req.Dial == nil {
			proto.WriteLine(conn, proto.Response{Error: "dial: missing dial arguments"})
			return
		}
		s.dial(conn, br, req.Dial)
	case proto.OpFileEvents:
		if req.FileEvents == nil {
			proto.WriteLine(conn, proto.Response{Error: "fileevents: missing arguments"})
			return
		}
		s.fileEvents(conn, br, req.FileEvents)
	case proto.OpShutdown:
		reboot := req.Shutdown != nil && req.Shutdown.Reboot
		proto.WriteLine(conn, proto.Response{})
		conn.Close()
		// Let the answer leave the channel before the guest goes down.
		time.Sleep(100 * time.Millisecond)
		down := s.Shutdown
		if down == nil {
			down = PowerOff
		}
		if err := down(reboot); err != nil {
			log.Printf("shutdown: %v", err)
		}
	default:
		proto.WriteLine(conn, s.answer(&req))
	}
}

// answer handles the calls that have one Response.
func (s *Server) answer(req *proto.Request) proto.Response {
	switch req.Op {
	case proto.OpPing:
		info, err := ping()
		if err != nil {
			return proto.Response{Error: err.Error()}
		}
		info.InitReady = true
		if s.Ready != nil {
			info.Init = string(s.Ready.Init())
			info.InitReady = s.Ready.Ready()
		}
		return proto.Response{Info: info}
	case proto.OpMetrics:
		m, err := s.metrics()
		if err != nil {
			return proto.Response{Error: err.Error()}
		}
		return proto.Response{Metrics: m}
	case proto.OpNetwork:
		addrs, err := addresses()
		if err != nil {
			return proto.Response{Error: err.Error()}
		}
		return proto.Response{Addresses: addrs, Lease: currentLease()}
	case proto.OpReclaim:
		if req.Reclaim == nil {
			return proto.Response{Error: "reclaim: missing reclaim arguments"}
		}
		res, err := s.reclaimCall(req.Reclaim)
		if err != nil {
			return proto.Response{Error: err.Error()}
		}
		return proto.Response{Reclaim: res}
	case proto.OpTime:
		return proto.Response{UnixNano: time.Now().UnixNano()}
	case proto.OpSetTime:
		if req.UnixNano <= 0 {
			return proto.Response{Error: "settime: missing time"}
		}
		ts := unix.NsecToTimespec(req.UnixNano)
		if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
			return proto.Response{Error: fmt.Sprintf("settime: %v", err)}
		}
		return proto.Response{}
	default:
		return proto.Response{Error: fmt.Sprintf("unknown operation %q", req.Op)}
	}
}

func ping() (*proto.Info, error) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return nil, fmt.Errorf("uname: %w", err)
	}
	host, _ := os.Hostname()
	info := &proto.Info{
		Version:  Version,
		Kernel:   unix.ByteSliceToString(uts.Release[:]),
		Hostname: host,
		PID1:     pid1Exe(),
	}
	if _, err := os.Stat(proto.PopulatedMarker); err == nil {
		info.Populated = true
	}
	info.Sudo = hostuser.HasSudo("/")
	if fi, err := os.Stat("/usr/sbin/sshd"); err == nil && fi.Mode().IsRegular() {
		info.SSHD = true
	}
	if b, err := os.ReadFile(proto.SetupReportFile); err == nil {
		var r proto.SetupReport
		if json.Unmarshal(b, &r) == nil {
			info.Setup = &r
		}
	}
	// CLOCK_BOOTTIME counts time since boot including suspend.
	var bt unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &bt); err == nil {
		info.BootedUnixNano = time.Now().UnixNano() - bt.Nano()
	}
	return info, nil
}

// pid1Exe returns the executable PID 1 runs, or "agent" when it is us.
func pid1Exe() string {
	if os.Getpid() == 1 {
		return "agent"
	}
	exe, err := os.Readlink("/proc/1/exe")
	if err != nil {
		return ""
	}
	// The kernel appends " (deleted)" when the file was replaced.
	return strings.TrimSuffix(exe, " (deleted)")
}

// addresses lists the IP addresses of all interfaces but loopback ones;
// IPv6 link-local addresses (fe80::/10) are left out as nobody can use them
// without a zone.
func addresses() ([]proto.Address, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	out := []proto.Address{}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.IsLinkLocalUnicast() {
				continue
			}
			out = append(out, proto.Address{
				Interface: ifc.Name,
				CIDR:      ipn.String(),
				IPv6:      ipn.IP.To4() == nil,
			})
		}
	}
	return out, nil
}

// errNotFound marks a program that does not exist, so exec reports 127.
var errNotFound = errors.New("not found")
