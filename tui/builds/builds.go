// Package builds is the dashboard's builds view: every build and pull
// journalled under the data directory (started here or by the CLI in any
// process), the selected job's steps with their status and duration, and
// its log followed live in a searchable log view. A form starts a build by
// running `machinetop build` as a subprocess, so it journals like the CLI.
package builds

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/machinetop/machinetop/images/progress"
	"github.com/machinetop/machinetop/tui/common"
	"github.com/machinetop/machinetop/tui/form"
	"github.com/machinetop/machinetop/tui/logview"
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
	form    *form.Model
}

// New returns the builds view.
func New(ctx *common.Context) *Model { return &Model{ctx: ctx, log: logview.New()} }

// Capturing reports whether the view takes every key.
func (m *Model) Capturing() bool { return m.form != nil || m.log.Searching() }

// Show starts polling the journals; Hide stops it.
func (m *Model) Show() tea.Cmd {
	m.visible = true
	m.gen++
	return tea.Batch(m.list(m.gen, 0), m.follow(m.gen, 0))
}

// Hide stops polling.
func (m *Model) Hide() { m.visible = false; m.gen++ }

// Steps returns the followed job's steps.
func (m *Model) Steps() []Step { return m.steps }

func (m *Model) list(gen int, delay time.Duration) tea.Cmd {
	dir := m.ctx.Src.JournalDir()
	return func() tea.Msg {
		time.Sleep(delay)
		jobs, err := progress.List(dir)
		return listMsg{gen: gen, jobs: jobs, err: err}
	}
}

func (m *Model) follow(gen int, delay time.Duration) tea.Cmd {
	if m.job == "" {
		return nil
	}
	path := filepath.Join(m.ctx.Src.JournalDir(), m.job+".jsonl")
	job, off := m.job, m.off
	return func() tea.Msg {
		time.Sleep(delay)
		evs, next, _ := progress.ReadFrom(path, off)
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
	k := m.ctx.Keys
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
		if m.form != nil {
			res, cmd := m.form.Update(msg)
			switch res {
			case form.Cancelled:
				m.form = nil
			case form.Submitted:
				v := m.form.Values()
				m.form = nil
				return m.build(v[0], v[1], v[2])
			}
			return cmd
		}
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
				wd, _ := os.Getwd()
				m.form = form.New("Start a build (runs `machinetop build`)",
					form.Field{Label: "Context dir", Value: wd},
					form.Field{Label: "Dockerfile", Placeholder: "default: CONTEXT/Dockerfile"},
					form.Field{Label: "Tag", Placeholder: "NAME:TAG"})
				return nil
			}
		}
		_, cmd := m.log.Update(msg, k)
		return cmd
	default:
		if m.form != nil {
			_, cmd := m.form.Update(msg)
			return cmd
		}
		_, cmd := m.log.Update(msg, k)
		return cmd
	}
}

// BuildArgs returns the arguments of the `machinetop build` subprocess.
func BuildArgs(dir, dockerfile, tag string) []string {
	args := []string{"build"}
	if tag != "" {
		args = append(args, "-t", tag)
	}
	if dockerfile != "" {
		args = append(args, "-f", dockerfile)
	}
	return append(args, dir)
}

func (m *Model) build(dir, dockerfile, tag string) tea.Cmd {
	if dir == "" {
		return common.Status(common.StatusMsg{Err: fmt.Errorf("build: no context directory given")})
	}
	exe := m.ctx.Src.Executable()
	args := BuildArgs(dir, dockerfile, tag)
	run := func() tea.Msg {
		cmd := exec.Command(exe, args...)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		err := cmd.Run()
		if err != nil {
			if s := strings.TrimSpace(errb.String()); s != "" {
				lines := strings.Split(s, "\n")
				err = fmt.Errorf("%v: %s", err, lines[len(lines)-1])
			}
		}
		return BuildDoneMsg{Tag: tag, Err: err}
	}
	// Jump to the new job once its journal appears.
	m.job = ""
	m.cursor = 0
	return tea.Batch(run, common.Status(common.Statusf("build %s started", tag)), m.list(m.gen, 500*time.Millisecond))
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
	w, h := m.ctx.Width, m.ctx.Height
	if m.form != nil {
		return common.Fit(m.form.View(th, w), w, h)
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
