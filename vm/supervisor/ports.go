package supervisor

import (
	"context"
	"errors"
	"io"
	"net"

	"github.com/hashicorp/yamux"

	"github.com/machinetop/machinetop/guest/client"
	"github.com/machinetop/machinetop/vm/control"
	"github.com/machinetop/machinetop/vm/portfwd"
)

// startForwards starts the machine's port forwarder with its static
// forwards: SSH (127.0.0.1:SSHPort to the guest's port 22) and the ports
// published with --publish. Automatic forwards follow each agent session
// (watchPorts).
func (s *supervisor) startForwards() {
	s.fwd = portfwd.New(s.dialGuest, s.log, func() {
		ports := s.fwd.List()
		s.setStatus(func(st *control.Status) { st.Ports = ports })
	})
	var rules []portfwd.Rule
	if p := s.bootInfo.SSHPort; p > 0 {
		rules = append(rules, portfwd.Rule{Kind: control.ForwardSSH, HostIP: "127.0.0.1", HostPort: p, GuestPort: 22})
	}
	for _, p := range s.cfg.Publish {
		rules = append(rules, portfwd.Rule{Kind: control.ForwardPublished, HostIP: p.HostIP, HostPort: p.HostPort, GuestPort: p.GuestPort})
	}
	s.fwd.Static(rules)
}

// dialGuest connects to a guest port over the agent session, waiting
// for the agent (at most until ctx ends) while it is not connected.
func (s *supervisor) dialGuest(ctx context.Context, addr string, port int) (net.Conn, error) {
	sess, cerr := s.agentSession(ctx)
	if cerr != nil {
		return nil, cerr
	}
	return client.FromSession(sess).DialGuest(ctx, addr, port)
}

// watchPorts keeps the automatic forwards in step with the guest's
// listening sockets for as long as ctx (the agent session) lasts, when
// the machine forwards automatically.
func (s *supervisor) watchPorts(ctx context.Context, cl *client.Client) {
	if !s.cfg.AutoForward() {
		return
	}
	err := cl.WatchPorts(ctx, s.fwd.SetListeners)
	switch {
	case ctx.Err() != nil:
	case errors.Is(err, io.EOF), errors.Is(err, yamux.ErrSessionShutdown), errors.Is(err, io.ErrUnexpectedEOF):
		// The channel closed (a power-off, a restarted agent), which
		// the session's end logs; ctx ends right after.
		s.fwd.ClearAuto()
	default:
		// An agent that cannot report (an older one, or no /proc/net)
		// forwards nothing automatically; the session stays.
		s.log.Warn("the agent does not report listening ports; nothing is forwarded automatically", "err", err)
		s.fwd.ClearAuto()
	}
}
