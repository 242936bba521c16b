package supervisor

import (
	"context"
	"io"
	"net"
	"os"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/machinetop/machinetop/guest/client"
	"github.com/machinetop/machinetop/vm"
	"github.com/machinetop/machinetop/vm/control"
)

// Defaults for requests that carry no timeout.
const (
	defaultAgentWait = 5 * time.Minute
	// defaultReclaimSettle bounds how long a reclaim waits for the host
	// memory to settle.
	defaultReclaimSettle = 10 * time.Second
	requestReadLimit     = 10 * time.Second
)

func (s *supervisor) serve(ln net.Listener) {
	go func() { <-s.done; ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go s.handle(c)
	}
}

func (s *supervisor) handle(c net.Conn) {
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(requestReadLimit))
	var req control.Request
	if err := control.ReadLine(c, &req); err != nil {
		control.WriteResponse(c, control.Response{Error: control.Errorf(control.CodeBadRequest, "bad request: %v", err)})
		return
	}
	c.SetReadDeadline(time.Time{})
	switch req.Op {
	case control.OpStatus:
		st, _ := s.status()
		control.WriteResponse(c, control.Response{Status: &st})
	case control.OpWatch:
		s.handleWatch(c)
	case control.OpAgent:
		s.handleAgent(c, req)
	case control.OpStop:
		s.handleStop(c, req)
	case control.OpReclaim:
		s.handleReclaim(c, req)
	default:
		control.WriteResponse(c, control.Response{Error: control.Errorf(control.CodeBadRequest, "unknown op %q", req.Op)})
	}
}

// handleWatch writes the status now and at every change until the client
// goes or the supervisor ends.
func (s *supervisor) handleWatch(c net.Conn) {
	gone := make(chan struct{})
	go func() { io.Copy(io.Discard, c); close(gone) }()
	for {
		st, changed := s.status()
		if control.WriteResponse(c, control.Response{Status: &st}) != nil {
			return
		}
		select {
		case <-changed:
		case <-gone:
			return
		case <-s.done:
			// One last look: the final state was set before done closed.
			st, _ := s.status()
			control.WriteResponse(c, control.Response{Status: &st})
			return
		}
	}
}

// handleAgent waits for the agent (at most req.Timeout) and splices c to
// a new stream of the agent session.
func (s *supervisor) handleAgent(c net.Conn, req control.Request) {
	wait := req.Timeout
	if wait <= 0 {
		wait = defaultAgentWait
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	sess, cerr := s.agentSession(ctx)
	cancel()
	if cerr != nil {
		if cerr.Code == control.CodeAgentTimeout {
			cerr = control.Errorf(control.CodeAgentTimeout, "the agent in %s did not become ready in %s; see `machinetop machine logs %s`", s.cfg.Name, wait, s.cfg.Name)
		}
		control.WriteResponse(c, control.Response{Error: cerr})
		return
	}
	stream, err := sess.OpenStream()
	if err != nil {
		control.WriteResponse(c, control.Response{Error: control.Errorf(control.CodeInternal, "agent channel: %v", err)})
		return
	}
	defer stream.Close()
	if control.WriteResponse(c, control.Response{}) != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() { io.Copy(stream, c); done <- struct{}{} }()
	go func() { io.Copy(c, stream); done <- struct{}{} }()
	<-done
}

// agentSession returns the agent session, waiting while the agent is
// not connected until ctx ends. It fails with CodeNotRunning or
// CodeStopping when the machine is (being) stopped, CodeAgentTimeout when
// ctx ended first.
func (s *supervisor) agentSession(ctx context.Context) (*yamux.Session, *control.Error) {
	for {
		s.mu.Lock()
		ready, sc, st := s.readyCh, s.sess, s.st.State
		s.mu.Unlock()
		// A VM that just exited leaves its dead session behind until
		// the agent loop notices: the state comes first.
		if st == control.StateStopped {
			return nil, control.Errorf(control.CodeNotRunning, "machine %s is stopped", s.cfg.Name)
		}
		if sc != nil {
			return sc, nil
		}
		if st == control.StateStopping {
			return nil, control.Errorf(control.CodeStopping, "machine %s is stopping", s.cfg.Name)
		}
		select {
		case <-ready:
		case <-s.done:
			return nil, control.Errorf(control.CodeNotRunning, "machine %s stopped", s.cfg.Name)
		case <-ctx.Done():
			return nil, control.Errorf(control.CodeAgentTimeout, "the agent in %s is not ready: %v", s.cfg.Name, ctx.Err())
		}
	}
}

// handleStop asks the guest to power off (agent, else ACPI), kills the VM
// after req.Timeout, and answers once the VM has exited.
func (s *supervisor) handleStop(c net.Conn, req control.Request) {
	s.stopWG.Add(1)
	defer s.stopWG.Done()
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = vm.DefaultStopTimeout
	}
	stopping := func() {
		s.setStatus(func(st *control.Status) {
			if st.State != control.StateStopped {
				st.State = control.StateStopping
			}
		})
	}
	stopping()
	// A boot in progress gives up; s.inst is known once it has returned
	// (a VM it started is stopped below).
	s.stopBoot()
	select {
	case <-s.booted:
	case <-s.done:
	}
	stopping()
	s.mu.Lock()
	sess := s.sess
	s.mu.Unlock()
	asked := false
	if sess != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := client.FromSession(sess).Shutdown(ctx, false)
		cancel()
		asked = err == nil
		if err != nil {
			s.log.Warn("agent shutdown failed", "err", err)
		}
	}
	if !asked && s.inst != nil {
		if err := s.inst.RequestStop(context.Background()); err != nil {
			s.log.Warn("ACPI power-off request failed", "err", err)
		}
	}
	var resp control.Response
	select {
	case <-s.stopped:
	case <-s.done:
	case <-time.After(timeout):
		s.log.Warn("guest did not power off in time; killing the vm", "timeout", timeout)
		if s.inst != nil {
			s.inst.Kill()
			resp.Killed = true
		}
		select {
		case <-s.stopped:
		case <-s.done:
		}
	}
	control.WriteResponse(c, resp)
}

// heldPID is the host process holding the VM's memory: QEMU's, or the
// supervisor's own where the VM runs inside it (vz).
func (s *supervisor) heldPID() int {
	if s.inst != nil && s.inst.PID() > 0 {
		return s.inst.PID()
	}
	return os.Getpid()
}

// handleReclaim asks the agent to reclaim now, waits for the host memory
// the VM holds to settle (at most req.Timeout) and answers with the
// figures before and after.
func (s *supervisor) handleReclaim(c net.Conn, req control.Request) {
	s.mu.Lock()
	sess, st := s.sess, s.st.State
	s.mu.Unlock()
	if sess == nil {
		code, msg := control.CodeAgentTimeout, "the agent in %s is not ready; try again once the machine has started"
		if st == control.StateStopped || st == control.StateStopping {
			code, msg = control.CodeNotRunning, "machine %s is not running"
		}
		control.WriteResponse(c, control.Response{Error: control.Errorf(code, msg, s.cfg.Name)})
		return
	}
	settle := req.Timeout
	if settle <= 0 {
		settle = defaultReclaimSettle
	}
	t0 := time.Now()
	pid := s.heldPID()
	rep := &control.ReclaimReport{HostBefore: vm.HostHeld(pid)}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	res, err := client.FromSession(sess).Reclaim(ctx, "", true)
	cancel()
	if err != nil {
		control.WriteResponse(c, control.Response{Error: control.Errorf(control.CodeInternal, "reclaim in %s: %v", s.cfg.Name, err)})
		return
	}
	rep.Guest = res
	ctx, cancel = context.WithTimeout(context.Background(), settle)
	var reached time.Time
	rep.HostAfter, reached = vm.SettleHeld(ctx, pid)
	cancel()
	rep.Millis = time.Since(t0).Milliseconds()
	rep.BackMillis = max(reached.Sub(t0).Milliseconds(), 1)
	s.log.Info("reclaimed", "method", res.Method, "host_before", rep.HostBefore, "host_after", rep.HostAfter,
		"cache_before", res.Before.Cache, "cache_after", res.After.Cache)
	control.WriteResponse(c, control.Response{Reclaim: rep})
}
