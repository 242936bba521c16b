// Package tui is machinetop's dashboard: the root Bubble Tea model that
// owns the views (machines, machine detail, images, builds), routes keys,
// refreshes the machine snapshot every couple of seconds in a tea.Cmd and
// draws the title bar, status line and key footer around the active view.
// The views live in sub-packages and talk through package common.
package tui

import (
	"context"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/machinetop/machinetop/theme"
	"github.com/machinetop/machinetop/tui/builds"
	"github.com/machinetop/machinetop/tui/common"
	"github.com/machinetop/machinetop/tui/detail"
	"github.com/machinetop/machinetop/tui/help"
	"github.com/machinetop/machinetop/tui/imagesview"
	"github.com/machinetop/machinetop/tui/keys"
	"github.com/machinetop/machinetop/tui/machines"
	"github.com/machinetop/machinetop/tui/shell"
	"github.com/machinetop/machinetop/tui/source"
)

// View identifies the active view.
type View int

// Views.
const (
	ViewMachines View = iota
	ViewDetail
	ViewImages
	ViewBuilds
)

// FPS is the frame rate the dashboard's renderer runs at: the shell
// pane's redraw rate. Bubble Tea's renderer wakes FPS times a second even
// when idle, which dominates the dashboard's idle CPU (a bare 60 Hz Go
// ticker costs about 1 % of a core on a 2-CPU VM), so it is kept low.
const FPS = shell.FPS

// DefaultRefresh is how often the machine snapshot is refreshed.
const DefaultRefresh = 2 * time.Second

// statusTTL is how long a status message stays.
const statusTTL = 10 * time.Second

// Options configure New.
type Options struct {
	Src source.Source
	// Theme is the theme to start with; nil means theme.FromEnv.
	Theme *theme.Theme
	// ThemeFixed keeps Theme even when the terminal reports its
	// background colour.
	ThemeFixed bool
	// Refresh is the snapshot interval (default DefaultRefresh).
	Refresh time.Duration
	// Now returns the time (default time.Now).
	Now func() time.Time
}

type tickMsg struct{ gen int }

// Model is the root model.
type Model struct {
	ctx        *common.Context
	opts       Options
	view       View
	machines   *machines.Model
	detail     *detail.Model
	images     *imagesview.Model
	builds     *builds.Model
	help       bool
	status     common.StatusMsg
	statusAt   time.Time
	width      int
	height     int
	fetching   bool
	refreshGen int
	loaded     bool
}

// New returns the dashboard's root model.
func New(o Options) *Model {
	if o.Theme == nil {
		o.Theme, o.ThemeFixed = theme.FromEnv()
	}
	if o.Refresh <= 0 {
		o.Refresh = DefaultRefresh
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	ctx := &common.Context{Src: o.Src, Theme: o.Theme, Keys: keys.Default(), Width: 80, Height: 21, Now: o.Now}
	return &Model{
		ctx: ctx, opts: o, machines: machines.New(ctx), detail: detail.New(ctx),
		images: imagesview.New(ctx), builds: builds.New(ctx), width: 80, height: 24,
	}
}

// Context returns the shared context (tests).
func (m *Model) Context() *common.Context { return m.ctx }

// ActiveView returns the active view.
func (m *Model) ActiveView() View { return m.view }

// Machines returns the machines view (tests).
func (m *Model) Machines() *machines.Model { return m.machines }

// Detail returns the detail view (tests).
func (m *Model) Detail() *detail.Model { return m.detail }

// Builds returns the builds view (tests).
func (m *Model) Builds() *builds.Model { return m.builds }

// Status returns the status line's message.
func (m *Model) Status() common.StatusMsg { return m.status }

// Close ends the shell sessions (the machines keep running).
func (m *Model) Close() { m.detail.CloseAll() }

// Init fetches the first snapshot and asks the terminal for its
// background colour.
func (m *Model) Init() tea.Cmd {
	cmds := []tea.Cmd{m.fetch()}
	if !m.opts.ThemeFixed {
		cmds = append(cmds, tea.RequestBackgroundColor)
	}
	return tea.Batch(cmds...)
}

// Fetch returns a Cmd that takes a snapshot (exported for tests and
// benchmarks).
func (m *Model) Fetch() tea.Cmd { return m.fetch() }

func (m *Model) fetch() tea.Cmd {
	m.fetching = true
	src := m.ctx.Src
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return common.SnapshotMsg{Snap: src.Snapshot(ctx)}
	}
}

func (m *Model) setSize(w, h int) {
	m.width, m.height = w, h
	m.ctx.Width, m.ctx.Height = w, max(h-3, 1)
}

func (m *Model) capturing() bool {
	switch m.view {
	case ViewMachines:
		return m.machines.Capturing()
	case ViewDetail:
		return m.detail.Capturing()
	case ViewImages:
		return m.images.Capturing()
	case ViewBuilds:
		return m.builds.Capturing()
	}
	return false
}

func (m *Model) switchTo(v View) tea.Cmd {
	if v == m.view {
		return nil
	}
	if m.view == ViewDetail {
		m.detail.Hide()
	}
	if m.view == ViewBuilds {
		m.builds.Hide()
	}
	m.view = v
	switch v {
	case ViewImages:
		return m.images.Load()
	case ViewBuilds:
		return m.builds.Show()
	}
	return nil
}

// Update handles a message.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.setSize(msg.Width, msg.Height)
		return m, m.detail.Update(msg)
	case tea.BackgroundColorMsg:
		if !m.opts.ThemeFixed {
			p := theme.Dark
			if !msg.IsDark() {
				p = theme.Light
			}
			m.ctx.Theme = theme.New(p, m.ctx.Theme.NoColor)
		}
		return m, nil
	case common.SnapshotMsg:
		m.fetching, m.loaded = false, true
		m.refreshGen++
		gen := m.refreshGen
		if !m.statusAt.IsZero() && m.opts.Now().Sub(m.statusAt) > statusTTL && m.status.Err == nil {
			m.status = common.StatusMsg{}
		}
		cmds := []tea.Cmd{
			m.machines.Update(msg), m.detail.Update(msg), m.images.Update(msg),
			tea.Tick(m.opts.Refresh, func(time.Time) tea.Msg { return tickMsg{gen} }),
		}
		return m, tea.Batch(cmds...)
	case tickMsg:
		if msg.gen != m.refreshGen || m.fetching {
			return m, nil
		}
		return m, m.fetch()
	case common.RefreshMsg:
		if m.fetching {
			return m, nil
		}
		return m, m.fetch()
	case common.StatusMsg:
		m.status, m.statusAt = msg, m.opts.Now()
		return m, nil
	case common.OpenDetailMsg:
		row, _ := m.machines.Row(msg.Name)
		m.switchTo(ViewDetail)
		return m, m.detail.Open(msg.Name, row)
	case tea.KeyPressMsg:
		return m, m.key(msg)
	case tea.PasteMsg:
		return m, m.active(msg)
	}
	// Everything else (stream results, spinner ticks, text input blinks)
	// goes to every view; each acts only on its own messages.
	return m, tea.Batch(m.machines.Update(msg), m.detail.Update(msg), m.images.Update(msg), m.builds.Update(msg))
}

func (m *Model) active(msg tea.Msg) tea.Cmd {
	switch m.view {
	case ViewMachines:
		return m.machines.Update(msg)
	case ViewDetail:
		return m.detail.Update(msg)
	case ViewImages:
		return m.images.Update(msg)
	case ViewBuilds:
		return m.builds.Update(msg)
	}
	return nil
}

func (m *Model) key(msg tea.KeyPressMsg) tea.Cmd {
	k := m.ctx.Keys
	if m.help {
		m.help = false
		return nil
	}
	if m.capturing() {
		return m.active(msg)
	}
	switch {
	case key.Matches(msg, k.Quit):
		m.Close()
		return tea.Quit
	case key.Matches(msg, k.Help):
		m.help = true
		return nil
	case key.Matches(msg, k.ViewMachines):
		return m.switchTo(ViewMachines)
	case key.Matches(msg, k.ViewImages):
		return m.switchTo(ViewImages)
	case key.Matches(msg, k.ViewBuilds):
		return m.switchTo(ViewBuilds)
	case key.Matches(msg, k.Back) && m.view == ViewDetail:
		return m.switchTo(ViewMachines)
	case m.view == ViewDetail && (key.Matches(msg, k.Start) || key.Matches(msg, k.Stop) || key.Matches(msg, k.Restart)):
		// Machine actions work from the detail view too.
		return m.machines.Do(m.detail.Name(), msg)
	}
	return m.active(msg)
}

// HelpView returns the keymap view whose keys the help overlay shows.
func (m *Model) HelpView() keys.View {
	switch m.view {
	case ViewDetail:
		if m.detail.Focused() {
			return keys.Shell
		}
		return keys.Detail
	case ViewImages:
		return keys.Images
	case ViewBuilds:
		return keys.Builds
	}
	return keys.Machines
}

func (m *Model) footer() [][2]string {
	switch m.HelpView() {
	case keys.Shell:
		return [][2]string{{"ctrl+]", "leave the shell (it keeps running)"}}
	case keys.Detail:
		return [][2]string{{"tab", "next tab"}, {"enter", "shell"}, {"F", "full screen"}, {"s/x/r", "start/stop/restart"}, {"esc", "back"}, {"?", "help"}, {"q", "quit"}}
	case keys.Images:
		return [][2]string{{"p", "pull"}, {"d", "delete"}, {"1", "machines"}, {"3", "builds"}, {"?", "help"}, {"q", "quit"}}
	case keys.Builds:
		return [][2]string{{"j/k", "job"}, {"b", "build"}, {"/", "search"}, {"n/N", "next/prev"}, {"f", "follow"}, {"?", "help"}, {"q", "quit"}}
	}
	return [][2]string{{"enter", "open"}, {"s", "start"}, {"x", "stop"}, {"r", "restart"}, {"d", "delete"}, {"c", "create"}, {"S", "default"}, {"/", "filter"}, {"?", "help"}, {"q", "quit"}}
}

var viewNames = []string{"1 Machines", "", "2 Images", "3 Builds"}

// View renders the screen.
func (m *Model) View() tea.View {
	var v tea.View
	v.AltScreen = true
	v.SetContent(m.Render())
	if m.view == ViewDetail && !m.help {
		if x, y, ok := m.detail.Cursor(); ok {
			v.Cursor = tea.NewCursor(x, y+1)
		}
	}
	return v
}

// Render returns the screen's text (View's content).
func (m *Model) Render() string {
	th := m.ctx.Theme
	var sb strings.Builder
	// Title bar.
	title := th.Title.Render("machinetop")
	for i, n := range viewNames {
		if n == "" {
			continue
		}
		active := View(i) == m.view || (m.view == ViewDetail && i == 0)
		if active {
			title += " " + th.TabActive.Render(" "+n+" ")
		} else {
			title += " " + th.Tab.Render(" "+n+" ")
		}
	}
	if m.view == ViewDetail {
		title += th.Muted.Render(" › ") + th.Text.Render(m.detail.Name())
	}
	sb.WriteString(common.Fit(title, m.width, 1) + "\n")
	var body string
	switch {
	case m.help:
		body = help.Render(th, m.ctx.Keys.Sections(m.HelpView()), m.ctx.Width, m.ctx.Height)
	case !m.loaded && m.view == ViewMachines:
		body = th.Muted.Render("loading machines…")
	case m.view == ViewMachines:
		body = m.machines.View()
	case m.view == ViewDetail:
		body = m.detail.View()
	case m.view == ViewImages:
		body = m.images.View()
	case m.view == ViewBuilds:
		body = m.builds.View()
	}
	sb.WriteString(common.Fit(body, m.ctx.Width, m.ctx.Height) + "\n")
	st := ""
	if m.status.Err != nil {
		st = th.Error.Render("error: " + m.status.Err.Error())
	} else if m.status.Text != "" {
		st = th.Text.Render(m.status.Text)
	}
	sb.WriteString(common.Fit(st, m.width, 1) + "\n")
	sb.WriteString(help.Footer(th, m.footer(), m.width))
	return sb.String()
}
