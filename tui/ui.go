// Package tui is machinetop's dashboard: the root Bubble Tea model that
// keeps the views (machines, machine detail, images, builds) in a list of
// common.Component, routes keys and messages to them, refreshes the
// machine snapshot every couple of seconds in a tea.Cmd and draws the
// title bar, status line and key footer (from the active view's key help)
// around the active view. The views live in sub-packages and talk through
// package common's messages.
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

// page is one top-level view and how the root shows it.
type page struct {
	id   keys.View
	view common.Component
	// show is the global key that makes the view active; its key labels
	// the view's tab. Unbound for a view reached from another (detail).
	show key.Binding
	// parent is the view whose tab stays lit while this one is active and
	// which back returns to; "" for a view with a tab.
	parent keys.View
}

// Model is the root model.
type Model struct {
	ctx  *common.Context
	opts Options
	// pages are the views in title-bar order; active is the id of the one
	// shown.
	pages  []page
	active keys.View
	// The views by type, for Close and the accessors tests use.
	machines *machines.Model
	detail   *detail.Model
	builds   *builds.Model

	help       bool
	status     common.StatusMsg
	statusAt   time.Time
	width      int
	height     int
	fetching   bool
	refreshGen int
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
	ctx := &common.Context{Src: o.Src, Theme: o.Theme, Keys: keys.Default(), Now: o.Now}
	m := &Model{ctx: ctx, opts: o, machines: machines.New(ctx), detail: detail.New(ctx), builds: builds.New(ctx), active: keys.Machines}
	k := ctx.Keys
	m.pages = []page{
		{id: keys.Machines, view: m.machines, show: k.ViewMachines},
		{id: keys.Detail, view: m.detail, parent: keys.Machines},
		{id: keys.Images, view: imagesview.New(ctx), show: k.ViewImages},
		{id: keys.Builds, view: m.builds, show: k.ViewBuilds},
	}
	m.setSize(80, 24)
	return m
}

// Context returns the shared context (tests).
func (m *Model) Context() *common.Context { return m.ctx }

// ActiveView returns the active view.
func (m *Model) ActiveView() keys.View { return m.active }

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

// bodyHeight is the height of the views' area: the screen less the title
// bar, the status line and the footer.
func (m *Model) bodyHeight() int { return max(m.height-3, 1) }

func (m *Model) setSize(w, h int) {
	m.width, m.height = w, h
	for _, p := range m.pages {
		p.view.SetSize(w, m.bodyHeight())
	}
}

// page returns the page of view id; an unknown id is the first page.
func (m *Model) page(id keys.View) page {
	for _, p := range m.pages {
		if p.id == id {
			return p
		}
	}
	return m.pages[0]
}

// current returns the active view.
func (m *Model) current() common.Component { return m.page(m.active).view }

// show makes view id the active one.
func (m *Model) show(id keys.View) tea.Cmd {
	next := m.page(id)
	if next.id == m.active {
		return nil
	}
	m.current().Hide()
	m.active = next.id
	return next.view.Show()
}

// broadcast gives msg to every view.
func (m *Model) broadcast(msg tea.Msg) tea.Cmd {
	cmds := make([]tea.Cmd, 0, len(m.pages))
	for _, p := range m.pages {
		cmds = append(cmds, p.view.Update(msg))
	}
	return tea.Batch(cmds...)
}

// Update handles a message.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.setSize(msg.Width, msg.Height)
		return m, nil
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
		return m, tea.Batch(m.snapshot(), m.broadcast(msg))
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
	case common.ShowMsg:
		// The views first, so the one shown has taken its argument.
		cmd := m.broadcast(msg)
		return m, tea.Batch(cmd, m.show(msg.View))
	case tea.KeyPressMsg:
		return m, m.key(msg)
	case tea.PasteMsg:
		return m, m.current().Update(msg)
	}
	// Everything else (stream results, spinner ticks, text input blinks,
	// requests between views) goes to every view; each acts only on its
	// own messages.
	return m, m.broadcast(msg)
}

// snapshot notes a snapshot's arrival: it ages the status line and arms
// the next refresh.
func (m *Model) snapshot() tea.Cmd {
	m.fetching = false
	m.refreshGen++
	gen := m.refreshGen
	if !m.statusAt.IsZero() && m.opts.Now().Sub(m.statusAt) > statusTTL && m.status.Err == nil {
		m.status = common.StatusMsg{}
	}
	return tea.Tick(m.opts.Refresh, func(time.Time) tea.Msg { return tickMsg{gen} })
}

// key handles a key: it closes the help overlay, goes to a capturing
// view, or is a global key (quit, help, a view's key, back to the parent
// view), else goes to the active view.
func (m *Model) key(msg tea.KeyPressMsg) tea.Cmd {
	k := m.ctx.Keys
	if m.help {
		m.help = false
		return nil
	}
	cur := m.page(m.active)
	if cur.view.Capturing() {
		return cur.view.Update(msg)
	}
	switch {
	case key.Matches(msg, k.Quit):
		m.Close()
		return tea.Quit
	case key.Matches(msg, k.Help):
		m.help = true
		return nil
	case key.Matches(msg, k.Back) && cur.parent != "":
		return m.show(cur.parent)
	}
	for _, p := range m.pages {
		if key.Matches(msg, p.show) {
			return m.show(p.id)
		}
	}
	return cur.view.Update(msg)
}

// footer returns the footer's bindings: the active view's, then help and
// quit unless the view takes every key.
func (m *Model) footer() ([]key.Binding, int) {
	v := m.current()
	out := v.ShortHelp()
	if v.Capturing() {
		return out, 0
	}
	global := m.ctx.Keys.Short(m.ctx.Keys.Help, m.ctx.Keys.Quit)
	return append(out, global...), len(global)
}

// View renders the screen.
func (m *Model) View() tea.View {
	var v tea.View
	v.AltScreen = true
	v.SetContent(m.Render())
	if !m.help {
		if x, y, ok := m.current().Cursor(); ok {
			v.Cursor = tea.NewCursor(x, y+1)
		}
	}
	return v
}

// titleBar renders the first line: the tabs of the views with a key, the
// active one (or its parent) lit, and the crumb of a view without a tab.
func (m *Model) titleBar() string {
	th := m.ctx.Theme
	cur := m.page(m.active)
	title := th.Title.Render("machinetop")
	for _, p := range m.pages {
		if len(p.show.Keys()) == 0 {
			continue
		}
		tab := " " + p.show.Help().Key + " " + p.view.Title() + " "
		if p.id == cur.id || p.id == cur.parent {
			title += " " + th.TabActive.Render(tab)
		} else {
			title += " " + th.Tab.Render(tab)
		}
	}
	if cur.parent != "" {
		title += th.Muted.Render(" › ") + th.Text.Render(cur.view.Title())
	}
	return common.Fit(title, m.width, 1)
}

// Render returns the screen's text (View's content).
func (m *Model) Render() string {
	th := m.ctx.Theme
	var sb strings.Builder
	sb.WriteString(m.titleBar() + "\n")
	var body string
	if m.help {
		body = help.Render(th, m.current().FullHelp(), m.width, m.bodyHeight())
	} else {
		body = m.current().View()
	}
	sb.WriteString(common.Fit(body, m.width, m.bodyHeight()) + "\n")
	st := ""
	if m.status.Err != nil {
		st = th.Error.Render("error: " + m.status.Err.Error())
	} else if m.status.Text != "" {
		st = th.Text.Render(m.status.Text)
	}
	sb.WriteString(common.Fit(st, m.width, 1) + "\n")
	bindings, keep := m.footer()
	sb.WriteString(help.Footer(th, bindings, m.width, keep))
	return sb.String()
}
