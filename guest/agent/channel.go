//go:build linux

package agent

import (
	"context"
	"errors"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/yamux"
	"golang.org/x/sys/unix"

	"github.com/machinetop/machinetop/guest/client"
	"github.com/machinetop/machinetop/guest/proto"
)

// eofPoll is how often the agent looks again at a virtio-serial port whose
// host end is closed (reads return 0 bytes then).
const eofPoll = 50 * time.Millisecond

// portPoll is how often the agent looks for its virtio-serial port while it
// has not appeared yet.
const portPoll = 200 * time.Millisecond

// Run serves the host on every channel the guest has until ctx ends: the
// virtio-serial port named proto.PortName (QEMU) and, when the kernel has
// vsock, the vsock port proto.VsockPort (vz). Meanwhile it renews the
// guest's DHCP lease and runs the idle memory reclaim policy (package
// guest/reclaim; the host sets its mode with OpReclaim). A nil s means a
// new Server. It returns ctx's error.
func Run(ctx context.Context, s *Server) error {
	if s == nil {
		s = new(Server)
	}
	go keepLease(ctx)
	go s.runReclaim(ctx)
	go func() {
		if err := s.ServeVsock(ctx, proto.VsockPort); err != nil {
			log.Printf("vsock: %v (not serving vsock)", err)
		}
	}()
	return s.ServeChannel(ctx, func() (io.ReadWriteCloser, error) {
		return openPort(ctx, proto.PortName)
	})
}

// ServeChannel serves sessions on a reconnecting byte channel until ctx
// ends. open returns the channel (it may block until one exists); for each
// session the agent waits for a Hello (polling every 50 ms while reads
// report io.EOF, as a virtio-serial port does while its host end is
// closed), answers it, serves a yamux session, and when the session ends
// closes the channel and opens it again. On the first channel it writes
// proto.AgentStarted first, which ends a session the host may still hold with
// an agent that ran before this one. It returns ctx's error.
func (s *Server) ServeChannel(ctx context.Context, open func() (io.ReadWriteCloser, error)) error {
	first := true
	for ctx.Err() == nil {
		ch, err := open()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			log.Printf("opening channel: %v", err)
			sleep(ctx, time.Second)
			continue
		}
		if first {
			first = false
			// A virtio-serial write blocks until the host end is
			// connected, which the handshake needs anyway.
			if _, err := io.WriteString(ch, proto.AgentStarted); err != nil {
				log.Printf("announcing the agent: %v", err)
			}
		}
		stop := context.AfterFunc(ctx, func() { ch.Close() })
		s.serveSession(ctx, ch)
		stop()
		ch.Close()
	}
	return ctx.Err()
}

// serveSession performs the handshake on ch and serves one yamux session.
func (s *Server) serveSession(ctx context.Context, ch io.ReadWriteCloser) {
	var conn *proto.ServerConn
	for {
		var err error
		conn, err = proto.ServerHandshake(ch)
		if err == nil {
			break
		}
		if !errors.Is(err, io.EOF) || ctx.Err() != nil {
			if ctx.Err() == nil {
				log.Printf("handshake: %v", err)
			}
			return
		}
		if !sleep(ctx, eofPoll) {
			return
		}
	}
	sess, err := yamux.Server(conn, client.YamuxConfig())
	if err != nil {
		log.Printf("yamux: %v", err)
		return
	}
	defer sess.Close()
	s.Serve(sess)
}

// ServeVsock listens on AF_VSOCK port and serves a session on each
// connection until ctx ends. It returns an error at once when the kernel
// has no vsock.
func (s *Server) ServeVsock(ctx context.Context, port uint32) error {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return err
	}
	if err := unix.Bind(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: port}); err != nil {
		unix.Close(fd)
		return err
	}
	if err := unix.Listen(fd, 16); err != nil {
		unix.Close(fd)
		return err
	}
	// A non-blocking socket joins Go's poller, so Close ends Accept.
	ln := os.NewFile(uintptr(fd), "vsock")
	context.AfterFunc(ctx, func() { ln.Close() })
	for ctx.Err() == nil {
		var nfd int
		var aerr error
		rc, err := ln.SyscallConn()
		if err != nil {
			return err
		}
		if err := rc.Read(func(fd uintptr) bool {
			nfd, _, aerr = unix.Accept4(int(fd), unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
			return aerr != unix.EAGAIN
		}); err != nil {
			return err
		}
		if aerr != nil {
			if ctx.Err() != nil {
				break
			}
			if aerr == unix.EINTR || aerr == unix.ECONNABORTED {
				continue
			}
			return aerr
		}
		conn := os.NewFile(uintptr(nfd), "vsock-conn")
		go s.serveSession(ctx, &eofIsFinal{conn})
	}
	return ctx.Err()
}

// eofIsFinal wraps a socket connection: unlike a virtio-serial port, its
// EOF means the peer is gone for good.
type eofIsFinal struct{ *os.File }

func (e *eofIsFinal) Read(p []byte) (int, error) {
	n, err := e.File.Read(p)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// openPort waits until a virtio-serial port named name exists
// (/sys/class/virtio-ports/vportNpM/name holds the name QEMU gave it) and
// opens its device /dev/vportNpM for reading and writing.
func openPort(ctx context.Context, name string) (io.ReadWriteCloser, error) {
	logged := false
	for {
		dev, err := findPort(name)
		if err == nil {
			return os.OpenFile(dev, os.O_RDWR, 0)
		}
		if !logged {
			log.Printf("waiting for virtio-serial port %s: %v", name, err)
			logged = true
		}
		if !sleep(ctx, portPoll) {
			return nil, ctx.Err()
		}
	}
}

func findPort(name string) (string, error) {
	ents, err := os.ReadDir("/sys/class/virtio-ports")
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/sys/class/virtio-ports", e.Name(), "name"))
		if err == nil && strings.TrimSpace(string(b)) == name {
			return "/dev/" + e.Name(), nil
		}
	}
	return "", os.ErrNotExist
}

// sleep waits for d and reports false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
