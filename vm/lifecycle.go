package vm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gofrs/flock"

	"github.com/machinetop/machinetop/guest/client"
)

// SuperviseCommand is the hidden subcommand that runs a supervisor:
// `machinetop __supervise NAME`.
const SuperviseCommand = "__supervise"

// DefaultStartTimeout bounds Start: a first boot under TCG unpacks the
// whole image before the agent answers.
const DefaultStartTimeout = 10 * time.Minute

func (m *Manager) orphanRunning(cfg *Config) bool {
	ad, ok := m.Backend.(Adopter)
	if !ok {
		return false
	}
	rd, err := m.runDir(cfg)
	if err != nil {
		return false
	}
	return ad.Running(rd, cfg.Name)
}

// supervisorAlive reports whether a supervisor holds the machine's lock.
func (m *Manager) supervisorAlive(name string) bool {
	l := flock.New(filepath.Join(m.machineDir(name), superLockFile))
	ok, err := l.TryLock()
	if err != nil {
		return false
	}
	if ok {
		l.Unlock()
		return false
	}
	return true
}

// Start boots the machine if it is not running (or re-attaches a
// supervisor to a VM whose supervisor died) and returns once the guest
// agent answers. Errors name the cause and end with the last lines of the
// supervisor log.
func (m *Manager) Start(ctx context.Context, name string) error {
	cfg, err := m.Config(name)
	if err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultStartTimeout)
		defer cancel()
	}
	var exited chan error
	if !m.supervisorAlive(name) {
		if exited, err = m.spawnSupervisor(cfg); err != nil {
			return err
		}
	}
	for {
		st, err := m.status(ctx, cfg)
		if err == nil {
			if st.AgentReady {
				return nil
			}
			if st.State == StateStopped && st.Error != "" {
				return fmt.Errorf("starting %s: %s", name, st.Error)
			}
		}
		select {
		case err := <-exited:
			return m.startFailure(name, err)
		case <-ctx.Done():
			return fmt.Errorf("starting %s: %w; see `machinetop machine logs %s`", name, ctx.Err(), name)
		case <-time.After(30 * time.Millisecond):
		}
		if exited == nil && !m.supervisorAlive(name) {
			return m.startFailure(name, nil)
		}
	}
}

func (m *Manager) startFailure(name string, err error) error {
	msg := lastLines(m.SupervisorLog(name), "error: ")
	if msg == "" {
		msg = "the supervisor exited"
		if err != nil {
			msg += ": " + err.Error()
		}
		msg += "; see " + m.SupervisorLog(name)
	}
	return fmt.Errorf("starting %s: %s", name, msg)
}

// lastLines returns the text after prefix on the last line of the file
// that starts with it.
func lastLines(path, prefix string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	last := ""
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if t := sc.Text(); strings.HasPrefix(t, prefix) {
			last = strings.TrimPrefix(t, prefix)
		}
	}
	return last
}

// spawnSupervisor starts `machinetop __supervise NAME` in a session of its
// own, detached from the caller's terminal, logging to supervisor.log. The
// channel receives the supervisor's exit while the caller lives.
func (m *Manager) spawnSupervisor(cfg *Config) (chan error, error) {
	exe := m.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	logf, err := os.OpenFile(m.SupervisorLog(cfg.Name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "--- %s supervisor starting\n", time.Now().Format(time.RFC3339))
	cmd := exec.Command(exe, SuperviseCommand, cfg.Name)
	cmd.Env = append(os.Environ(), "MACHINETOP_HOME="+m.DataDir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the supervisor of %s: %w", cfg.Name, err)
	}
	ch := make(chan error, 1)
	go func() { ch <- cmd.Wait() }()
	return ch, nil
}

// Stop powers the machine off: it asks the guest agent to shut down (ACPI
// power-off if the agent does not answer), kills the VM after timeout, and
// returns once the supervisor has released the machine. Stopping a stopped
// machine is not an error.
func (m *Manager) Stop(ctx context.Context, name string, timeout time.Duration) error {
	cfg, err := m.Config(name)
	if err != nil {
		return err
	}
	if !m.supervisorAlive(name) {
		if !m.orphanRunning(cfg) {
			return nil
		}
		// A VM without a supervisor: attach one so the stop is clean.
		if _, err := m.spawnSupervisor(cfg); err != nil {
			return err
		}
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if _, err := m.status(ctx, cfg); err == nil {
				break
			}
			time.Sleep(30 * time.Millisecond)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, timeout+30*time.Second)
	defer cancel()
	c, resp, err := m.dialControl(sctx, cfg, controlRequest{Op: "stop", TimeoutSec: timeout.Seconds()})
	if err == nil {
		c.Close()
		if resp.Error != "" {
			return fmt.Errorf("stopping %s: %s", name, resp.Error)
		}
	} else if m.supervisorAlive(name) {
		return fmt.Errorf("stopping %s: %w", name, err)
	}
	for m.supervisorAlive(name) {
		select {
		case <-sctx.Done():
			return fmt.Errorf("stopping %s: the supervisor did not exit", name)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// Restart stops the machine (if running) and starts it again; a restart
// returns to the host all memory the guest had touched.
func (m *Manager) Restart(ctx context.Context, name string, timeout time.Duration) error {
	if err := m.Stop(ctx, name, timeout); err != nil {
		return err
	}
	return m.Start(ctx, name)
}

// Agent returns a client for the guest agent of a running machine; every
// call goes through the machine's supervisor. Calls fail with a clear error
// when the machine is stopped.
func (m *Manager) Agent(name string) (*client.Client, error) {
	cfg, err := m.Config(name)
	if err != nil {
		return nil, err
	}
	return client.New(func(ctx context.Context) (net.Conn, error) {
		c, resp, err := m.dialControl(ctx, cfg, controlRequest{Op: "agent"})
		if err != nil {
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
				return nil, fmt.Errorf("machine %s is not running: start it with `machinetop machine start %s`", name, name)
			}
			return nil, err
		}
		if resp.Error != "" {
			c.Close()
			return nil, errors.New(resp.Error)
		}
		return c, nil
	}), nil
}
