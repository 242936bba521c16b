// Package modal is the one prompt a dashboard view can have open at a
// time: a y/N question (Confirm) or a form (Form, package form). While a
// prompt is open it takes the view's keys; the view shows View where its
// layout puts prompts. It replaces the form and confirm handling each view
// used to carry.
package modal

import (
	tea "charm.land/bubbletea/v2"

	"github.com/machinetop/machinetop/theme"
	"github.com/machinetop/machinetop/tui/form"
)

// Model is a view's prompt slot; the zero value has nothing open.
type Model struct {
	question string
	yes      func() tea.Cmd
	no       tea.Cmd

	form   *form.Model
	submit func(values []string) tea.Cmd
}

// Confirm opens the y/N question "question [y/N]". y or Y closes it and
// returns yes()'s Cmd (yes runs then, not now: actions mark state when they
// start); any other key closes it and returns no. It replaces a prompt that
// was open.
func (m *Model) Confirm(question string, yes func() tea.Cmd, no tea.Cmd) {
	m.Close()
	m.question, m.yes, m.no = question, yes, no
}

// Form opens f; when it is submitted, submit gets its values (in field
// order, trimmed) and its Cmd is returned. esc closes it. It replaces a
// prompt that was open.
func (m *Model) Form(f *form.Model, submit func(values []string) tea.Cmd) {
	m.Close()
	m.form, m.submit = f, submit
}

// Open reports whether a prompt is open.
func (m *Model) Open() bool { return m.yes != nil || m.form != nil }

// Question returns the open y/N question, "" when none.
func (m *Model) Question() string { return m.question }

// Close closes the prompt without answering it.
func (m *Model) Close() { *m = Model{} }

// Update gives msg to the open prompt and reports whether the prompt took
// it: every key while a prompt is open, and every other message (pastes,
// cursor blinks) while a form is. A view calls it for keys and for the
// messages it does not handle itself, and handles msg when it was not
// taken.
func (m *Model) Update(msg tea.Msg) (bool, tea.Cmd) {
	k, isKey := msg.(tea.KeyPressMsg)
	switch {
	case m.yes != nil && isKey:
		yes, no := m.yes, m.no
		m.Close()
		if s := k.String(); s == "y" || s == "Y" {
			return true, yes()
		}
		return true, no
	case m.form != nil:
		res, cmd := m.form.Update(msg)
		switch res {
		case form.Cancelled:
			m.Close()
		case form.Submitted:
			v, submit := m.form.Values(), m.submit
			m.Close()
			return true, submit(v)
		}
		return true, cmd
	}
	return false, nil
}

// View renders the open prompt in width cells: the question in the error
// style (it asks before destroying something) or the form; "" when none
// is open.
func (m *Model) View(th *theme.Theme, width int) string {
	switch {
	case m.yes != nil:
		return th.Error.Render(m.question + " [y/N]")
	case m.form != nil:
		return m.form.View(th, width)
	}
	return ""
}
