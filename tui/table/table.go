// Package table renders a table with a selected row into a fixed width:
// columns that do not fit are dropped in priority order rather than
// wrapped. Rendering is pure.
package table

import (
	"strings"

	"charm.land/lipgloss/v2"

	"github.com/machinetop/machinetop/theme"
	"github.com/machinetop/machinetop/tui/common"
)

// Column describes one column.
type Column struct {
	Title string
	// Min is the least width in cells; Max (0: unlimited) caps how far the
	// column grows to fit its longest cell.
	Min, Max int
	// Right aligns the cells right (numbers).
	Right bool
	// Drop is the column's drop order when the width is short: columns
	// with a higher Drop go first; 0 is never dropped.
	Drop int
}

// Cell is one cell: its text and an optional style (nil: plain).
type Cell struct {
	Text  string
	Style *lipgloss.Style
}

// Table is a table's content.
type Table struct {
	Columns []Column
	Rows    [][]Cell
	// Cursor is the index of the selected row, -1 for none.
	Cursor int
	// Offset is the first row shown (scrolling); Render adjusts it to keep
	// the cursor visible and returns the value it used.
	Offset int
}

// Layout returns the indexes of the columns shown and their widths for a
// table width of width cells (the gutter included).
func (t *Table) Layout(width int) ([]int, []int) {
	n := len(t.Columns)
	want := make([]int, n)
	for i, c := range t.Columns {
		w := max(c.Min, common.Width(c.Title))
		for _, r := range t.Rows {
			if i < len(r) {
				w = max(w, common.Width(r[i].Text))
			}
		}
		if c.Max > 0 && w > c.Max {
			w = max(c.Max, c.Min)
		}
		want[i] = w
	}
	shown := make([]bool, n)
	for i := range shown {
		shown[i] = true
	}
	total := func() int {
		s := common.Width(theme.Blank)
		for i := range n {
			if shown[i] {
				s += want[i] + 1
			}
		}
		return s
	}
	for total() > width {
		// Drop the shown column with the highest Drop; if none can go,
		// shrink the widest column towards its Min.
		best := -1
		for i, c := range t.Columns {
			if shown[i] && c.Drop > 0 && (best < 0 || c.Drop > t.Columns[best].Drop) {
				best = i
			}
		}
		if best >= 0 {
			shown[best] = false
			continue
		}
		wide := -1
		for i := range n {
			if shown[i] && want[i] > t.Columns[i].Min && (wide < 0 || want[i] > want[wide]) {
				wide = i
			}
		}
		if wide < 0 {
			break
		}
		want[wide] = max(t.Columns[wide].Min, want[wide]-(total()-width))
	}
	var idx, widths []int
	for i := range n {
		if shown[i] {
			idx = append(idx, i)
			widths = append(widths, want[i])
		}
	}
	return idx, widths
}

// Render draws the header and the rows that fit in height lines (header
// included) into width cells, and returns the text and the offset used.
func (t *Table) Render(th *theme.Theme, width, height int) (string, int) {
	idx, widths := t.Layout(width)
	var sb strings.Builder
	cell := func(s string, w int, right bool) string {
		if right {
			return common.PadLeft(s, w)
		}
		return common.Pad(s, w)
	}
	var hdr []string
	for k, i := range idx {
		hdr = append(hdr, cell(t.Columns[i].Title, widths[k], t.Columns[i].Right))
	}
	sb.WriteString(th.Header.Render(theme.Blank + strings.TrimRight(strings.Join(hdr, " "), " ")))
	rowsH := max(height-1, 0)
	off := t.Offset
	if t.Cursor >= 0 {
		if t.Cursor < off {
			off = t.Cursor
		}
		if t.Cursor >= off+rowsH {
			off = t.Cursor - rowsH + 1
		}
	}
	off = max(0, min(off, max(len(t.Rows)-rowsH, 0)))
	paints := map[*lipgloss.Style]paint{}
	for r := off; r < len(t.Rows) && r < off+rowsH; r++ {
		row := t.Rows[r]
		sel := r == t.Cursor
		var parts []string
		for k, i := range idx {
			c := Cell{}
			if i < len(row) {
				c = row[i]
			}
			s := cell(c.Text, widths[k], t.Columns[i].Right)
			if c.Style != nil && !sel {
				p, ok := paints[c.Style]
				if !ok {
					p = paintOf(*c.Style)
					paints[c.Style] = p
				}
				s = p.pre + s + p.post
			}
			parts = append(parts, s)
		}
		line := strings.Join(parts, " ")
		sb.WriteByte('\n')
		if sel {
			line = common.Pad(line, max(width-len(theme.Blank), 0))
			sb.WriteString(th.Accent.Render("▸") + " " + th.Selected.Render(line))
		} else {
			sb.WriteString(theme.Blank + line)
		}
	}
	return sb.String(), off
}

// paint is a style reduced to the escape sequences around its text; a
// cell styled with colours and attributes only is painted with two string
// concatenations instead of a full lipgloss render.
type paint struct{ pre, post string }

func paintOf(st lipgloss.Style) paint {
	const mark = "\x00"
	r := st.Render(mark)
	i := strings.Index(r, mark)
	if i < 0 {
		return paint{}
	}
	return paint{pre: r[:i], post: r[i+len(mark):]}
}
