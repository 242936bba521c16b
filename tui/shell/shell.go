// Package shell is an interactive PTY session in a machine rendered inside
// a dashboard pane: the guest agent runs a login shell on a PTY, its
// output feeds an x/vt terminal emulator, and keys are encoded by the
// emulator (honouring the modes the program set, e.g. application cursor
// keys and bracketed paste). The emulator's replies to terminal queries are
// copied back to the PTY, output is coalesced into at most FPS redraws a
// second, and the session can take over the whole terminal (Attach) and
// give it back. A Session outlives the pane that shows it.
package shell

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	tea "charm.land/bubbletea/v2"
	uv "github.com/charmbracelet/ultraviolet"
	"github.com/charmbracelet/x/vt"

	"github.com/machinetop/machinetop/guest/client"
	"github.com/machinetop/machinetop/guest/proto"
)

// FPS caps how often a session asks for a redraw.
const FPS = 20

// Session is one shell in one machine.
type Session struct {
	// Name is the machine's name.
	Name string

	em     *vt.SafeEmulator
	proc   *client.Process
	cancel context.CancelFunc
	stdinW *io.PipeWriter // the process's stdin
	input  chan func()    // serialised emulator input and resizes
	notify chan struct{}  // output arrived (capacity 1)
	done   chan struct{}  // the process ended
	dirty  atomic.Bool
	last   time.Time // last redraw message, owned by the Wait Cmd

	mu       sync.Mutex
	attached io.Writer // while attached: where output also goes
	cols     int
	rows     int
	cache    string
	status   proto.ExitStatus
	err      error
}

// OpenedMsg reports a session that started (S set) or failed (Err).
type OpenedMsg struct {
	Name string
	S    *Session
	Err  error
}

// OutputMsg says the session's screen changed; re-arm Wait.
type OutputMsg struct{ S *Session }

// ExitedMsg says the session's process ended.
type ExitedMsg struct{ S *Session }

// Open starts a login shell as uid:gid (the machine's user, as `machine
// run` does) on a cols×rows PTY in machine name through cl. It blocks on
// the agent, so call it from a tea.Cmd (see OpenCmd).
func Open(cl *client.Client, name string, uid, gid uint32, cols, rows int) (*Session, error) {
	cols, rows = max(cols, 2), max(rows, 2)
	ctx, cancel := context.WithCancel(context.Background())
	s := &Session{
		Name: name, em: vt.NewSafeEmulator(cols, rows), cancel: cancel,
		input: make(chan func(), 1024), notify: make(chan struct{}, 1),
		done: make(chan struct{}), cols: cols, rows: rows,
	}
	s.em.SetScrollbackSize(1000)
	stdinR, stdinW := io.Pipe()
	s.stdinW = stdinW
	req := &proto.ExecRequest{TTY: true, UID: uid, GID: gid, Rows: uint16(rows), Cols: uint16(cols), Term: "xterm-256color"}
	p, err := cl.Start(ctx, req, stdinR, writerFunc(s.output), nil)
	if err != nil {
		cancel()
		s.em.Close()
		return nil, err
	}
	s.proc = p
	go s.replies()
	go s.inputLoop()
	go func() {
		st, err := p.Wait()
		s.mu.Lock()
		s.status, s.err = st, err
		s.mu.Unlock()
		close(s.done)
		stdinW.Close()
		s.em.Close()
	}()
	return s, nil
}

// OpenCmd returns a Cmd that opens a session and reports it as OpenedMsg.
func OpenCmd(cl func() (*client.Client, error), name string, uid, gid uint32, cols, rows int) tea.Cmd {
	return func() tea.Msg {
		c, err := cl()
		if err != nil {
			return OpenedMsg{Name: name, Err: err}
		}
		s, err := Open(c, name, uid, gid, cols, rows)
		return OpenedMsg{Name: name, S: s, Err: err}
	}
}

type writerFunc func([]byte) (int, error)

// Write calls f.
func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// output feeds the process's output to the emulator (and to the real
// terminal while attached) and flags a redraw.
func (s *Session) output(p []byte) (int, error) {
	s.mu.Lock()
	att := s.attached
	s.mu.Unlock()
	if att != nil {
		att.Write(p)
	}
	s.em.Write(p)
	s.dirty.Store(true)
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return len(p), nil
}

// replies copies what the emulator writes on its input side (encoded keys
// and answers to DA/DSR queries) to the process. While attached the real
// terminal answers queries itself, so the emulator's answers are dropped.
// Draining the emulator is what keeps its Write from blocking.
func (s *Session) replies() {
	buf := make([]byte, 4096)
	for {
		n, err := s.em.Read(buf)
		if n > 0 {
			s.mu.Lock()
			att := s.attached != nil
			s.mu.Unlock()
			if !att {
				s.stdinW.Write(buf[:n])
			}
		}
		if err != nil {
			return
		}
	}
}

// inputLoop runs input operations in order, off the UI goroutine: the
// emulator's input pipe blocks until replies() has read it.
func (s *Session) inputLoop() {
	for {
		select {
		case f := <-s.input:
			f()
		case <-s.done:
			return
		}
	}
}

func (s *Session) enqueue(f func()) {
	select {
	case s.input <- f:
	case <-s.done:
	}
}

// Wait returns a Cmd that waits for new output (reported at most FPS times
// a second as OutputMsg) or the end of the process (ExitedMsg). Keep one
// Wait outstanding per session.
func (s *Session) Wait() tea.Cmd {
	return func() tea.Msg {
		select {
		case <-s.notify:
		case <-s.done:
			return ExitedMsg{S: s}
		}
		if d := time.Second/FPS - time.Since(s.last); d > 0 {
			time.Sleep(d)
		}
		s.last = time.Now()
		return OutputMsg{S: s}
	}
}

// Done is closed when the process has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// Exited reports whether the process ended, and how.
func (s *Session) Exited() (bool, string) {
	select {
	case <-s.done:
	default:
		return false, ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.err != nil:
		return true, s.err.Error()
	case s.status.Error != "":
		return true, s.status.Error
	}
	return true, fmt.Sprintf("exit status %d", s.status.Code)
}

// Close ends the process and releases the session.
func (s *Session) Close() {
	s.cancel()
}

// Key sends a key press to the process, encoded by the emulator.
func (s *Session) Key(k tea.KeyPressMsg) {
	ev := uv.KeyPressEvent(uv.Key{Text: k.Text, Mod: k.Mod, Code: k.Code, ShiftedCode: k.ShiftedCode, BaseCode: k.BaseCode})
	s.enqueue(func() { s.em.SendKey(ev) })
}

// Paste sends pasted text, bracketed when the program enabled bracketed
// paste.
func (s *Session) Paste(text string) {
	s.enqueue(func() { s.em.Paste(text) })
}

// Resize resizes the emulator and the remote PTY together; it does
// nothing when the size is unchanged.
func (s *Session) Resize(cols, rows int) {
	cols, rows = max(cols, 2), max(rows, 2)
	s.mu.Lock()
	same := cols == s.cols && rows == s.rows
	s.cols, s.rows = cols, rows
	s.mu.Unlock()
	if same {
		return
	}
	s.em.Resize(cols, rows)
	s.dirty.Store(true)
	s.enqueue(func() { s.proc.Resize(proto.WindowSize{Rows: uint16(rows), Cols: uint16(cols)}) })
}

// Size returns the emulator's size in cells.
func (s *Session) Size() (cols, rows int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cols, s.rows
}

// Screen returns the emulator's screen as styled lines, each padded to the
// width, re-rendered only when output arrived since the last call.
func (s *Session) Screen() string {
	if s.dirty.Swap(false) || s.cache == "" {
		s.mu.Lock()
		cols, rows := s.cols, s.rows
		s.mu.Unlock()
		lines := strings.Split(s.em.Render(), "\n")
		for len(lines) < rows {
			lines = append(lines, "")
		}
		lines = lines[:rows]
		for i, l := range lines {
			if w := uvWidth(l); w < cols {
				lines[i] = l + strings.Repeat(" ", cols-w)
			}
		}
		s.cache = strings.Join(lines, "\n")
	}
	return s.cache
}

// Cursor returns the cursor position in the pane (0-based) and whether it
// is visible.
func (s *Session) Cursor() (x, y int, visible bool) {
	p := s.em.CursorPosition()
	return p.X, p.Y, !s.em.CursorHidden()
}

// Text returns the screen as plain text (tests).
func (s *Session) Text() string { return s.em.String() }
