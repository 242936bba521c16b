package machines

import (
	"fmt"

	"charm.land/lipgloss/v2"
	"strings"
	"time"

	"github.com/machinetop/machinetop/theme"
	"github.com/machinetop/machinetop/tui/common"
	"github.com/machinetop/machinetop/tui/source"
	"github.com/machinetop/machinetop/tui/table"
	"github.com/machinetop/machinetop/vm"
)

// Columns of the machines table; Drop says which go first on narrow
// terminals. MEM is the guest's used memory of its total, CACHE its page
// cache (what reclaim can give back), HELD the memory its VM holds on the
// host.
var Columns = []table.Column{
	{Title: "NAME", Min: 6, Max: 24},
	{Title: "IMAGE", Min: 8, Max: 28, Drop: 7},
	{Title: "IP", Min: 9, Max: 15, Drop: 5},
	{Title: "CPUS", Min: 4, Right: true, Drop: 6},
	{Title: "MEM", Min: 9, Right: true, Drop: 1},
	{Title: "CACHE", Min: 5, Right: true, Drop: 3},
	{Title: "HELD", Min: 5, Right: true, Drop: 2},
	{Title: "DISK", Min: 5, Right: true, Drop: 4},
	{Title: "STATE", Min: 8},
	{Title: "UPTIME", Min: 6, Right: true, Drop: 8},
	{Title: "PORTS", Min: 5, Max: 24, Drop: 9},
}

// HostLine renders the host facts: CPUs, host memory, memory held by the
// machines, the accelerator and machine counts.
func HostLine(th *theme.Theme, s source.Snapshot, width int) string {
	running := 0
	for _, r := range s.Rows {
		if r.State == "running" {
			running++
		}
	}
	accel := "-"
	if s.Host.Accel != "" {
		accel = strings.ToUpper(s.Host.Accel)
	}
	kv := func(k, v string) string { return th.Muted.Render(k+" ") + th.Text.Render(v) }
	parts := []string{
		kv("host", fmt.Sprintf("%d CPUs", s.Host.CPUs)),
		kv("mem", common.FormatBytes(s.Host.MemUsed)+"/"+common.FormatBytes(s.Host.MemTotal)),
		kv("held by machines", common.FormatBytes(s.Host.Held)),
		kv("accel", accel),
		kv("machines", fmt.Sprintf("%d (%d running)", len(s.Rows), running)),
	}
	sep := th.Muted.Render(" · ")
	// Drop facts from the end rather than cut one in the middle.
	for len(parts) > 1 && lipgloss.Width(strings.Join(parts, sep)) > width {
		parts = parts[:len(parts)-1]
	}
	return strings.Join(parts, sep)
}

// Cells renders one machine row: busy is the action in flight ("" none),
// spin the spinner frame, now the current time.
func Cells(th *theme.Theme, r source.Row, busy string, spin int, now time.Time) []table.Cell {
	name := r.Name
	if r.Default {
		name += " *"
	}
	ip := r.IP
	if ip == "" {
		ip = "-"
	}
	mem := "-/" + r.MemoryShown(common.FormatBytes)
	if r.Metrics != nil {
		mem = common.FormatBytes(r.Metrics.MemUsed) + "/" + r.MemoryShown(common.FormatBytes)
	}
	cache, held := "-", "-"
	if r.Metrics != nil {
		cache = common.FormatBytes(r.Metrics.MemCache)
	}
	if r.HostRSS > 0 {
		held = common.FormatBytes(r.HostRSS)
	}
	disk := common.FormatBytes(diskUsed(r))
	up := "-"
	if r.State == "running" && !r.Started.IsZero() {
		up = common.FormatDuration(now.Sub(r.Started))
	}
	state := r.State
	st := th.State(state)
	if r.StartFailure != nil && r.State == "stopped" {
		// The detail's Info tab says why.
		state, st = "start failed", th.Error
	}
	if r.Stage != "" && r.State == "starting" {
		state += ": " + r.Stage
	}
	if busy != "" {
		state = spinner[spin%len(spinner)] + " " + busy
		if r.Stage != "" {
			state += ": " + r.Stage
		}
		st = th.Busy
	}
	return []table.Cell{
		{Text: name, Style: &th.Text},
		{Text: r.Image, Style: &th.Muted},
		{Text: ip},
		{Text: r.CPUsShown()},
		{Text: mem},
		{Text: cache, Style: &th.Muted},
		{Text: held},
		{Text: disk},
		{Text: state, Style: &st},
		{Text: up, Style: &th.Muted},
		{Text: dashIfEmpty(vm.PortsSummary(r.Ports)), Style: &th.Muted},
	}
}

// viewKey is everything View's output depends on besides the prompts and
// the filter prompt (not cached while open).
type viewKey struct {
	w, h, cursor, offset, spin, busy int
	snap                             time.Time
	sort                             string
	rev                              bool
	filter                           string
	theme                            *theme.Theme
	uptimeMinute                     int64
}

// View renders the view in the context's size. The result is cached until
// something it shows changes: View runs after every message.
func (m *Model) View() string {
	th := m.ctx.Theme
	w, h := m.width, m.height
	if !m.loaded {
		return common.Fit(th.Muted.Render("loading machines…"), w, h)
	}
	now := m.ctx.Now()
	k := viewKey{w, h, m.cursor, m.offset, m.spin, len(m.busy), m.snap.Time, m.sortKey, m.sortRev,
		m.filter.Value(), th, now.Unix() / 60}
	cacheable := !m.modal.Open() && !m.filtering
	if cacheable && k == m.cacheKey && m.cache != "" {
		return m.cache
	}
	out := m.render(th, w, h, now)
	if cacheable {
		k.offset = m.offset
		m.cache, m.cacheKey = out, k
	}
	return out
}

func (m *Model) render(th *theme.Theme, w, h int, now time.Time) string {
	var sb strings.Builder
	sb.WriteString(HostLine(th, m.snap, w))
	sb.WriteString("\n")
	var bottom []string
	switch {
	case m.modal.Open():
		bottom = strings.Split(m.modal.View(th, w), "\n")
	case m.filtering || m.filter.Value() != "":
		bottom = []string{m.filter.View()}
	}
	if m.snap.Err != nil {
		sb.WriteString(th.Error.Render("cannot list machines: "+m.snap.Err.Error()) + "\n")
	}
	tableH := max(h-2-len(bottom), 1)
	t := table.Table{Columns: Columns, Cursor: m.cursor, Offset: m.offset}
	for _, r := range m.rows {
		t.Rows = append(t.Rows, Cells(th, r, m.busy[r.Name], m.spin, now))
	}
	if len(m.rows) == 0 {
		t.Cursor = -1
	}
	body, off := t.Render(th, w, tableH)
	m.offset = off
	sb.WriteString(body)
	if len(m.rows) == 0 {
		msg := "no machines yet: press c to create one"
		if m.filter.Value() != "" {
			msg = "no machine matches the filter (esc clears it)"
		}
		sb.WriteString("\n" + theme.Blank + th.Muted.Render(msg))
	}
	out := common.Fit(sb.String(), w, h-len(bottom))
	if len(bottom) > 0 {
		out += "\n" + strings.Join(bottom, "\n")
	}
	return common.Fit(out, w, h)
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
