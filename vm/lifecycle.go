package vm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/charmbracelet/x/ansi"
	"github.com/gofrs/flock"

	"github.com/machinetop/machinetop/guest/client"
	"github.com/machinetop/machinetop/vm/control"
	"github.com/machinetop/machinetop/vm/internal/atomicfile"
	"github.com/machinetop/machinetop/vm/layout"
)

// SuperviseCommand is the hidden subcommand that runs a supervisor:
// `machinetop __supervise NAME`.
const SuperviseCommand = "__supervise"

// DefaultStartTimeout bounds Start: a first boot under TCG unpacks the
// whole image before the agent answers.
const DefaultStartTimeout = 10 * time.Minute

// DefaultStopTimeout is how long Stop waits for the guest to power off
// before it kills the VM: 30 s. Apple's container machine waits 10 s, but
// a systemd guest under emulation (TCG) on a busy host takes longer than
// that to shut down, and a killed guest's next boot must replay its
// journal.
const DefaultStopTimeout = 30 * time.Second

// run returns cfg's runtime directory.
func (m *Manager) run(cfg *Config) (layout.Run, error) { return layout.RunFor(cfg.ID) }

// orphanRunning reports whether cfg's VM runs without a supervisor (only
// backends whose VMs outlive their supervisor have such VMs).
func (m *Manager) orphanRunning(cfg *Config) bool {
	if m.Backend == nil || !m.Backend.Features().Adopt {
		return false
	}
	run, err := m.run(cfg)
	if err != nil {
		return false
	}
	return m.Backend.Running(run.Dir, cfg.Name)
}

// supervisorAlive reports whether a supervisor holds the machine's lock.
func (m *Manager) supervisorAlive(name string) bool {
	l := flock.New(m.Dir(name).SupervisorLock(), flock.SetFlag(layout.LockFlag))
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

// status asks the supervisor of cfg for its status; it fails with an
// error wrapping ErrNotRunning when no supervisor runs.
func (m *Manager) status(ctx context.Context, cfg *Config) (*control.Status, error) {
	run, err := m.run(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := control.Call(ctx, run.Control(), control.Request{Op: control.OpStatus})
	if err != nil {
		return nil, err
	}
	if resp.Status == nil {
		return nil, fmt.Errorf("supervisor of %s sent no status", cfg.Name)
	}
	return resp.Status, nil
}

// Start boots cfg's machine if it is not running (or re-attaches a
// supervisor to a VM whose supervisor died) and returns once the guest
// agent answers, as the supervisor reports it (no polling). A failed boot
// gives an error wrapping ErrStartFailed that names the cause; a start
// already in progress elsewhere is waited for and reported the same way.
func (m *Manager) Start(ctx context.Context, cfg *Config) error {
	return m.StartProgress(ctx, cfg, nil)
}

// StartProgress is Start that calls onStage (when not nil) with each
// boot stage the supervisor reports ("preparing the guest kernel",
// "unpacking the image: 45% (76 of 169 MB)", …), in order, from the
// calling goroutine.
func (m *Manager) StartProgress(ctx context.Context, cfg *Config, onStage func(stage string)) error {
	err := m.startProgress(ctx, cfg, onStage)
	m.recordStart(cfg.Name, err)
	return err
}

// recordStart keeps the error of a failed start in the machine's
// directory, where Get finds it for `ls`, `inspect` and the dashboard, and
// removes it after a start that succeeded. A start the caller cancelled
// (^C) says nothing about the machine and changes nothing.
func (m *Manager) recordStart(name string, err error) {
	path := m.Dir(name).StartFailure()
	switch {
	case err == nil:
		os.Remove(path)
	case errors.Is(err, context.Canceled), errors.Is(err, ErrNotFound):
	default:
		// Best effort: the caller has the error itself.
		_ = atomicfile.WriteJSON(path, StartFailure{At: time.Now().UTC(), Error: err.Error()})
	}
}

func (m *Manager) startProgress(ctx context.Context, cfg *Config, onStage func(stage string)) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultStartTimeout)
		defer cancel()
	}
	run, err := m.run(cfg)
	if err != nil {
		return err
	}
	var exited <-chan error
	lastStage := ""
	if !m.supervisorAlive(cfg.Name) {
		if exited, err = m.spawn(cfg); err != nil {
			return err
		}
	}
	for {
		// The supervisor's socket appears once it has taken the machine;
		// its watch stream then says when the agent is ready.
		var result error
		first, stale := true, false
		werr := control.Watch(ctx, run.Control(), func(st *control.Status) bool {
			if st.Stage != "" && st.Stage != lastStage {
				lastStage = st.Stage
				if onStage != nil {
					onStage(st.Stage)
				}
			}
			defer func() { first = false }()
			switch {
			case st.AgentReady && st.State == StateRunning:
				return false
			case st.State == StateStopped && first && exited == nil:
				// A supervisor we did not start whose machine was
				// already stopped when we asked (its boot failed and it
				// lingers so its starter reads the error, or its VM just
				// exited): it is on its way out, not a start in
				// progress. Let it go, then boot anew.
				stale = true
				return false
			case st.State == StateStopped && st.Error != "":
				result = fmt.Errorf("starting %s: %w: %s", cfg.Name, ErrStartFailed, st.Error)
				return false
			case st.State == StateStopped || st.State == StateStopping:
				result = fmt.Errorf("starting %s: %w: it is %s (stopped by another command?)", cfg.Name, ErrStartFailed, st.State)
				return false
			}
			return true
		})
		if werr == nil && stale {
			if err := m.waitReleased(ctx, cfg.Name); err != nil {
				return fmt.Errorf("starting %s: the supervisor of a stopped machine did not exit: %w", cfg.Name, err)
			}
			if exited, err = m.spawn(cfg); err != nil {
				return err
			}
			continue
		}
		if werr == nil {
			return result
		}
		if ctx.Err() != nil {
			return m.startTimeout(ctx, cfg.Name, lastStage)
		}
		select {
		case err := <-exited:
			if err == nil && m.supervisorAlive(cfg.Name) {
				// Ours found the machine taken by another
				// supervisor (a concurrent Start): follow that one.
				exited = nil
				continue
			}
			return m.startFailure(cfg.Name, err)
		case <-ctx.Done():
			return m.startTimeout(ctx, cfg.Name, lastStage)
		case <-time.After(10 * time.Millisecond):
			// Not listening yet (just spawned), or it went away.
		}
		if exited == nil && !m.supervisorAlive(cfg.Name) {
			// The supervisor we followed is gone: one of a machine that
			// had just stopped (on its way out), or a supervisor that
			// went before it answered. Boot (or adopt an orphaned VM)
			// with our own, whose failure is then ours to report.
			if exited, err = m.spawn(cfg); err != nil {
				return err
			}
			continue
		}
	}
}

// reattachWait bounds how long Get waits for a new supervisor to adopt an
// orphaned VM and answer.
const reattachWait = 5 * time.Second

// reattach starts a supervisor for cfg's orphaned VM (it adopts the VM)
// and returns its status once the agent answers again, or the latest one
// after reattachWait.
func (m *Manager) reattach(ctx context.Context, cfg *Config) (*control.Status, error) {
	if _, err := m.spawn(cfg); err != nil {
		return nil, err
	}
	run, err := m.run(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, reattachWait)
	defer cancel()
	var last *control.Status
	for {
		err := control.Watch(ctx, run.Control(), func(st *control.Status) bool {
			last = st
			// Running with the agent back (so the address is known), or
			// no longer running.
			return st.State == StateStarting || (st.State == StateRunning && !st.AgentReady)
		})
		if err == nil {
			return last, nil
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return last, nil
			}
			return nil, fmt.Errorf("machine %s: no supervisor took over its VM: %w", cfg.Name, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// startFailure explains a supervisor that exited during Start, with the
// last error line of its log.
func (m *Manager) startFailure(name string, err error) error {
	msg := lastLineWith(m.SupervisorLog(name), "error: ")
	if msg == "" {
		msg = "the supervisor exited"
		if err != nil {
			msg += ": " + err.Error()
		}
		if last := m.ConsoleTail(name, 1); len(last) == 1 {
			msg += fmt.Sprintf("; the console's last line: %q", last[0])
		}
		msg += "; see " + m.SupervisorLog(name)
	}
	return fmt.Errorf("starting %s: %w: %s", name, ErrStartFailed, msg)
}

// startTimeout is the error of a start whose ctx ended before the agent
// answered: it wraps ctx.Err() and names the boot stage the supervisor
// last reported and the console's last line, which is where a boot that
// hangs is seen (a kernel panic, a stuck unit, an init that never starts
// the agent).
func (m *Manager) startTimeout(ctx context.Context, name, stage string) error {
	msg := fmt.Sprintf("starting %s: %v", name, ctx.Err())
	if stage != "" {
		msg += fmt.Sprintf(" (last stage: %s)", stage)
	}
	if last := m.ConsoleTail(name, 1); len(last) == 1 {
		msg += fmt.Sprintf("; the console's last line: %q", last[0])
	}
	return fmt.Errorf("%s; see `machinetop machine logs %s`: %w", msg, name, ctx.Err())
}

// ConsoleTail returns up to n last non-empty lines of the console log of
// machine name, oldest first, read from the log's final 16 KiB with
// escape sequences and control characters dropped; nil when there is no log. Callers that
// remove a machine whose boot failed use it to keep the boot's end.
func (m *Manager) ConsoleTail(name string, n int) []string {
	return consoleTail(m.Dir(name).ConsoleLog(), n)
}

func consoleTail(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	const window = 16 << 10
	buf := make([]byte, window)
	off := int64(0)
	if fi, err := f.Stat(); err == nil && fi.Size() > window {
		off = fi.Size() - window
	}
	k, _ := f.ReadAt(buf, off)
	var out []string
	lines := strings.Split(string(buf[:k]), "\n")
	if off > 0 {
		lines = lines[1:] // the window starts inside a line
	}
	for i := len(lines) - 1; i >= 0 && len(out) < n; i-- {
		// The firmware and the guest write escape sequences (clear
		// screen, no wrap) to the serial console: a message shows none.
		line := strings.TrimSpace(strings.Map(func(r rune) rune {
			if r < ' ' || r == 0x7f {
				return -1
			}
			return r
		}, ansi.Strip(lines[i])))
		if line != "" {
			out = append(out, line)
		}
	}
	slices.Reverse(out)
	return out
}

// supervisorStartMark starts the line spawn writes to supervisor.log
// before each supervisor, so that a failure is read from its own run.
const supervisorStartMark = "--- "

// lastLineWith returns the text after prefix on the last line of the file
// that starts with it, looking only at the latest supervisor's lines.
func lastLineWith(path, prefix string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	last := ""
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		t := sc.Text()
		switch {
		case strings.HasPrefix(t, supervisorStartMark):
			last = ""
		case strings.HasPrefix(t, prefix):
			last = strings.TrimPrefix(t, prefix)
		}
	}
	return last
}

// spawn starts the supervisor of cfg with m.Spawn, or as `machinetop
// __supervise NAME` in a session of its own, detached from the caller's
// terminal, logging to supervisor.log. The channel receives the
// supervisor's exit while the caller lives.
func (m *Manager) spawn(cfg *Config) (<-chan error, error) {
	if m.Spawn != nil {
		return m.Spawn(cfg)
	}
	exe := m.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	dir := m.Dir(cfg.Name)
	logf, err := dir.Open(dir.SupervisorLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "%s%s supervisor starting\n", supervisorStartMark, time.Now().Format(time.RFC3339))
	cmd := exec.Command(exe, SuperviseCommand, cfg.Name)
	cmd.Env = append(os.Environ(), "MACHINETOP_HOME="+m.Data.Root)
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

// Stop powers cfg's machine off: it asks the guest agent to shut down
// (ACPI power-off if the agent does not answer), kills the VM after
// timeout, and returns once the supervisor has released the machine.
// Stopping a stopped machine is not an error; a stop already in progress
// is waited for.
func (m *Manager) Stop(ctx context.Context, cfg *Config, timeout time.Duration) error {
	_, err := m.StopReporting(ctx, cfg, timeout)
	return err
}

// StopReporting is Stop that also tells whether the guest had to be
// killed: it did not power off within timeout (its disk is then checked
// at the next start). killed is false when the error is not nil.
func (m *Manager) StopReporting(ctx context.Context, cfg *Config, timeout time.Duration) (killed bool, err error) {
	if !m.supervisorAlive(cfg.Name) {
		if !m.orphanRunning(cfg) {
			return false, nil
		}
		// A VM without a supervisor: attach one so the stop is clean.
		if _, err := m.spawn(cfg); err != nil {
			return false, err
		}
	}
	run, err := m.run(cfg)
	if err != nil {
		return false, err
	}
	sctx, cancel := context.WithTimeout(ctx, timeout+30*time.Second)
	defer cancel()
	for {
		resp, err := control.Call(sctx, run.Control(), control.Request{Op: control.OpStop, Timeout: timeout})
		if err == nil || !errors.Is(err, ErrNotRunning) {
			if err != nil {
				return false, fmt.Errorf("stopping %s: %w", cfg.Name, err)
			}
			killed = resp.Killed
			break
		}
		// No socket: a supervisor just spawned, or one that is exiting.
		if !m.supervisorAlive(cfg.Name) && !m.orphanRunning(cfg) {
			return false, nil
		}
		select {
		case <-sctx.Done():
			return false, fmt.Errorf("stopping %s: the supervisor did not answer", cfg.Name)
		case <-time.After(10 * time.Millisecond):
		}
	}
	// The VM is gone; the supervisor releases its lock as it exits.
	if err := m.waitReleased(sctx, cfg.Name); err != nil {
		return false, fmt.Errorf("stopping %s: %w", cfg.Name, err)
	}
	return killed, nil
}

// waitReleased waits until the supervisor of the machine name has exited
// (released its lock), or ctx ends.
func (m *Manager) waitReleased(ctx context.Context, name string) error {
	l := flock.New(m.Dir(name).SupervisorLock(), flock.SetFlag(layout.LockFlag))
	ok, err := l.TryLockContext(ctx, 10*time.Millisecond)
	if errors.Is(err, fs.ErrNotExist) {
		// A concurrent delete removed the machine's directory: its
		// supervisor is gone too.
		return nil
	}
	if !ok || err != nil {
		return fmt.Errorf("the supervisor did not exit")
	}
	l.Unlock()
	return nil
}

// Restart stops cfg's machine (if running) and starts it again; a restart
// returns to the host all memory the guest had touched.
func (m *Manager) Restart(ctx context.Context, cfg *Config, timeout time.Duration) error {
	if err := m.Stop(ctx, cfg, timeout); err != nil {
		return err
	}
	return m.Start(ctx, cfg)
}

// Agent returns a client for the guest agent of cfg's machine; every call
// goes through the machine's supervisor. Calls to a stopped machine fail
// with an error wrapping ErrNotRunning that says how to start it.
func (m *Manager) Agent(cfg *Config) *client.Client {
	name := cfg.Name
	return client.New(func(ctx context.Context) (net.Conn, error) {
		run, err := m.run(cfg)
		if err != nil {
			return nil, err
		}
		c, _, err := control.Dial(ctx, run.Control(), control.Request{Op: control.OpAgent})
		if errors.Is(err, ErrNotRunning) {
			return nil, fmt.Errorf("machine %s is not running: start it with `machinetop machine start %s`: %w", name, name, ErrNotRunning)
		}
		return c, err
	})
}

// ApplyReclaim hands cfg's MemoryReclaim mode to its running machine's
// agent, so a `machine set memory-reclaim=` applies without a restart (a
// stopped machine gets it at its next boot). It returns an error wrapping
// ErrNotRunning for a stopped machine.
func (m *Manager) ApplyReclaim(ctx context.Context, cfg *Config) error {
	_, err := m.Agent(cfg).Reclaim(ctx, cfg.MemoryReclaim, false)
	return err
}

// Reclaim asks cfg's running machine to give back its page cache above
// the floor now and returns the host memory it held before and after
// (waiting until that settled, at most settle; 0 means 10 s) with what
// the guest did. It returns an error wrapping ErrNotRunning for a stopped
// machine.
func (m *Manager) Reclaim(ctx context.Context, cfg *Config, settle time.Duration) (*control.ReclaimReport, error) {
	run, err := m.run(cfg)
	if err != nil {
		return nil, err
	}
	resp, err := control.Call(ctx, run.Control(), control.Request{Op: control.OpReclaim, Timeout: settle})
	if errors.Is(err, ErrNotRunning) {
		return nil, fmt.Errorf("machine %s is not running: start it with `machinetop machine start %s`: %w", cfg.Name, cfg.Name, ErrNotRunning)
	}
	if err != nil {
		return nil, err
	}
	if resp.Reclaim == nil {
		return nil, fmt.Errorf("machine %s: the supervisor answered a reclaim without figures (an older machinetop? restart the machine)", cfg.Name)
	}
	return resp.Reclaim, nil
}
