// Package common is the dashboard's shared context (the Source, the theme,
// the keymap, the clock), the Component contract every view implements and
// the messages views send each other, so views never import one another.
package common

import (
	"fmt"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/machinetop/machinetop/theme"
	"github.com/machinetop/machinetop/tui/keys"
	"github.com/machinetop/machinetop/tui/source"
)

// Context is shared by every view. Views read it; only the root model
// changes it.
type Context struct {
	Src   source.Source
	Theme *theme.Theme
	Keys  *keys.Map
	// Now returns the current time (fixed in tests).
	Now func() time.Time
}

// StatusMsg sets the status line: Text, or Err (shown in the error
// style) when set.
type StatusMsg struct {
	Text string
	Err  error
}

// Statusf returns a StatusMsg with formatted text.
func Statusf(format string, a ...any) StatusMsg { return StatusMsg{Text: fmt.Sprintf(format, a...)} }

// SnapshotMsg carries a fresh source.Snapshot to every view.
type SnapshotMsg struct{ Snap source.Snapshot }

// RefreshMsg asks the root to refresh the snapshot now (after an action).
type RefreshMsg struct{}

// FormatBytes formats a size in bytes compactly: "512M", "1.5G", "0".
func FormatBytes(b uint64) string {
	const k = 1024
	switch {
	case b == 0:
		return "0"
	case b < k*k:
		return fmt.Sprintf("%dK", (b+k-1)/k)
	case b < k*k*k:
		return fmt.Sprintf("%dM", b/(k*k))
	case b < 10*k*k*k && b%(k*k*k) != 0:
		return fmt.Sprintf("%.1fG", float64(b)/(k*k*k))
	default:
		return fmt.Sprintf("%dG", b/(k*k*k))
	}
}

// FormatDuration formats an age or uptime with two units at most:
// "45s", "12m", "3h12m", "2d4h". A zero duration is "-".
func FormatDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}

// Width is the display width of s in cells, ANSI escapes excluded; plain
// ASCII (the common case) is measured without grapheme segmentation.
func Width(s string) int {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x80 || c < 0x20 {
			return ansi.StringWidth(s)
		}
	}
	return len(s)
}

// Fit cuts every line of s to width cells (ANSI-aware) and pads or cuts
// the block to exactly height lines, so a view never wraps or overflows.
func Fit(s string, width, height int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > height {
		lines = lines[:height]
	}
	for i, l := range lines {
		if Width(l) > width {
			lines[i] = ansi.Truncate(l, width, "…")
		}
	}
	for len(lines) < height {
		lines = append(lines, "")
	}
	return strings.Join(lines, "\n")
}

// Pad pads s with spaces to width cells, or cuts it with "…".
func Pad(s string, width int) string {
	w := Width(s)
	if w > width {
		return ansi.Truncate(s, width, "…")
	}
	return s + strings.Repeat(" ", width-w)
}

// PadLeft right-aligns s in width cells, cutting it with "…" when longer.
func PadLeft(s string, width int) string {
	w := Width(s)
	if w > width {
		return ansi.Truncate(s, width, "…")
	}
	return strings.Repeat(" ", width-w) + s
}

// Status returns a command that sets the status line to s.
func Status(s StatusMsg) tea.Cmd { return func() tea.Msg { return s } }

// MoveCursor applies the list movement keys (up, down, top, bottom) of km
// to cursor in a list of n rows. It returns the new cursor and whether msg
// was one of those keys.
func MoveCursor(msg tea.KeyPressMsg, km *keys.Map, cursor, n int) (int, bool) {
	switch {
	case key.Matches(msg, km.Up):
		return max(cursor-1, 0), true
	case key.Matches(msg, km.Down):
		return min(cursor+1, max(n-1, 0)), true
	case key.Matches(msg, km.Top):
		return 0, true
	case key.Matches(msg, km.Bottom):
		return max(n-1, 0), true
	}
	return cursor, false
}
