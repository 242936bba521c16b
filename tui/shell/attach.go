package shell

import (
	"bytes"
	"io"
	"os"
	"os/signal"
	"syscall"

	tea "charm.land/bubbletea/v2"
	"github.com/muesli/cancelreader"
	"golang.org/x/term"

	"github.com/machinetop/machinetop/guest/proto"
)

// DetachByte is ctrl+], the byte that ends a full-screen attach.
const DetachByte = 0x1d

// AttachedMsg is sent when a full-screen attach returns.
type AttachedMsg struct {
	S   *Session
	Err error
}

// Attach returns a Cmd that suspends the dashboard and hands the whole
// terminal to the session until the user types ctrl+] or the process
// ends; the session keeps running afterwards. The remote PTY follows the
// terminal's size while attached and the pane's size afterwards.
func (s *Session) Attach() tea.Cmd {
	return tea.Exec(&attachCmd{s: s}, func(err error) tea.Msg { return AttachedMsg{S: s, Err: err} })
}

type attachCmd struct {
	s      *Session
	stdin  io.Reader
	stdout io.Writer
}

// SetStdin, SetStdout and SetStderr receive the terminal from tea.Exec.
func (a *attachCmd) SetStdin(r io.Reader)  { a.stdin = r }
func (a *attachCmd) SetStdout(w io.Writer) { a.stdout = w }
func (a *attachCmd) SetStderr(io.Writer)   {}

// Run puts the terminal in raw mode, shows the session's screen and
// copies keys to the session until ctrl+] or the process ends.
func (a *attachCmd) Run() error {
	s := a.s
	in, ok := a.stdin.(*os.File)
	if !ok || in == nil {
		in = os.Stdin
	}
	out := a.stdout
	if out == nil {
		out = os.Stdout
	}
	fd := int(in.Fd())
	old, err := term.MakeRaw(fd)
	if err != nil {
		return err
	}
	defer term.Restore(fd, old)
	paneCols, paneRows := s.Size()
	outFd := fd
	if f, ok := out.(*os.File); ok {
		outFd = int(f.Fd())
	}
	resize := func() {
		if w, h, err := term.GetSize(outFd); err == nil {
			s.em.Resize(w, h)
			s.proc.Resize(proto.WindowSize{Rows: uint16(h), Cols: uint16(w)})
		}
	}
	// Show the current screen, then stream.
	io.WriteString(out, "\x1b[?1049h\x1b[H\x1b[2J"+s.em.Render())
	x, y, _ := s.Cursor()
	io.WriteString(out, "\x1b["+itoa(y+1)+";"+itoa(x+1)+"H")
	s.mu.Lock()
	s.attached = out
	s.mu.Unlock()
	resize()
	defer func() {
		s.mu.Lock()
		s.attached = nil
		s.mu.Unlock()
		s.em.Resize(paneCols, paneRows)
		s.proc.Resize(proto.WindowSize{Rows: uint16(paneRows), Cols: uint16(paneCols)})
		s.dirty.Store(true)
		io.WriteString(out, "\x1b[?1049l")
	}()
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)

	cr, err := cancelreader.NewReader(in)
	if err != nil {
		return err
	}
	defer cr.Close()
	detached := make(chan struct{})
	go func() {
		defer close(detached)
		buf := make([]byte, 4096)
		for {
			n, err := cr.Read(buf)
			if n > 0 {
				p := buf[:n]
				if i := bytes.IndexByte(p, DetachByte); i >= 0 {
					s.stdinW.Write(p[:i])
					return
				}
				s.stdinW.Write(p)
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		select {
		case <-winch:
			resize()
		case <-detached:
			return nil
		case <-s.done:
			cr.Cancel()
			<-detached
			return nil
		}
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}
