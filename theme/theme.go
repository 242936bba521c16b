// Package theme holds the dashboard's colours and text styles: a dark and a
// light palette in true colour (the terminal renderer downsamples them to
// 256 or 16 colours, or drops them for NO_COLOR), and the lipgloss styles
// built from a palette. Nothing here does I/O.
package theme

import (
	"image/color"
	"os"
	"strings"

	"charm.land/lipgloss/v2"
)

// Palette is a set of colours for one terminal background.
type Palette struct {
	// Name is "dark" or "light".
	Name string
	// Text is normal text; Muted is secondary text (labels, help).
	Text, Muted color.Color
	// Accent marks titles, the active tab and key names.
	Accent color.Color
	// SelectedFg and SelectedBg paint the selected row.
	SelectedFg, SelectedBg color.Color
	// Running, Stopped, Busy and Error colour machine and job states.
	Running, Stopped, Busy, Error color.Color
	// Border draws pane borders and rules.
	Border color.Color
}

// Dark is the palette for dark terminal backgrounds.
var Dark = Palette{
	Name:       "dark",
	Text:       lipgloss.Color("#D0D0D0"),
	Muted:      lipgloss.Color("#8A8A8A"),
	Accent:     lipgloss.Color("#7AA2F7"),
	SelectedFg: lipgloss.Color("#FFFFFF"),
	SelectedBg: lipgloss.Color("#3B4261"),
	Running:    lipgloss.Color("#9ECE6A"),
	Stopped:    lipgloss.Color("#8A8A8A"),
	Busy:       lipgloss.Color("#E0AF68"),
	Error:      lipgloss.Color("#F7768E"),
	Border:     lipgloss.Color("#565F89"),
}

// Light is the palette for light terminal backgrounds.
var Light = Palette{
	Name:       "light",
	Text:       lipgloss.Color("#2E3440"),
	Muted:      lipgloss.Color("#6C6F85"),
	Accent:     lipgloss.Color("#1E66F5"),
	SelectedFg: lipgloss.Color("#000000"),
	SelectedBg: lipgloss.Color("#CCD0DA"),
	Running:    lipgloss.Color("#40A02B"),
	Stopped:    lipgloss.Color("#6C6F85"),
	Busy:       lipgloss.Color("#DF8E1D"),
	Error:      lipgloss.Color("#D20F39"),
	Border:     lipgloss.Color("#9CA0B0"),
}

// Theme is a palette turned into the styles the dashboard draws with.
type Theme struct {
	Palette Palette
	// NoColor is true when NO_COLOR is set: styles carry no colour and no
	// attributes, and the selected row is shown only by the gutter glyph.
	NoColor bool

	Text, Muted, Accent, Title, Header lipgloss.Style
	Selected, Running, Stopped, Busy   lipgloss.Style
	Error, Border, Key, TabActive, Tab lipgloss.Style
}

// Gutter is drawn before the selected row (and Blank before the others), so
// the selection stays visible without colour.
const (
	Gutter = "▸ "
	Blank  = "  "
)

// New builds the styles of palette p; noColor drops every colour and
// attribute.
func New(p Palette, noColor bool) *Theme {
	t := &Theme{Palette: p, NoColor: noColor}
	s := lipgloss.NewStyle
	if noColor {
		plain := s()
		t.Text, t.Muted, t.Accent, t.Title, t.Header = plain, plain, plain, plain, plain
		t.Selected, t.Running, t.Stopped, t.Busy = plain, plain, plain, plain
		t.Error, t.Border, t.Key, t.TabActive, t.Tab = plain, plain, plain, plain, plain
		return t
	}
	t.Text = s().Foreground(p.Text)
	t.Muted = s().Foreground(p.Muted)
	t.Accent = s().Foreground(p.Accent)
	t.Title = s().Foreground(p.Accent).Bold(true)
	t.Header = s().Foreground(p.Muted).Bold(true)
	t.Selected = s().Foreground(p.SelectedFg).Background(p.SelectedBg).Bold(true)
	t.Running = s().Foreground(p.Running)
	t.Stopped = s().Foreground(p.Stopped)
	t.Busy = s().Foreground(p.Busy)
	t.Error = s().Foreground(p.Error).Bold(true)
	t.Border = s().Foreground(p.Border)
	t.Key = s().Foreground(p.Accent).Bold(true)
	t.TabActive = s().Foreground(p.SelectedFg).Background(p.Accent).Bold(true)
	t.Tab = s().Foreground(p.Muted)
	return t
}

// State returns the style for a machine or job state ("running", "done",
// "stopped", "failed", anything else is shown as busy).
func (t *Theme) State(state string) lipgloss.Style {
	switch state {
	case "running", "done", "cached":
		return t.Running
	case "stopped", "":
		return t.Stopped
	case "failed", "error":
		return t.Error
	}
	return t.Busy
}

// FromEnv picks the palette and colour mode from the environment:
// MACHINETOP_THEME=light|dark chooses the palette (default dark; the
// dashboard switches to light when the terminal reports a light background
// and MACHINETOP_THEME is unset), and a non-empty NO_COLOR disables colour.
// It returns the theme and whether the palette was chosen explicitly.
func FromEnv() (*Theme, bool) { return Choose("") }

// Choose is FromEnv with a fallback: when MACHINETOP_THEME is unset (or
// neither light nor dark), name (the config file's dashboard.theme:
// light, dark, or auto or "" to follow the terminal) picks the palette.
func Choose(name string) (*Theme, bool) {
	noColor := os.Getenv("NO_COLOR") != ""
	for _, n := range []string{os.Getenv("MACHINETOP_THEME"), name} {
		switch strings.ToLower(n) {
		case "light":
			return New(Light, noColor), true
		case "dark":
			return New(Dark, noColor), true
		}
	}
	return New(Dark, noColor), false
}
