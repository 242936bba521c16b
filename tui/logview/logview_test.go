package logview

import (
	"fmt"
	"strings"
	"testing"

	tea "charm.land/bubbletea/v2"

	"github.com/machinetop/machinetop/theme"
	"github.com/machinetop/machinetop/tui/keys"
)

func press(s string) tea.KeyPressMsg {
	switch s {
	case "enter":
		return tea.KeyPressMsg{Code: tea.KeyEnter}
	case "pgup":
		return tea.KeyPressMsg{Code: tea.KeyPgUp}
	}
	return tea.KeyPressMsg{Code: []rune(s)[0], Text: s}
}

func TestWriteKeepsPartialLinesAndStripsEscapes(t *testing.T) {
	m := New()
	m.SetSize(40, 5)
	m.Write([]byte("one\ntw"))
	m.Write([]byte("o\x1b[31m red\x1b[0m\r\nprogress 10%\rprogress 100%\n"))
	if m.Len() != 3 {
		t.Fatalf("%d lines", m.Len())
	}
	out := m.View(theme.New(theme.Dark, true), "t")
	for _, want := range []string{"two red", "progress 100%"} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "10%\n") || strings.Contains(out, "\x1b[31m") {
		t.Errorf("escapes or overwritten text left:\n%q", out)
	}
}

func TestBoundedFollowAndSearch(t *testing.T) {
	m := New()
	m.Max = 100
	m.SetSize(70, 6)
	for i := range 250 {
		m.AppendLine(fmt.Sprintf("line %d", i))
	}
	if m.Len() != 100 {
		t.Fatalf("kept %d lines", m.Len())
	}
	th := theme.New(theme.Dark, true)
	if out := m.View(th, "t"); !strings.Contains(out, "line 249") {
		t.Errorf("not following:\n%s", out)
	}
	k := keys.Default()
	m.Update(press("pgup"), k)
	if m.Following() {
		t.Error("still following after page up")
	}
	for _, s := range []string{"/", "1", "7", "7", "enter"} {
		m.Update(press(s), k)
	}
	if out := m.View(th, "t"); !strings.Contains(out, "line 177") {
		t.Errorf("search did not jump:\n%s", out)
	}
	m.Update(press("n"), k) // wraps around to the same single match
	if out := m.View(th, "t"); !strings.Contains(out, "line 177") || !strings.Contains(out, "/177 (n/N)") {
		t.Errorf("n:\n%s", out)
	}
	m.Update(press("G"), k)
	if !m.Following() {
		t.Error("G does not follow")
	}
}
