package modal

import (
	"testing"

	tea "charm.land/bubbletea/v2"

	"github.com/machinetop/machinetop/theme"
	"github.com/machinetop/machinetop/tui/form"
)

type answer string

func key(s string) tea.KeyPressMsg {
	switch s {
	case "enter":
		return tea.KeyPressMsg{Code: tea.KeyEnter}
	case "esc":
		return tea.KeyPressMsg{Code: tea.KeyEscape}
	case "tab":
		return tea.KeyPressMsg{Code: tea.KeyTab}
	}
	return tea.KeyPressMsg{Code: []rune(s)[0], Text: s}
}

func msgOf(cmd tea.Cmd) tea.Msg {
	if cmd == nil {
		return nil
	}
	return cmd()
}

func TestConfirmRunsYesOnlyOnY(t *testing.T) {
	th := theme.New(theme.Dark, true)
	for _, tc := range []struct {
		key  string
		want tea.Msg
	}{{"y", answer("yes")}, {"Y", answer("yes")}, {"n", answer("no")}, {"enter", answer("no")}, {"esc", answer("no")}} {
		var m Model
		ran := false
		m.Confirm("Delete machine bb and its disk?", func() tea.Cmd {
			ran = true
			return func() tea.Msg { return answer("yes") }
		}, func() tea.Msg { return answer("no") })
		if ran || !m.Open() || m.View(th, 80) != "Delete machine bb and its disk? [y/N]" {
			t.Fatalf("%s: open: ran %v, view %q", tc.key, ran, m.View(th, 80))
		}
		if used, _ := m.Update(tea.PasteMsg{Content: "y"}); used {
			t.Errorf("%s: a paste answered the question", tc.key)
		}
		used, cmd := m.Update(key(tc.key))
		if !used || m.Open() || msgOf(cmd) != tc.want || ran != (tc.want == answer("yes")) {
			t.Errorf("%s: used %v, open %v, msg %v, yes ran %v", tc.key, used, m.Open(), msgOf(cmd), ran)
		}
	}
}

func TestFormSubmitsValuesAndEscCancels(t *testing.T) {
	var m Model
	var got []string
	submit := func(v []string) tea.Cmd { got = v; return nil }
	m.Form(form.New("Pull", form.Field{Label: "A"}, form.Field{Label: "B", Value: "pre"}), submit)
	for _, k := range []string{"x", "tab", "enter"} {
		if used, _ := m.Update(key(k)); !used {
			t.Fatalf("form did not take %q", k)
		}
	}
	if m.Open() || len(got) != 2 || got[0] != "x" || got[1] != "pre" {
		t.Errorf("open %v, values %q", m.Open(), got)
	}
	got = nil
	m.Form(form.New("Pull", form.Field{Label: "A"}), submit)
	m.Update(key("esc"))
	if m.Open() || got != nil {
		t.Errorf("esc: open %v, values %q", m.Open(), got)
	}
	if used, _ := m.Update(key("x")); used {
		t.Error("a closed modal took a key")
	}
}
