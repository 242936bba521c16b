package table

import (
	"strings"
	"testing"

	"github.com/charmbracelet/x/ansi"

	"github.com/machinetop/machinetop/theme"
)

func sample() *Table {
	return &Table{
		Columns: []Column{{Title: "NAME", Min: 4}, {Title: "IMAGE", Min: 5, Drop: 2}, {Title: "MEM", Min: 3, Right: true, Drop: 1}},
		Rows: [][]Cell{
			{{Text: "alpha"}, {Text: "busybox:test"}, {Text: "512M"}},
			{{Text: "beta"}, {Text: "debian:bookworm"}, {Text: "2G"}},
		},
		Cursor: 1,
	}
}

func TestRenderDropsColumnsInsteadOfWrapping(t *testing.T) {
	th := theme.New(theme.Dark, true)
	for _, tc := range []struct {
		width int
		want  []string
		not   []string
	}{
		{80, []string{"NAME", "IMAGE", "MEM", "debian:bookworm"}, nil},
		{20, []string{"NAME", "MEM"}, []string{"IMAGE"}},
		{12, []string{"NAME"}, []string{"IMAGE", "MEM"}},
	} {
		out, _ := sample().Render(th, tc.width, 10)
		for _, l := range strings.Split(out, "\n") {
			if w := ansi.StringWidth(l); w > tc.width {
				t.Errorf("width %d: line %q is %d cells", tc.width, l, w)
			}
		}
		for _, s := range tc.want {
			if !strings.Contains(out, s) {
				t.Errorf("width %d lacks %q:\n%s", tc.width, s, out)
			}
		}
		for _, s := range tc.not {
			if strings.Contains(out, s) {
				t.Errorf("width %d still shows %q:\n%s", tc.width, s, out)
			}
		}
	}
}

func TestSelectedRowHasGutterWithoutColour(t *testing.T) {
	out, _ := sample().Render(theme.New(theme.Dark, true), 80, 10)
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[2], "▸ beta") || !strings.HasPrefix(lines[1], "  alpha") {
		t.Errorf("gutter:\n%s", out)
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("escapes without colour: %q", out)
	}
}

func TestRenderScrollsToCursor(t *testing.T) {
	tb := sample()
	for i := range 20 {
		tb.Rows = append(tb.Rows, []Cell{{Text: strings.Repeat("x", i%5+1)}, {Text: "img"}, {Text: "1G"}})
	}
	tb.Cursor = 21
	out, off := tb.Render(theme.New(theme.Dark, true), 40, 5)
	if off != 18 || strings.Count(out, "\n") != 4 || !strings.Contains(out, "▸") {
		t.Errorf("offset %d:\n%s", off, out)
	}
}
