// Package builds is the dashboard's builds view: every build and pull
// journalled under the data directory (started here or by the CLI in any
// process), the selected job's steps with their status and duration, and
// its log followed live in a searchable log view. A form starts a build
// (Source.Build, which journals like the CLI). Journals are read through
// the Source, polled while the view is shown.
package builds

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/machinetop/machinetop/images/progress"
	"github.com/machinetop/machinetop/tui/common"
	"github.com/machinetop/machinetop/tui/form"
	"github.com/machinetop/machinetop/tui/keys"
	"github.com/machinetop/machinetop/tui/logview"
	"github.com/machinetop/machinetop/tui/modal"
	"github.com/machinetop/machinetop/tui/source"
	"github.com/machinetop/machinetop/tui/table"
)

// Polling intervals while the view is shown.
const (
	listEvery   = 2 * time.Second
	followEvery = 300 * time.Millisecond
)

// Step is one step of a job as the view shows it.
type Step struct {
	N     int
	Title string
	// State is "running", "cached", "done" or "failed".
	State    string
	Duration time.Duration
	Started  time.Time
}

type listMsg struct {
	gen  int
	jobs []progress.Summary
	err  error
}

type eventsMsg struct {
	gen int
	job string
	evs []progress.Event
	off int64
}

// BuildDoneMsg reports the end of a build started from the dashboard.
type BuildDoneMsg struct {
	Tag string
	Err error
}

// Model is the builds view.
type Model struct {
	ctx     *common.Context
	jobs    []progress.Summary
	err     error
	cursor  int
	job     string // the job followed
	off     int64
	steps   []Step
	state   string
	log     *logview.Model
	gen     int
	visible bool
	// modal is the build form.
	modal modal.Model
	// wd is the build form's default context directory: the directory
	// the dashboard was started in.
	wd string

	width, height int
}

var _ common.Component = (*Model)(nil)

// New returns the builds view.
func New(ctx *common.Context) *Model {
	wd, _ := os.Getwd()
	return &Model{ctx: ctx, log: logview.New(), wd: wd}
}

// Capturing implements common.Component: the build form or the log's
// search prompt is open.
func (m *Model) Capturing() bool { return m.modal.Open() || m.log.Searching() }

// SetSize implements common.Component.
func (m *Model) SetSize(w, h int) { m.width, m.height = w, h }

// Show implements common.Component: it starts polling the journals.
func (m *Model) Show() tea.Cmd {
	m.visible = true
	m.gen++
	return tea.Batch(m.list(m.gen, 0), m.follow(m.gen, 0))
}

// Hide implements common.Component: polling stops.
func (m *Model) Hide() { m.visible = false; m.gen++ }

// Title implements common.Component.
func (m *Model) Title() string { return "Builds" }

// Cursor implements common.Component: the view has no cursor of its own.
func (m *Model) Cursor() (int, int, bool) { return 0, 0, false }

// ShortHelp implements common.Component.
func (m *Model) ShortHelp() []key.Binding {
	k := m.ctx.Keys
	return k.Short(k.Down, k.Up, k.NewBuild, k.Search, k.NextMatch, k.PrevMatch, k.Follow)
}

// FullHelp implements common.Component.
func (m *Model) FullHelp() []keys.Section { return m.ctx.Keys.Sections(keys.Builds) }

// Steps returns the followed job's steps.
func (m *Model) Steps() []Step { return m.steps }

// list returns a Cmd that lists the jobs after delay.
func (m *Model) list(gen int, delay time.Duration) tea.Cmd {
	src := m.ctx.Src
	return func() tea.Msg {
		time.Sleep(delay)
		jobs, err := src.Jobs()
		return listMsg{gen: gen, jobs: jobs, err: err}
	}
}

// follow returns a Cmd that reads the followed job's new events after
// delay. A journal not readable yet (or any more) reads as no events; the
// list shows why.
func (m *Model) follow(gen int, delay time.Duration) tea.Cmd {
	if m.job == "" {
		return nil
	}
	src, job, off := m.ctx.Src, m.job, m.off
	return func() tea.Msg {
		time.Sleep(delay)
		evs, next, _ := src.JobEvents(job, off)
		return eventsMsg{gen: gen, job: job, evs: evs, off: next}
	}
}

func (m *Model) selectJob(job string) tea.Cmd {
	if job == m.job {
		return nil
	}
	m.job, m.off, m.steps, m.state = job, 0, nil, ""
	m.log.Reset()
	m.gen++
	return tea.Batch(m.list(m.gen, listEvery), m.follow(m.gen, 0))
}

// Apply folds journal events into the steps and the log (exported for
// tests).
func (m *Model) Apply(evs []progress.Event) {
	for _, e := range evs {
		switch e.Kind {
		case progress.KindStart:
			m.state = "running"
			m.log.AppendLine("== " + e.Title)
		case progress.KindStepStart:
			m.step(e).State, m.step(e).Started = "running", e.Time
			m.log.AppendLine(fmt.Sprintf("[%d/%d] %s", e.Step, e.Total, e.Title))
		case progress.KindStepCached:
			m.step(e).State = "cached"
			m.log.AppendLine(fmt.Sprintf("[%d/%d] %s (cached)", e.Step, e.Total, m.step(e).Title))
		case progress.KindStepDone:
			s := m.step(e)
			s.State, s.Duration = "done", time.Duration(e.Duration*float64(time.Second))
		case progress.KindStepFailed:
			m.step(e).State = "failed"
			m.log.AppendLine("error: " + e.Error)
		case progress.KindLog:
			m.log.AppendLine(e.Line)
		case progress.KindBytes:
			// Shown by the images view; journals keep them for replay.
		case progress.KindDone:
			m.state = "done"
			m.log.AppendLine("== done " + e.Digest + " " + strings.Join(e.Tags, " "))
		case progress.KindError:
			m.state = "failed"
			m.log.AppendLine("== failed: " + e.Error)
		}
	}
}

func (m *Model) step(e progress.Event) *Step {
	for i := range m.steps {
		if m.steps[i].N == e.Step {
			if e.Title != "" && m.steps[i].Title == "" {
				m.steps[i].Title = e.Title
			}
			return &m.steps[i]
		}
	}
	m.steps = append(m.steps, Step{N: e.Step, Title: e.Title})
	return &m.steps[len(m.steps)-1]
}

// Update handles a message.
func (m *Model) Update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case listMsg:
		if msg.gen != m.gen || !m.visible {
			return nil
		}
		m.jobs, m.err = msg.jobs, msg.err
		m.cursor = min(m.cursor, max(len(m.jobs)-1, 0))
		if m.job == "" && len(m.jobs) > 0 {
			return m.selectJob(m.jobs[m.cursor].Job)
		}
		return m.list(m.gen, listEvery)
	case eventsMsg:
		if msg.gen != m.gen || msg.job != m.job || !m.visible {
			return nil
		}
		m.Apply(msg.evs)
		m.off = msg.off
		return m.follow(m.gen, followEvery)
	case BuildDoneMsg:
		if msg.Err != nil {
			return common.Status(common.StatusMsg{Err: fmt.Errorf("build %s: %w", msg.Tag, msg.Err)})
		}
		return common.Status(common.Statusf("build %s finished", msg.Tag))
	case tea.KeyPressMsg:
		return m.key(msg)
	}
	if used, cmd := m.modal.Update(msg); used {
		return cmd
	}
	_, cmd := m.log.Update(msg, m.ctx.Keys)
	return cmd
}

// key handles a key: the build form takes it first, then the job list's
// keys (unless the log's search prompt is open), then the log.
func (m *Model) key(msg tea.KeyPressMsg) tea.Cmd {
	if used, cmd := m.modal.Update(msg); used {
		return cmd
	}
	k := m.ctx.Keys
	if !m.log.Searching() {
		switch {
		case key.Matches(msg, k.Up), key.Matches(msg, k.Down):
			c, _ := common.MoveCursor(msg, k, m.cursor, len(m.jobs))
			if c == m.cursor {
				return nil
			}
			m.cursor = c
			return m.selectJob(m.jobs[m.cursor].Job)
		case key.Matches(msg, k.NewBuild):
			m.modal.Form(form.New("Start a build (runs `machinetop build`)",
				form.Field{Label: "Context dir", Value: m.wd},
				form.Field{Label: "Dockerfile", Placeholder: "default: CONTEXT/Dockerfile"},
				form.Field{Label: "Tag", Placeholder: "NAME:TAG"}),
				func(v []string) tea.Cmd { return m.build(source.BuildRequest{Dir: v[0], Dockerfile: v[1], Tag: v[2]}) })
			return nil
		}
	}
	_, cmd := m.log.Update(msg, k)
	return cmd
}

// build returns the Cmd that runs b and then jumps to its job once its
// journal appears.
func (m *Model) build(b source.BuildRequest) tea.Cmd {
	if b.Dir == "" {
		return common.Status(common.StatusMsg{Err: fmt.Errorf("build: no context directory given")})
	}
	src := m.ctx.Src
	run := func() tea.Msg {
		return BuildDoneMsg{Tag: b.Tag, Err: src.Build(context.Background(), b)}
	}
	m.job = ""
	m.cursor = 0
	// In sequence, so a quick failure is not overwritten by "started".
	return tea.Batch(tea.Sequence(common.Status(common.Statusf("build %s started", b.Tag)), run), m.list(m.gen, 500*time.Millisecond))
}

// Columns of the jobs table.
var Columns = []table.Column{
	{Title: "JOB", Min: 22, Drop: 2},
	{Title: "WHAT", Min: 10, Max: 50},
	{Title: "STATE", Min: 7},
	{Title: "STARTED", Min: 8, Right: true, Drop: 1},
}

// View renders the view.
func (m *Model) View() string {
	th := m.ctx.Theme
	w, h := m.width, m.height
	if m.modal.Open() {
		return common.Fit(m.modal.View(th, w), w, h)
	}
	var sb strings.Builder
	if m.err != nil {
		sb.WriteString(th.Error.Render("cannot read journals: "+m.err.Error()) + "\n")
	}
	if len(m.jobs) == 0 {
		sb.WriteString(th.Muted.Render("no builds or pulls yet · b starts a build · `machinetop build` in any terminal shows up here"))
		return common.Fit(sb.String(), w, h)
	}
	listH := min(len(m.jobs)+1, max(h/4, 3))
	t := table.Table{Columns: Columns, Cursor: m.cursor}
	now := m.ctx.Now()
	for _, j := range m.jobs {
		st := th.State(j.State)
		t.Rows = append(t.Rows, []table.Cell{
			{Text: j.Job, Style: &th.Muted}, {Text: j.Title}, {Text: j.State, Style: &st},
			{Text: common.FormatDuration(now.Sub(j.Started)) + " ago", Style: &th.Muted},
		})
	}
	body, _ := t.Render(th, w, listH)
	sb.WriteString(common.Fit(body, w, listH) + "\n")
	stepsH := min(len(m.steps), max(h/4, 2))
	first := max(len(m.steps)-stepsH, 0)
	for _, s := range m.steps[first:] {
		d := "-"
		switch {
		case s.State == "done" || s.State == "failed":
			d = s.Duration.Round(100 * time.Millisecond).String()
		case s.State == "running" && !s.Started.IsZero():
			d = now.Sub(s.Started).Round(time.Second).String()
		}
		sb.WriteString(common.Fit(fmt.Sprintf("%s %s %s %s", common.PadLeft(fmt.Sprint(s.N), 3), th.State(s.State).Render(common.Pad(s.State, 7)), common.PadLeft(d, 7), s.Title), w, 1) + "\n")
	}
	used := listH + 1 + stepsH
	m.log.SetSize(w, max(h-used, 2))
	sb.WriteString(th.Border.Render(strings.Repeat("─", w)) + "\n")
	sb.WriteString(m.log.View(th, "log of "+m.job))
	return common.Fit(sb.String(), w, h)
}

// State returns the followed job's state: "running", "done", "failed",
// or "" before its first event.
func (m *Model) State() string { return m.state }
