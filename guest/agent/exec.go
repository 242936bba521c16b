//go:build linux

package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/guest/ready"
)

// DefaultPath is the PATH a process gets when the request sets none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// drainIdle is how long output is still read after the process exited when
// no more arrives; a background child that keeps the output open must not
// keep the call alive.
const drainIdle = 500 * time.Millisecond

// outChunk is the largest output frame the agent sends (bytes).
const outChunk = 32 << 10

// frameWriter serializes frames written by the output copiers.
type frameWriter struct {
	mu     sync.Mutex
	w      io.Writer
	broken atomic.Bool // the host went away; output is discarded
}

func (f *frameWriter) frame(t proto.FrameType, p []byte) {
	if f.broken.Load() {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := proto.WriteFrame(f.w, t, p); err != nil {
		f.broken.Store(true)
	}
}

func (f *frameWriter) json(t proto.FrameType, v any) {
	b, _ := json.Marshal(v)
	f.frame(t, b)
}

// command builds the process for req: user, groups, environment, program
// and working directory, as documented on proto.ExecRequest.
func command(req *proto.ExecRequest) (*exec.Cmd, error) {
	if req.User != "" {
		uid, gid, err := resolveUser("/etc/passwd", req.User)
		if err != nil {
			return nil, err
		}
		req.UID, req.GID = uid, gid
	}
	acct, known := lookupUID("/etc/passwd", req.UID)
	shell := acct.Shell
	if shell == "" {
		shell = "/bin/sh"
	}
	home := acct.Home
	if home == "" {
		home = "/"
	}
	env := []string{"PATH=" + DefaultPath, "HOME=" + home, "SHELL=" + shell}
	if known {
		env = append(env, "USER="+acct.Name, "LOGNAME="+acct.Name)
	}
	if req.TTY {
		term := req.Term
		if term == "" {
			term = "xterm-256color"
		}
		env = append(env, "TERM="+term)
	}
	env = mergeEnv(env, req.Env)

	cmd := &exec.Cmd{Env: env}
	if len(req.Argv) == 0 {
		// A login shell: argv[0] starts with "-", see bash(1)/sh(1).
		cmd.Path = shell
		cmd.Args = []string{"-" + filepath.Base(shell)}
	} else {
		path, err := lookPath(req.Argv[0], getenv(env, "PATH"))
		if err != nil {
			return nil, err
		}
		cmd.Path = path
		cmd.Args = req.Argv
	}

	cmd.Dir = req.Dir
	if cmd.Dir != "" {
		// A missing -w directory would fail in the child and read as a
		// missing program (127).
		if fi, err := os.Stat(cmd.Dir); err != nil {
			return nil, fmt.Errorf("working directory %s does not exist in the machine", cmd.Dir)
		} else if !fi.IsDir() {
			return nil, fmt.Errorf("working directory %s is not a directory", cmd.Dir)
		}
	}
	if cmd.Dir == "" {
		cmd.Dir = home
		if fi, err := os.Stat(home); err != nil || !fi.IsDir() {
			cmd.Dir = "/"
		}
	}

	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if os.Geteuid() == 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{
			Uid:    req.UID,
			Gid:    req.GID,
			Groups: supplementaryGroups("/etc/group", acct.Name, req.GID),
		}
	} else if uint32(os.Geteuid()) != req.UID {
		return nil, fmt.Errorf("agent runs as uid %d and cannot switch to uid %d", os.Geteuid(), req.UID)
	}
	return cmd, nil
}

// mergeEnv appends extra KEY=VALUE entries to base; a key in extra replaces
// the same key in base.
func mergeEnv(base, extra []string) []string {
	out := make([]string, 0, len(base)+len(extra))
	idx := map[string]int{}
	for _, kv := range append(base, extra...) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := idx[k]; ok {
			out[i] = kv
			continue
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	return out
}

func getenv(env []string, key string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// lookPath finds prog in the colon-separated path, as execvp(3) does. The
// error wraps errNotFound when no executable file exists.
func lookPath(prog, path string) (string, error) {
	if strings.Contains(prog, "/") {
		return prog, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, prog)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: executable file %w in PATH", prog, errNotFound)
}

// startErrorStatus maps a failure to start a process to a shell's code:
// 127 when the program does not exist, 126 otherwise.
func startErrorStatus(err error) proto.ExitStatus {
	code := 126
	if errors.Is(err, errNotFound) || errors.Is(err, os.ErrNotExist) {
		code = 127
	}
	return proto.ExitStatus{Code: code, Error: err.Error()}
}

// execution is one running OpExec call.
type execution struct {
	out    *frameWriter
	cmd    *exec.Cmd
	tty    bool
	ptmx   *os.File // TTY only
	stdin  *os.File // write end of the stdin pipe; nil for TTY
	outs   []*os.File
	exited atomic.Bool
	done   chan struct{}
	// phase is phaseWaiting until the process started or the host went
	// away first; signals before the start are dropped.
	phase atomic.Int32
	// hostGone is closed when the stream ended before the process started.
	hostGone chan struct{}
}

// The phases of an execution.
const (
	phaseWaiting  int32 = iota // not started yet
	phaseStarted               // the process runs
	phaseHostGone              // the stream ended before the start
)

// exec runs req, streaming frames on conn, and returns after FrameExit.
// Unless req.Immediate, the process starts once s.Ready is open (see
// package ready); the host's frames are read meanwhile, so stdin and
// resizes wait for the process and a host that goes away cancels it.
func (s *Server) exec(conn net.Conn, br *bufio.Reader, req *proto.ExecRequest) {
	e := &execution{out: &frameWriter{w: conn}, tty: req.TTY, done: make(chan struct{}),
		hostGone: make(chan struct{})}
	cmd, err := command(req)
	if err != nil {
		e.out.json(proto.FrameExit, startErrorStatus(err))
		return
	}
	e.cmd = cmd
	childEnds, err := e.setupIO(req)
	if err != nil {
		e.out.json(proto.FrameExit, proto.ExitStatus{Code: 126, Error: err.Error()})
		return
	}
	go e.readInput(br)
	closeChildEnds := func() {
		for _, f := range childEnds {
			f.Close()
		}
	}
	var notice string
	if s.Ready != nil && !req.Immediate {
		var ok bool
		if notice, ok = e.waitReady(s.Ready); !ok {
			closeChildEnds()
			e.abandon()
			return
		}
	}
	wait, err := s.start(cmd)
	closeChildEnds()
	if err != nil {
		e.abandon()
		e.out.json(proto.FrameExit, startErrorStatus(err))
		return
	}
	if !e.phase.CompareAndSwap(phaseWaiting, phaseStarted) {
		// The host went away as the process started: hang up as
		// readInput would have (without a TTY, stdin is closed).
		e.phase.Store(phaseStarted)
		if e.tty {
			e.signal(int(unix.SIGHUP))
		}
	}
	e.out.json(proto.FrameStarted, proto.Started{PID: cmd.Process.Pid})
	if notice != "" {
		// The process's own stream: stderr, or the terminal.
		if e.tty {
			e.out.frame(proto.FrameStdout, []byte(strings.ReplaceAll(notice, "\n", "\r\n")))
		} else {
			e.out.frame(proto.FrameStderr, []byte(notice))
		}
	}

	var copiers sync.WaitGroup
	for i, f := range e.outs {
		t := proto.FrameStdout
		if i == 1 {
			t = proto.FrameStderr
		}
		copiers.Add(1)
		go func() {
			defer copiers.Done()
			e.copyOut(f, t)
		}()
	}

	status := wait()
	e.exited.Store(true)
	for _, f := range e.outs {
		f.SetReadDeadline(time.Now().Add(drainIdle))
	}
	copiers.Wait()
	close(e.done)
	e.closeAll()
	e.out.json(proto.FrameExit, status)
}

// setupIO creates the PTY or pipes and returns the ends the child gets,
// which the caller closes after the start.
func (e *execution) setupIO(req *proto.ExecRequest) ([]*os.File, error) {
	if req.TTY {
		ptmx, tty, err := pty.Open()
		if err != nil {
			return nil, fmt.Errorf("pty: %w", err)
		}
		rows, cols := req.Rows, req.Cols
		if rows == 0 || cols == 0 {
			rows, cols = 24, 80
		}
		pty.Setsize(ptmx, &pty.Winsize{Rows: rows, Cols: cols})
		e.ptmx = ptmx
		e.outs = []*os.File{ptmx}
		e.cmd.Stdin, e.cmd.Stdout, e.cmd.Stderr = tty, tty, tty
		// A new session with the PTY as controlling terminal (fd 0 in
		// the child), so job control and ^C work.
		e.cmd.SysProcAttr.Setsid = true
		e.cmd.SysProcAttr.Setctty = true
		e.cmd.SysProcAttr.Ctty = 0
		return []*os.File{tty}, nil
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, err
	}
	e.stdin = inW
	e.outs = []*os.File{outR, errR}
	e.cmd.Stdin, e.cmd.Stdout, e.cmd.Stderr = inR, outW, errW
	return []*os.File{inR, outW, errW}, nil
}

// abandon releases an execution whose process never started.
func (e *execution) abandon() {
	close(e.done)
	e.closeAll()
}

func (e *execution) closeAll() {
	if e.stdin != nil {
		e.stdin.Close()
	}
	for _, f := range e.outs {
		f.Close()
	}
}

// copyOut sends what the process writes to f as frames of type t until EOF
// (EIO on a PTY master once the terminal closed), or until no output came
// for drainIdle after the process exited.
func (e *execution) copyOut(f *os.File, t proto.FrameType) {
	buf := make([]byte, outChunk)
	for {
		if e.exited.Load() {
			f.SetReadDeadline(time.Now().Add(drainIdle))
		}
		n, err := f.Read(buf)
		if n > 0 {
			e.out.frame(t, buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// readInput handles the host's frames: stdin bytes, stdin EOF, resizes and
// signals. When the stream ends early the host is gone: a TTY session gets
// SIGHUP, as at a terminal hangup; otherwise stdin is closed.
func (e *execution) readInput(br *bufio.Reader) {
	stdin := make(chan []byte, 64)
	go e.writeStdin(stdin)
	stdinOpen := true
	closeStdin := func() {
		if stdinOpen {
			close(stdin)
			stdinOpen = false
		}
	}
	defer closeStdin()
	for {
		t, p, err := proto.ReadFrame(br)
		if err != nil {
			if e.phase.CompareAndSwap(phaseWaiting, phaseHostGone) {
				close(e.hostGone)
				return
			}
			if e.tty && !e.exited.Load() {
				e.signal(int(unix.SIGHUP))
			}
			return
		}
		switch t {
		case proto.FrameStdin:
			if !stdinOpen {
				continue
			}
			select {
			case stdin <- p:
			case <-e.done:
				return
			}
		case proto.FrameCloseStdin:
			closeStdin()
		case proto.FrameResize:
			var ws proto.WindowSize
			if json.Unmarshal(p, &ws) == nil && e.ptmx != nil && ws.Rows > 0 && ws.Cols > 0 {
				pty.Setsize(e.ptmx, &pty.Winsize{Rows: ws.Rows, Cols: ws.Cols})
			}
		case proto.FrameSignal:
			var sig proto.Signal
			if json.Unmarshal(p, &sig) == nil && sig.Number > 0 {
				e.signal(sig.Number)
			}
		}
	}
}

// writeStdin writes queued stdin bytes; a closed queue closes the pipe, or
// on a TTY sends the terminal's EOF character (^D, VEOF in termios(3)).
func (e *execution) writeStdin(q <-chan []byte) {
	w := io.Writer(e.ptmx)
	if e.stdin != nil {
		w = e.stdin
	}
	var werr error
	for p := range q {
		if werr == nil {
			_, werr = w.Write(p)
		}
	}
	if e.stdin != nil {
		e.stdin.Close()
	} else if werr == nil && !e.exited.Load() {
		w.Write([]byte{4})
	}
}

// signal delivers sig to the process, or to its process group (the
// session it leads) when it has a TTY.
func (e *execution) signal(sig int) {
	if e.phase.Load() != phaseStarted {
		return
	}
	pid := e.cmd.Process.Pid
	if e.tty {
		pid = -pid
	}
	unix.Kill(pid, unix.Signal(sig))
}

// start starts cmd and returns a function that waits for it and reports
// its exit status.
func (s *Server) start(cmd *exec.Cmd) (func() proto.ExitStatus, error) {
	s.commandCgroup().place(cmd, func(p *exec.Cmd) error {
		wait, err := s.startIn(p)
		if err != nil {
			return err
		}
		if st := wait(); st.Code != 0 {
			return fmt.Errorf("%s exited with %d %s", p.Path, st.Code, st.Error)
		}
		return nil
	})
	return s.startIn(cmd)
}

// startIn is start after the command's cgroup was chosen.
func (s *Server) startIn(cmd *exec.Cmd) (func() proto.ExitStatus, error) {
	if s.reaper != nil {
		var ch <-chan syscall.WaitStatus
		err := startUnprotected(func() (err error) {
			ch, err = s.reaper.start(cmd)
			return err
		})
		if err != nil {
			return nil, err
		}
		return func() proto.ExitStatus {
			ws := <-ch
			cmd.Process.Release()
			return exitStatus(ws)
		}, nil
	}
	if err := startUnprotected(cmd.Start); err != nil {
		return nil, err
	}
	return func() proto.ExitStatus {
		err := cmd.Wait()
		if cmd.ProcessState == nil {
			return proto.ExitStatus{Code: 255, Error: err.Error()}
		}
		return exitStatus(cmd.ProcessState.Sys().(syscall.WaitStatus))
	}, nil
}

// exitStatus converts a wait(2) status; a signal death reports 128+n as a
// shell does.
func exitStatus(ws syscall.WaitStatus) proto.ExitStatus {
	if ws.Signaled() {
		return proto.ExitStatus{Code: 128 + int(ws.Signal()), Signal: int(ws.Signal())}
	}
	return proto.ExitStatus{Code: ws.ExitStatus()}
}

// waitNote is how long a TTY session waits for the init before the
// terminal is told what it waits for.
const waitNote = time.Second

// waitReady waits for gate before the process starts. It returns ok false
// when the host went away meanwhile, and a notice for the process's
// output when the init was not ready by the gate's deadline (the process
// then runs anyway, to show the user what is wrong). A TTY session that
// waits longer than waitNote is told on its terminal what it waits for.
func (e *execution) waitReady(gate *ready.Gate) (notice string, ok bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := make(chan error, 1)
	go func() { res <- gate.Wait(ctx) }()
	var note <-chan time.Time
	if e.tty {
		t := time.NewTimer(waitNote)
		defer t.Stop()
		note = t.C
	}
	for {
		select {
		case <-note:
			if m := gate.Missing(); m != "" {
				e.out.frame(proto.FrameStdout, []byte("machinetop: waiting for "+m+"...\r\n"))
			}
		case err := <-res:
			var nr *ready.NotReadyError
			if errors.As(err, &nr) {
				return fmt.Sprintf("machinetop: %v; running the command anyway (the machine's console log, `machinetop machine logs`, may say why)\n", nr), true
			}
			return "", true
		case <-e.hostGone:
			return "", false
		}
	}
}
