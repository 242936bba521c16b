package common

import (
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/machinetop/machinetop/tui/keys"
)

// Component is the contract of every top-level view of the dashboard
// (machines, machine detail, images, builds), after soft-serve's
// Component (a model, its key help and SetSize) and gh-dash's sections.
// The root model keeps its views in a list and talks to them only through
// this interface, so adding a view touches no switch.
type Component interface {
	// Update handles a message. The root sends keys and pastes to the
	// active view only and every other message to every view; each acts
	// on its own messages. Update never does I/O: it returns Cmds that
	// call the Source.
	Update(msg tea.Msg) tea.Cmd
	// View renders the view in exactly the size last given to SetSize.
	View() string
	// SetSize sets the area the view draws in, in cells.
	SetSize(width, height int)
	// Show is called when the view becomes the active one; it returns the
	// Cmds that load or start following its data. Hide is called when it
	// stops being active; its polling stops.
	Show() tea.Cmd
	Hide()
	// Capturing reports whether the view takes every key (a text input, a
	// prompt, a focused shell), so the root's global keys must not act.
	Capturing() bool
	// Title names the view in the title bar: its tab's label, or for a
	// view reached from another (detail) the crumb after that view's tab.
	Title() string
	// Cursor returns where the terminal's cursor belongs, in the view's
	// cells, when the view shows one (ok).
	Cursor() (x, y int, ok bool)
	// ShortHelp returns the footer's bindings, with their short labels
	// (keys.Map.Short), most useful first.
	ShortHelp() []key.Binding
	// FullHelp returns the help overlay's titled sections (keys.Map.Sections):
	// the titled form of bubbles' help.KeyMap.FullHelp.
	FullHelp() []keys.Section
}

// ShowMsg asks the root to make View the active view. The root gives the
// message to every view first, so the view can take Machine.
type ShowMsg struct {
	View keys.View
	// Machine names the machine to show, for a view that shows one
	// (detail).
	Machine string
}

// Show returns a Cmd that makes v the active view, showing machine (""
// for a view that shows no one machine).
func Show(v keys.View, machine string) tea.Cmd {
	return func() tea.Msg { return ShowMsg{View: v, Machine: machine} }
}

// Verb is a machine action another view can ask the machines view to run.
type Verb string

// The machine actions of ActionMsg.
const (
	VerbStart   Verb = "start"
	VerbStop    Verb = "stop"
	VerbRestart Verb = "restart"
	VerbReclaim Verb = "reclaim"
)

// ActionMsg asks the machines view to run Verb on machine Machine, with
// the same busy marking and status messages as its own keys (the detail
// view's s/x/r).
type ActionMsg struct {
	Machine string
	Verb    Verb
}

// Act returns a Cmd that sends ActionMsg{name, v}.
func Act(name string, v Verb) tea.Cmd {
	return func() tea.Msg { return ActionMsg{Machine: name, Verb: v} }
}
