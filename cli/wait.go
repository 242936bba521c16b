package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/machinetop/machinetop/vm"
)

// quietWait is how long a start may take before its stages are shown:
// a warm boot that is done within it prints nothing.
const quietWait = time.Second

// bootWait shows a starting machine's boot stages on w: on a terminal one
// spinner line redrawn in place and cleared at the end, otherwise one
// plain line per stage (for logs and CI).
type bootWait struct {
	w     io.Writer
	name  string
	tty   bool
	start time.Time

	mu      sync.Mutex
	current string
	shown   string // plain mode: the last stage printed
	drawn   bool   // tty mode: a line is on screen
	stop    chan struct{}
	stopped chan struct{}
}

// newBootWait starts showing the boot of machine name on w.
func newBootWait(w io.Writer, name string) *bootWait {
	b := &bootWait{w: w, name: name, start: time.Now(), stop: make(chan struct{}), stopped: make(chan struct{})}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb" {
		b.tty = true
	}
	go b.loop()
	return b
}

// stage records the boot's current stage (vm.Manager.StartProgress calls
// it).
func (b *bootWait) stage(s string) {
	b.mu.Lock()
	b.current = s
	b.mu.Unlock()
}

var spinner = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

func (b *bootWait) loop() {
	defer close(b.stopped)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		b.mu.Lock()
		elapsed := time.Since(b.start)
		if elapsed >= quietWait && b.current != "" {
			if b.tty {
				width := 80
				if f, ok := b.w.(*os.File); ok {
					if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 10 {
						width = w
					}
				}
				line := fmt.Sprintf("%s starting %s (%ds): %s", spinner[i%len(spinner)], b.name, int(elapsed.Seconds()), b.current)
				if r := []rune(line); len(r) > width-1 {
					line = string(r[:width-1])
				}
				fmt.Fprintf(b.w, "\r\x1b[K%s", line)
				b.drawn = true
			} else if b.current != b.shown {
				fmt.Fprintf(b.w, "starting %s: %s\n", b.name, b.current)
				b.shown = b.current
			}
		}
		b.mu.Unlock()
	}
}

// done stops showing stages and clears the spinner line.
func (b *bootWait) done() {
	close(b.stop)
	<-b.stopped
	if b.drawn {
		fmt.Fprint(b.w, "\r\x1b[K")
	}
}

// startShowing starts cfg's machine, showing its boot stages on cmd's
// stderr while it waits (see bootWait).
func startShowing(ctx context.Context, cmd *cobra.Command, m *vm.Manager, cfg *vm.Config) error {
	b := newBootWait(cmd.ErrOrStderr(), cfg.Name)
	defer b.done()
	return m.StartProgress(ctx, cfg, b.stage)
}
