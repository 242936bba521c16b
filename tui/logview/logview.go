// Package logview is a scrollable, searchable view of text lines kept in a
// bounded buffer (the oldest lines are dropped). It follows new lines
// unless the user scrolls up; / searches, n/N jump between matches. It is
// used for console logs and build logs; terminal escapes are stripped, as
// logs never go through a terminal emulator.
package logview

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/machinetop/machinetop/theme"
	"github.com/machinetop/machinetop/tui/common"
	"github.com/machinetop/machinetop/tui/keys"
)

// DefaultMax is the default number of lines kept.
const DefaultMax = 5000

// Model is a log view.
type Model struct {
	// Max is how many lines are kept.
	Max     int
	lines   []string
	partial string
	top     int // first line shown
	follow  bool
	width   int
	height  int

	search    textinput.Model
	searching bool
	query     string
	match     int // line index of the current match, -1 none
}

// New returns an empty view that follows new lines.
func New() *Model {
	ti := textinput.New()
	ti.Prompt = "/"
	return &Model{Max: DefaultMax, follow: true, search: ti, match: -1}
}

// SetSize sets the view's size in cells (the last line is the status bar).
func (m *Model) SetSize(w, h int) {
	m.width, m.height = w, h
	m.clamp()
}

// Following reports whether the view sticks to the end.
func (m *Model) Following() bool { return m.follow }

// Searching reports whether the search prompt takes the keys.
func (m *Model) Searching() bool { return m.searching }

// Len is the number of lines held.
func (m *Model) Len() int { return len(m.lines) }

// Reset drops every line.
func (m *Model) Reset() {
	m.lines, m.partial, m.top, m.match = nil, "", 0, -1
	m.follow = true
}

// Write appends text; a last line without a newline is held until the
// rest arrives. Carriage returns and terminal escapes are removed.
func (m *Model) Write(p []byte) {
	s := m.partial + string(p)
	parts := strings.Split(s, "\n")
	m.partial = parts[len(parts)-1]
	for _, l := range parts[:len(parts)-1] {
		m.add(l)
	}
	m.trim()
}

// AppendLine adds one complete line.
func (m *Model) AppendLine(l string) {
	m.add(l)
	m.trim()
}

func (m *Model) add(l string) {
	l = strings.TrimRight(ansi.Strip(l), "\r")
	if i := strings.LastIndexByte(l, '\r'); i >= 0 {
		l = l[i+1:]
	}
	m.lines = append(m.lines, strings.ReplaceAll(l, "\t", "    "))
}

func (m *Model) trim() {
	if len(m.lines) > m.Max {
		drop := len(m.lines) - m.Max
		m.lines = append(m.lines[:0:0], m.lines[drop:]...)
		m.top = max(m.top-drop, 0)
		if m.match >= 0 {
			m.match -= drop
		}
	}
	if m.follow {
		m.top = m.maxTop()
	}
}

func (m *Model) bodyHeight() int { return max(m.height-1, 1) }

func (m *Model) maxTop() int { return max(len(m.lines)-m.bodyHeight(), 0) }

func (m *Model) clamp() {
	m.top = max(0, min(m.top, m.maxTop()))
	if m.follow {
		m.top = m.maxTop()
	}
}

func (m *Model) scroll(d int) {
	m.top += d
	m.follow = false
	m.clamp()
	if m.top >= m.maxTop() && d > 0 {
		m.follow = true
	}
}

// find moves to the next (dir 1) or previous (dir -1) line containing the
// query, wrapping around.
func (m *Model) find(dir int) bool {
	if m.query == "" || len(m.lines) == 0 {
		return false
	}
	q := strings.ToLower(m.query)
	start := m.match
	if start < 0 {
		start = m.top - dir
		if dir < 0 {
			start = m.top + m.bodyHeight()
		}
	}
	n := len(m.lines)
	for i := 1; i <= n; i++ {
		j := ((start+dir*i)%n + n) % n
		if strings.Contains(strings.ToLower(m.lines[j]), q) {
			m.match = j
			m.follow = false
			if j < m.top || j >= m.top+m.bodyHeight() {
				m.top = j - m.bodyHeight()/2
			}
			m.clamp()
			return true
		}
	}
	return false
}

// Update handles keys; it returns whether the key was used.
func (m *Model) Update(msg tea.Msg, k *keys.Map) (bool, tea.Cmd) {
	km, ok := msg.(tea.KeyPressMsg)
	if !ok {
		if m.searching {
			var cmd tea.Cmd
			m.search, cmd = m.search.Update(msg)
			return true, cmd
		}
		return false, nil
	}
	if m.searching {
		switch km.String() {
		case "esc":
			m.searching = false
			m.search.Blur()
		case "enter":
			m.searching = false
			m.search.Blur()
			m.query = m.search.Value()
			m.match = -1
			m.find(1)
		default:
			var cmd tea.Cmd
			m.search, cmd = m.search.Update(msg)
			return true, cmd
		}
		return true, nil
	}
	page := m.bodyHeight()
	switch {
	case key.Matches(km, k.Up):
		m.scroll(-1)
	case key.Matches(km, k.Down):
		m.scroll(1)
	case key.Matches(km, k.PageUp):
		m.scroll(-page)
	case key.Matches(km, k.PageDown):
		m.scroll(page)
	case key.Matches(km, k.Top):
		m.follow = false
		m.top = 0
	case key.Matches(km, k.Bottom):
		m.follow = true
		m.clamp()
	case key.Matches(km, k.Follow):
		m.follow = !m.follow
		m.clamp()
	case key.Matches(km, k.Search):
		m.searching = true
		m.search.SetValue("")
		return true, m.search.Focus()
	case key.Matches(km, k.NextMatch):
		m.find(1)
	case key.Matches(km, k.PrevMatch):
		m.find(-1)
	default:
		return false, nil
	}
	return true, nil
}

// View renders the lines and a status bar; title names the log.
func (m *Model) View(th *theme.Theme, title string) string {
	var sb strings.Builder
	h := m.bodyHeight()
	q := strings.ToLower(m.query)
	for i := m.top; i < m.top+h; i++ {
		if i > m.top {
			sb.WriteByte('\n')
		}
		if i >= len(m.lines) {
			continue
		}
		l := m.lines[i]
		if lw := ansi.StringWidth(l); lw > m.width {
			l = ansi.Truncate(l, m.width, "…")
		}
		switch {
		case i == m.match:
			sb.WriteString(th.Selected.Render(l))
		case q != "" && strings.Contains(strings.ToLower(l), q):
			sb.WriteString(th.Accent.Render(l))
		default:
			sb.WriteString(l)
		}
	}
	var bar string
	if m.searching {
		bar = m.search.View()
	} else {
		mode := "follow"
		if !m.follow {
			mode = "paused (G or f follows)"
		}
		bar = th.Muted.Render(fmt.Sprintf("%s · %d lines · %s", title, len(m.lines), mode))
		if m.query != "" {
			bar += th.Muted.Render(" · /" + m.query + " (n/N)")
		}
	}
	return common.Fit(sb.String(), m.width, h) + "\n" + common.Fit(bar, m.width, 1)
}
