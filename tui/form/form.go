// Package form is a small modal form: a title and labelled text fields.
// tab/shift+tab (or up/down) move between fields, enter on the last field
// submits, esc cancels. It is used for creating machines, starting builds
// and the pull prompt.
package form

import (
	"strings"

	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"

	"github.com/machinetop/machinetop/theme"
	"github.com/machinetop/machinetop/tui/common"
)

// Field is one labelled input.
type Field struct {
	Label, Placeholder, Value string
}

// Result is what Update reports after a key.
type Result int

// Results of Update.
const (
	Editing   Result = iota // the form stays open
	Submitted               // enter on the last field: read Values
	Cancelled               // esc
)

// Model is a form.
type Model struct {
	Title  string
	labels []string
	inputs []textinput.Model
	focus  int
}

// New returns a form with its first field focused.
func New(title string, fields ...Field) *Model {
	m := &Model{Title: title}
	for _, f := range fields {
		ti := textinput.New()
		ti.Prompt = ""
		ti.Placeholder = f.Placeholder
		ti.SetValue(f.Value)
		ti.SetWidth(40)
		m.labels = append(m.labels, f.Label)
		m.inputs = append(m.inputs, ti)
	}
	if len(m.inputs) > 0 {
		m.inputs[0].Focus()
	}
	return m
}

// Values returns the fields' values, trimmed, in order.
func (m *Model) Values() []string {
	out := make([]string, len(m.inputs))
	for i, ti := range m.inputs {
		out[i] = strings.TrimSpace(ti.Value())
	}
	return out
}

func (m *Model) move(d int) {
	m.inputs[m.focus].Blur()
	m.focus = (m.focus + d + len(m.inputs)) % len(m.inputs)
	m.inputs[m.focus].Focus()
}

// Update handles a message and reports whether the form was submitted or
// cancelled.
func (m *Model) Update(msg tea.Msg) (Result, tea.Cmd) {
	if k, ok := msg.(tea.KeyPressMsg); ok {
		switch k.String() {
		case "esc":
			return Cancelled, nil
		case "tab", "down":
			m.move(1)
			return Editing, nil
		case "shift+tab", "up":
			m.move(-1)
			return Editing, nil
		case "enter":
			if m.focus == len(m.inputs)-1 {
				return Submitted, nil
			}
			m.move(1)
			return Editing, nil
		}
	}
	var cmd tea.Cmd
	m.inputs[m.focus], cmd = m.inputs[m.focus].Update(msg)
	return Editing, cmd
}

// View renders the form in width cells.
func (m *Model) View(th *theme.Theme, width int) string {
	lw := 0
	for _, l := range m.labels {
		lw = max(lw, len(l))
	}
	var sb strings.Builder
	sb.WriteString(th.Title.Render(m.Title))
	for i, ti := range m.inputs {
		mark := theme.Blank
		if i == m.focus {
			mark = theme.Gutter
		}
		ti.SetWidth(max(width-lw-6, 10))
		sb.WriteString("\n" + mark + th.Muted.Render(common.Pad(m.labels[i], lw)) + "  " + ti.View())
	}
	sb.WriteString("\n" + th.Muted.Render("tab next field · enter on the last field submits · esc cancels"))
	return sb.String()
}
