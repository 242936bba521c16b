package vm

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"time"
)

// The control protocol between a Manager and a machine's supervisor, over
// the unix socket ctl.sock (mode 0600) in the machine's run directory: the
// client writes one JSON controlRequest line; the supervisor answers one
// JSON controlResponse line. For op "agent" the connection then carries
// one guest agent call (see guest/proto) spliced through to the guest.
const controlSock = "ctl.sock"

type controlRequest struct {
	Op string `json:"op"` // "status", "agent", "stop"
	// TimeoutSec bounds "agent" (waiting for the agent) and "stop"
	// (waiting for the guest to power off before killing it), seconds.
	TimeoutSec float64 `json:"timeoutSec,omitempty"`
}

type controlResponse struct {
	Error  string  `json:"error,omitempty"`
	Status *status `json:"status,omitempty"`
}

// status is what a supervisor reports about its machine.
type status struct {
	State       string    `json:"state"`
	Started     time.Time `json:"started"`
	IP          string    `json:"ip,omitempty"`
	Accelerator string    `json:"accelerator,omitempty"`
	Kernel      string    `json:"kernel,omitempty"` // release booted, e.g. 6.1.0-57-cloud-amd64
	Backend     string    `json:"backend,omitempty"`
	AgentReady  bool      `json:"agentReady"`
	Error       string    `json:"error,omitempty"` // why a start failed
	PID         int       `json:"pid"`
	VMPID       int       `json:"vmPid,omitempty"`
	// SSHPort is the host loopback port forwarded to the guest's SSH
	// port, 0 for none.
	SSHPort int `json:"sshPort,omitempty"`
	// Mounts are the directories this boot shares.
	Mounts []ActiveMount `json:"mounts,omitempty"`
	// Guest is what the agent reported, once it answered.
	Guest *GuestFacts `json:"guest,omitempty"`
}

func (m *Manager) runDir(cfg *Config) (string, error) {
	rt, err := RuntimeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(rt, cfg.ID), nil
}

// dialControl connects to the supervisor of cfg and sends req; it returns
// the connection (positioned after the response line) and the response.
func (m *Manager) dialControl(ctx context.Context, cfg *Config, req controlRequest) (net.Conn, *controlResponse, error) {
	rd, err := m.runDir(cfg)
	if err != nil {
		return nil, nil, err
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", filepath.Join(rd, controlSock))
	if err != nil {
		return nil, nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	b, _ := json.Marshal(req)
	if _, err := c.Write(append(b, '\n')); err != nil {
		c.Close()
		return nil, nil, err
	}
	line, err := readLineUnbuffered(c)
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("supervisor of %s: %w", cfg.Name, err)
	}
	var resp controlResponse
	if err := json.Unmarshal(line, &resp); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("supervisor of %s sent a bad answer: %w", cfg.Name, err)
	}
	c.SetDeadline(time.Time{})
	return c, &resp, nil
}

// readLineUnbuffered reads up to and including '\n' one byte at a time, so
// nothing after the line is consumed: the agent's bytes follow it.
func readLineUnbuffered(c net.Conn) ([]byte, error) {
	var line []byte
	b := make([]byte, 1)
	for len(line) < 1<<16 {
		if _, err := c.Read(b); err != nil {
			return nil, err
		}
		if b[0] == '\n' {
			return line, nil
		}
		line = append(line, b[0])
	}
	return nil, fmt.Errorf("control line too long")
}

// status asks the supervisor of cfg for its status; it fails when no
// supervisor runs.
func (m *Manager) status(ctx context.Context, cfg *Config) (*status, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, resp, err := m.dialControl(ctx, cfg, controlRequest{Op: "status"})
	if err != nil {
		return nil, err
	}
	c.Close()
	if resp.Error != "" {
		return nil, fmt.Errorf("%s", resp.Error)
	}
	if resp.Status == nil {
		return nil, fmt.Errorf("supervisor of %s sent no status", cfg.Name)
	}
	return resp.Status, nil
}
