//go:build linux

package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/guest/tarcopy"
)

// asUser runs fn on an OS thread whose filesystem identity (fsuid, fsgid
// and supplementary groups, all per-thread on Linux) is the user req
// names, so the kernel checks every file access as it would for that user
// although the agent runs as root. The thread is discarded afterwards
// (fn's goroutine ends locked), so no other goroutine inherits it.
func asUser(req *proto.CopyRequest, fn func() error) error {
	uid, gid := req.UID, req.GID
	if req.User != "" {
		var err error
		if uid, gid, err = resolveUser("/etc/passwd", req.User); err != nil {
			return err
		}
		req.UID, req.GID = uid, gid
	}
	acct, _ := lookupUID("/etc/passwd", uid)
	groups := supplementaryGroups("/etc/group", acct.Name, gid)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with us
		if os.Geteuid() == 0 {
			gs := make([]int, len(groups))
			for i, g := range groups {
				gs[i] = int(g)
			}
			if err := unix.Setgroups(gs); err != nil {
				done <- fmt.Errorf("setgroups: %w", err)
				return
			}
			unix.Setfsgid(int(gid))
			unix.Setfsuid(int(uid))
		} else if uint32(os.Geteuid()) != uid {
			done <- fmt.Errorf("the agent is not root and cannot act as uid %d", uid)
			return
		}
		done <- fn()
	}()
	return <-done
}

// guestPath checks that p is absolute and cleans it.
func guestPath(p string) (string, error) {
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("%q: give an absolute path in the machine", p)
	}
	return filepath.Clean(p), nil
}

// copyIn serves OpCopyIn (see proto.CopyRequest): it resolves the target,
// answers, unpacks the host's archive and answers again.
func (s *Server) copyIn(conn net.Conn, br *bufio.Reader, req *proto.CopyRequest) {
	dst, err := guestPath(req.Path)
	if err != nil {
		proto.WriteLine(conn, proto.Response{Error: err.Error()})
		return
	}
	if req.Base == "" || req.Base != filepath.Base(req.Base) || req.Base == ".." {
		proto.WriteLine(conn, proto.Response{Error: fmt.Sprintf("copy: bad source name %q", req.Base)})
		return
	}
	data := &proto.DataReader{R: br}
	answered := false
	err = asUser(req, func() error {
		dir, name, err := tarcopy.Target(dst, req.Base, req.IsDir)
		if err != nil {
			return err
		}
		answered = true
		if err := proto.WriteLine(conn, proto.Response{}); err != nil {
			return err
		}
		return tarcopy.Extract(data, dir, name, tarcopy.Options{Chown: req.UID == 0})
	})
	if !answered {
		proto.WriteLine(conn, proto.Response{Error: err.Error()})
		return
	}
	// Read what is left of the archive, so that the host's writes end
	// and it reads the answer.
	if _, cerr := io.Copy(io.Discard, data); cerr != nil && err == nil {
		var end *proto.EndError
		if !errors.As(cerr, &end) {
			err = cerr
		}
	}
	resp := proto.Response{}
	if err != nil {
		resp.Error = err.Error()
	}
	proto.WriteLine(conn, resp)
}

// copyOut serves OpCopyOut (see proto.CopyRequest).
func (s *Server) copyOut(conn net.Conn, req *proto.CopyRequest) {
	src, err := guestPath(req.Path)
	if err != nil {
		proto.WriteLine(conn, proto.Response{Error: err.Error()})
		return
	}
	answered := false
	// Whole frames per write: fewer, larger yamux frames on the channel.
	bw := bufio.NewWriterSize(conn, proto.MaxFrame+5)
	w := &proto.DataWriter{W: bw}
	err = asUser(req, func() error {
		fi, err := os.Lstat(src)
		if err != nil {
			return err
		}
		size, err := tarcopy.Size(src)
		if err != nil {
			return err
		}
		answered = true
		if err := proto.WriteLine(bw, proto.Response{Copy: &proto.CopyInfo{Size: size, IsDir: fi.IsDir()}}); err != nil {
			return err
		}
		return tarcopy.Write(w, src)
	})
	if !answered {
		proto.WriteLine(conn, proto.Response{Error: err.Error()})
		return
	}
	w.End(err)
	bw.Flush()
}
