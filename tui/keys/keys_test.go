package keys

import (
	"flag"
	"os"
	"reflect"
	"strings"
	"testing"

	"charm.land/bubbles/v2/key"
)

var update = flag.Bool("update", false, "rewrite README.md's key table from the keymap")

const (
	readme    = "../../README.md"
	startMark = "<!-- keys:start -->"
	endMark   = "<!-- keys:end -->"
)

// TestREADMEKeyTable fails when the key table between the markers in
// README.md differs from the keymap. Run with -update to rewrite it.
func TestREADMEKeyTable(t *testing.T) {
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i, j := strings.Index(s, startMark), strings.Index(s, endMark)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the %s … %s markers", startMark, endMark)
	}
	want := "\n" + Default().Markdown()
	got := s[i+len(startMark) : j]
	if got == want {
		return
	}
	if *update {
		s = s[:i+len(startMark)] + want + s[j:]
		if err := os.WriteFile(readme, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README.md's key table differs from the keymap; run `go test ./tui/keys -run README -update`.\ngot:\n%s\nwant:\n%s", got, want)
}

func TestEveryBindingHasHelp(t *testing.T) {
	m := Default()
	for _, v := range append(AllViews, Global) {
		for _, s := range m.Sections(v) {
			for _, b := range s.Bindings {
				if h := b.Help(); h.Key == "" || h.Desc == "" || len(b.Keys()) == 0 {
					t.Errorf("%s: binding %v has no help or keys", s.Title, b.Keys())
				}
			}
		}
	}
}

func TestShellHasOnlyTheLeaveChord(t *testing.T) {
	s := Default().Sections(Shell)
	if len(s) != 1 || len(s[0].Bindings) != 1 || s[0].Bindings[0].Keys()[0] != "ctrl+]" {
		t.Fatalf("shell sections = %+v", s)
	}
}

// TestEveryBindingHasAFooterLabel walks every binding field of the map:
// each must have a short label, so no footer falls back to a sentence.
func TestEveryBindingHasAFooterLabel(t *testing.T) {
	m := Default()
	v := reflect.ValueOf(m).Elem()
	n := 0
	for i := range v.NumField() {
		if !v.Type().Field(i).IsExported() {
			continue
		}
		b, ok := v.Field(i).Interface().(key.Binding)
		if !ok {
			continue
		}
		n++
		s := m.Short(b)[0].Help()
		if _, ok := m.short[b.Help()]; !ok || s.Key != b.Keys()[0] || s.Desc == "" {
			t.Errorf("%s: footer label %+v (help %+v)", v.Type().Field(i).Name, s, b.Help())
		}
	}
	if n < 39 {
		t.Errorf("only %d bindings found", n)
	}
	if got := m.Short(m.Quit)[0].Help(); got != (key.Help{Key: "q", Desc: "quit"}) {
		t.Errorf("Short(Quit) = %+v", got)
	}
}
