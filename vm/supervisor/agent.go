package supervisor

import (
	"context"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/machinetop/machinetop/guest/client"
	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/vm"
	"github.com/machinetop/machinetop/vm/control"
	"github.com/machinetop/machinetop/vm/internal/atomicfile"
)

// agentLoop keeps a session with the guest agent for as long as the VM
// runs, reconnecting whenever the channel drops.
func (s *supervisor) agentLoop() {
	for {
		select {
		case <-s.done:
			return
		default:
		}
		cl, sess, info, ok := s.connectAgent()
		if !ok {
			continue
		}
		s.log.Info("agent ready", "version", info.Version, "kernel", info.Kernel, "pid1", info.PID1, "populated", info.Populated)
		if info.Populated && !s.cfg.Populated {
			s.markPopulated()
		}
		g := s.recordGuest(info)
		ip, lease := s.guestNet(cl)
		// Before the agent counts ready: a `machine set memory-reclaim=`
		// waits for readiness, so its mode lands after this one.
		s.pushReclaimMode(cl)
		s.mu.Lock()
		s.sess = sess
		s.everReady = true
		close(s.readyCh)
		s.mu.Unlock()
		s.setStatus(func(st *control.Status) { st.AgentReady, st.IP, st.Lease, st.Guest, st.Stage = true, ip, lease, g, "" })

		sessDone := make(chan struct{})
		go s.syncClock(cl, sessDone)
		go s.bridgeFileEvents(cl, sessDone)
		portsCtx, stopPorts := context.WithCancel(context.Background())
		go s.watchPorts(portsCtx, cl)
		select {
		case <-sess.CloseChan():
			s.log.Info("agent channel closed; reconnecting")
		case <-s.done:
		}
		close(sessDone)
		stopPorts()
		s.mu.Lock()
		s.sess = nil
		s.readyCh = make(chan struct{})
		s.mu.Unlock()
		s.setStatus(func(st *control.Status) { st.AgentReady = false })
		sess.Close()
	}
}

// connectAgent dials the agent channel, opens a session and pings the
// agent; ok is false (after a short pause when the dial failed) when any
// step failed.
func (s *supervisor) connectAgent() (cl *client.Client, sess *yamux.Session, info *proto.Info, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	conn, err := s.inst.DialAgent(ctx)
	cancel()
	if err != nil {
		select {
		case <-time.After(50 * time.Millisecond):
		case <-s.done:
		}
		return nil, nil, nil, false
	}
	ys, err := client.NewSessionTimeout(conn, 5*time.Second)
	if err != nil {
		conn.Close()
		return nil, nil, nil, false
	}
	cl = client.FromSession(ys)
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	info, err = cl.Ping(ctx)
	cancel()
	if err != nil {
		s.log.Warn("agent ping failed", "err", err)
		ys.Close()
		return nil, nil, nil, false
	}
	return cl, ys, info, true
}

// guestNet returns the guest's address and DHCP lease as the agent
// reports them: the lease's address, else the first IPv4 address of an
// interface (a guest whose network was set up otherwise), else "".
func (s *supervisor) guestNet(cl *client.Client) (string, *proto.Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lease, err := cl.Lease(ctx)
	if err != nil {
		return "", nil
	}
	if lease != nil {
		ip, _, _ := strings.Cut(lease.Address, "/")
		return ip, lease
	}
	addrs, err := cl.Network(ctx)
	if err != nil {
		return "", nil
	}
	for _, a := range addrs {
		if !a.IPv6 {
			ip, _, _ := strings.Cut(a.CIDR, "/")
			return ip, nil
		}
	}
	return "", nil
}

// markPopulated records that the root disk holds the image, so later boots
// no longer attach the image tar, and drops the machine's link to it.
func (s *supervisor) markPopulated() {
	if err := s.m.Update(s.cfg, func(c *vm.Config) { c.Populated = true }); err != nil {
		s.log.Error("recording the populated disk", "err", err)
		return
	}
	os.Remove(s.dir.ImageTar())
}

// recordGuest keeps what the agent reported in the machine directory and
// returns it for the status.
func (s *supervisor) recordGuest(info *proto.Info) *control.GuestFacts {
	g := &control.GuestFacts{Sudo: info.Sudo, SSHD: info.SSHD}
	if info.Setup != nil {
		g.Problems = info.Setup.Problems
		g.DiskCheck = info.Setup.Disk
	}
	atomicfile.WriteJSON(s.dir.Guest(), g)
	return g
}

// Clock checks: how often the supervisor compares the guest's clock with
// the host's, and the drift that makes it set the guest's clock.
const (
	clockInterval = 10 * time.Second
	clockMaxDrift = time.Second
)

// syncClock sets the guest clock from the host's whenever they differ by
// more than clockMaxDrift (after the host slept, the guest's clock lags
// by the time slept), checking every clockInterval, or at once when the
// host's wall clock jumped against its monotonic clock (a resume), until
// done is closed. One check is one small agent call.
func (s *supervisor) syncClock(cl *client.Client, done <-chan struct{}) {
	check := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		t0 := time.Now()
		g, err := cl.Time(ctx)
		if err != nil {
			return
		}
		rtt := time.Since(t0)
		mid := t0.Add(rtt / 2)
		drift := g.Sub(mid)
		if drift < 0 {
			drift = -drift
		}
		if drift <= clockMaxDrift || rtt > clockMaxDrift {
			return
		}
		if err := cl.SetTime(ctx, time.Now()); err != nil {
			s.log.Warn("setting the guest clock", "err", err)
			return
		}
		s.log.Info("guest clock set from the host", "drift", drift.Round(time.Millisecond))
	}
	check()
	t := time.NewTicker(clockInterval)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			// Round(0) strips the monotonic reading: wall time elapsed.
			now := time.Now()
			if jump := now.Round(0).Sub(last.Round(0)) - now.Sub(last); jump > clockMaxDrift || jump < -clockMaxDrift {
				s.log.Info("host clock jumped (resume?)", "by", jump.Round(time.Millisecond))
			}
			last = now
			check()
		}
	}
}

// pushReclaimMode tells a newly connected agent the machine's idle
// memory reclaim mode, read afresh from its configuration (`machine set
// memory-reclaim=` may have changed it since the boot).
func (s *supervisor) pushReclaimMode(cl *client.Client) {
	mode := s.cfg.MemoryReclaim
	if cfg, err := s.m.Load(s.cfg.Name); err == nil {
		mode = cfg.MemoryReclaim
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cl.Reclaim(ctx, mode, false); err != nil {
		s.log.Warn("setting the memory reclaim mode", "mode", mode, "err", err)
	}
}
