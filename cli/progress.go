package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/machinetop/machinetop/images/progress"
	"github.com/machinetop/machinetop/vm"
)

// progressView renders events for a person or a CI log.
type progressView interface {
	event(e progress.Event)
	close()
}

// newProgressView returns a renderer on w: mode is "plain", "tty" or
// "auto" (tty when w is a terminal). Its event method is safe for
// concurrent use (a pull reports layers from several goroutines).
func newProgressView(w io.Writer, mode string) (progressView, error) {
	var view progressView
	switch mode {
	case "plain":
		view = &plainView{w: w, start: time.Now()}
	case "tty":
		view = newTTYView(w)
	case "auto", "":
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb" {
			view = newTTYView(w)
		} else {
			view = &plainView{w: w, start: time.Now()}
		}
	default:
		return nil, fmt.Errorf("--progress %q: use auto, plain or tty", mode)
	}
	return &syncView{view: view}, nil
}

// syncView serialises a view's calls and stamps events with the time.
type syncView struct {
	mu   sync.Mutex
	view progressView
}

func (s *syncView) event(e progress.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	s.view.event(e)
}

func (s *syncView) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.view.close()
}

// plainView prints one line per event worth reading in a CI log: build
// lines are prefixed "#STEP", layers are reported when they finish.
type plainView struct {
	w     io.Writer
	start time.Time
}

func (v *plainView) event(e progress.Event) {
	switch e.Kind {
	case progress.KindStepStart:
		fmt.Fprintf(v.w, "#%d [%d/%d] %s\n", e.Step, e.Step, e.Total, e.Title)
	case progress.KindStepCached:
		fmt.Fprintf(v.w, "#%d CACHED\n", e.Step)
	case progress.KindStepDone:
		fmt.Fprintf(v.w, "#%d DONE %.1fs\n", e.Step, e.Duration)
	case progress.KindStepFailed:
		fmt.Fprintf(v.w, "#%d ERROR %s\n", e.Step, e.Error)
	case progress.KindLog:
		if e.Step > 0 {
			fmt.Fprintf(v.w, "#%d %s\n", e.Step, e.Line)
		} else {
			fmt.Fprintln(v.w, e.Line)
		}
	case progress.KindBytes:
		if e.Title == "done" || e.Title == "already exists" {
			fmt.Fprintf(v.w, "%s%s: %s (%s)\n", stepPrefix(e.Step), shortLayer(e.Layer), e.Title, vm.FormatSize(uint64(e.Size)))
		}
	case progress.KindDone:
		fmt.Fprintf(v.w, "DONE %s\n", e.Digest)
	}
	// KindError prints nothing: the command's own error line, which
	// follows, says the same.
}

func (v *plainView) close() {}

func stepPrefix(step int) string {
	if step == 0 {
		return ""
	}
	return fmt.Sprintf("#%d ", step)
}

func shortLayer(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		d = d[:12]
	}
	return d
}

// ttyView redraws a live block: the steps with their state and the last
// output lines of the running one, and a bar per layer in transfer. Only
// the block is redrawn, at most 10 times a second; finished steps scroll
// up as plain lines.
type ttyView struct {
	w       io.Writer
	drawn   int // lines of the live block on screen
	last    time.Time
	step    *ttyStep
	layers  map[string]*progress.Event
	order   []string
	width   int
	started time.Time
}

type ttyStep struct {
	n, total int
	title    string
	start    time.Time
	tail     []string
}

func newTTYView(w io.Writer) *ttyView {
	width := 80
	if f, ok := w.(*os.File); ok {
		if c, _, err := term.GetSize(int(f.Fd())); err == nil && c > 20 {
			width = c
		}
	}
	return &ttyView{w: w, layers: map[string]*progress.Event{}, width: width, started: time.Now()}
}

func (v *ttyView) event(e progress.Event) {
	switch e.Kind {
	case progress.KindStepStart:
		v.step = &ttyStep{n: e.Step, total: e.Total, title: e.Title, start: e.Time}
	case progress.KindStepCached, progress.KindStepDone, progress.KindStepFailed:
		v.clear()
		title := ""
		if v.step != nil && v.step.n == e.Step {
			title = v.step.title
		}
		switch e.Kind {
		case progress.KindStepCached:
			fmt.Fprintf(v.w, "✔ [%d] %s  CACHED\n", e.Step, v.fit(title, 20))
		case progress.KindStepDone:
			fmt.Fprintf(v.w, "✔ [%d] %s  %.1fs\n", e.Step, v.fit(title, 20), e.Duration)
		default:
			fmt.Fprintf(v.w, "✘ [%d] %s\n", e.Step, v.fit(title, 6))
			if v.step != nil {
				for _, l := range v.step.tail {
					fmt.Fprintf(v.w, "    │ %s\n", v.fit(l, 8))
				}
			}
			fmt.Fprintf(v.w, "    %s\n", e.Error)
		}
		v.step = nil
	case progress.KindLog:
		if v.step != nil && v.step.n == e.Step {
			v.step.tail = append(v.step.tail, e.Line)
			if len(v.step.tail) > 6 {
				v.step.tail = v.step.tail[len(v.step.tail)-6:]
			}
		} else if e.Step == 0 {
			v.clear()
			fmt.Fprintln(v.w, e.Line)
		}
	case progress.KindBytes:
		if _, ok := v.layers[e.Layer]; !ok {
			v.order = append(v.order, e.Layer)
		}
		ec := e
		v.layers[e.Layer] = &ec
	case progress.KindDone, progress.KindError:
		v.redraw(true)
		return
	}
	v.redraw(false)
}

func (v *ttyView) fit(s string, reserve int) string {
	max := v.width - reserve
	if max < 10 {
		max = 10
	}
	if r := []rune(s); len(r) > max {
		return string(r[:max-1]) + "…"
	}
	return s
}

// clear erases the live block.
func (v *ttyView) clear() {
	if v.drawn > 0 {
		fmt.Fprintf(v.w, "\x1b[%dA\x1b[J", v.drawn)
		v.drawn = 0
	}
}

func (v *ttyView) redraw(force bool) {
	if !force && time.Since(v.last) < 100*time.Millisecond {
		return
	}
	v.last = time.Now()
	v.clear()
	var lines []string
	for _, id := range v.order {
		e := v.layers[id]
		lines = append(lines, layerBar(e, v.width))
	}
	if s := v.step; s != nil {
		lines = append(lines, fmt.Sprintf("⠿ [%d/%d] %s  %.1fs", s.n, s.total, v.fit(s.title, 20), time.Since(s.start).Seconds()))
		for _, l := range s.tail {
			lines = append(lines, "    │ "+v.fit(l, 8))
		}
	}
	for _, l := range lines {
		fmt.Fprintln(v.w, l)
	}
	v.drawn = len(lines)
}

// layerBar renders "abcdef012345 [=====>    ] 12M/40M downloading".
func layerBar(e *progress.Event, width int) string {
	const barW = 30
	fill := 0
	if e.Size > 0 {
		fill = int(float64(barW) * float64(e.Done) / float64(e.Size))
	}
	fill = min(max(fill, 0), barW)
	bar := strings.Repeat("=", fill) + strings.Repeat(" ", barW-fill)
	return fmt.Sprintf("%s [%s] %s/%s %s", shortLayer(e.Layer), bar,
		vm.FormatSize(uint64(e.Done)), vm.FormatSize(uint64(e.Size)), e.Title)
}

func (v *ttyView) close() {}
