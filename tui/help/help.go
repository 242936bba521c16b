// Package help renders the key help overlay from the keymap's sections.
// Rendering is pure.
package help

import (
	"charm.land/lipgloss/v2"
	"strings"

	"charm.land/bubbles/v2/key"

	"github.com/machinetop/machinetop/theme"
	"github.com/machinetop/machinetop/tui/common"
	"github.com/machinetop/machinetop/tui/keys"
)

// Render draws sections as titled two-column lists in width×height cells.
func Render(th *theme.Theme, sections []keys.Section, width, height int) string {
	kw := 0
	for _, s := range sections {
		for _, b := range s.Bindings {
			kw = max(kw, len([]rune(b.Help().Key)))
		}
	}
	var lines []string
	for i, s := range sections {
		if i > 0 {
			lines = append(lines, "")
		}
		lines = append(lines, th.Title.Render(s.Title))
		for _, b := range s.Bindings {
			h := b.Help()
			lines = append(lines, "  "+th.Key.Render(common.Pad(h.Key, kw))+"  "+h.Desc)
		}
	}
	lines = append(lines, "", th.Muted.Render("press any key to close this help"))
	// Two columns when the list is taller than the screen and it is wide.
	if len(lines) > height && width >= 100 {
		half := (len(lines) + 1) / 2
		for half < len(lines) && lines[half] != "" {
			half++
		}
		left, right := lines[:half], lines[half:]
		cw := width / 2
		var out []string
		for i := 0; i < max(len(left), len(right)); i++ {
			l, r := "", ""
			if i < len(left) {
				l = left[i]
			}
			if i < len(right) {
				r = right[i]
			}
			out = append(out, common.Pad(l, cw)+r)
		}
		lines = out
	}
	return common.Fit(strings.Join(lines, "\n"), width, height)
}

// Footer renders bindings on one line as "key action · …", from each
// binding's help (give it keys.Map.Short's footer labels).
//
// When they do not fit in width, bindings are left out from the end of the
// view's own ones, so that the last keep (help and quit) always show.
func Footer(th *theme.Theme, bindings []key.Binding, width int, keep int) string {
	var parts []string
	for _, b := range bindings {
		h := b.Help()
		parts = append(parts, th.Key.Render(h.Key)+" "+th.Muted.Render(h.Desc))
	}
	sep := th.Muted.Render(" · ")
	keep = min(keep, len(parts))
	for len(parts) > keep && lipgloss.Width(strings.Join(parts, sep)) > width {
		i := len(parts) - keep - 1
		parts = append(parts[:i], parts[i+1:]...)
	}
	return common.Fit(strings.Join(parts, sep), width, 1)
}
