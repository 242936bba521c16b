package detail

import (
	"fmt"
	"strings"

	"github.com/machinetop/machinetop/theme"
	"github.com/machinetop/machinetop/tui/common"
	"github.com/machinetop/machinetop/tui/source"
	"github.com/machinetop/machinetop/tui/sparkline"
	"github.com/machinetop/machinetop/vm"
)

// Title renders the first line: name, state and the main facts.
func Title(th *theme.Theme, r vm.Machine) string {
	name := r.Name
	if r.Default {
		name += " *"
	}
	ip := r.IP
	if ip == "" {
		ip = "-"
	}
	parts := []string{
		th.Title.Render(name),
		th.State(r.State).Render(r.State),
		th.Text.Render(r.Image),
		th.Muted.Render(fmt.Sprintf("%s · %s RAM · IP %s", cpus(r.CPUs), common.FormatBytes(r.MemoryBytes), ip)),
	}
	if r.Accelerator != "" {
		parts = append(parts, th.Muted.Render(strings.ToUpper(r.Accelerator)))
	}
	return strings.Join(parts, th.Muted.Render(" · "))
}

// spark renders "label ▁▂▃ value" in width cells.
func spark(th *theme.Theme, label string, vals []float64, top float64, value string, width int) string {
	const lw, vw = 10, 12
	sw := max(width-lw-vw-2, 4)
	return th.Muted.Render(common.Pad(label, lw)) + " " + th.Accent.Render(sparkline.Render(vals, sw, top)) + " " + common.PadLeft(value, vw)
}

// MemoryLine renders where the machine's memory is, side by side: what
// the guest uses, its page cache (what reclaim can give back), what its VM
// holds on the host, and the reclaim mode.
func MemoryLine(th *theme.Theme, r source.Row) string {
	kv := func(k, v string) string { return th.Muted.Render(k+" ") + th.Text.Render(v) }
	used, cache, mode := "-", "-", "-"
	if mt := r.Metrics; mt != nil {
		used, cache = common.FormatBytes(mt.MemUsed), common.FormatBytes(mt.MemCache)
		if mt.ReclaimMode != "" {
			mode = mt.ReclaimMode
		}
	}
	held := "-"
	if r.HostRSS > 0 {
		held = common.FormatBytes(r.HostRSS)
	}
	sep := th.Muted.Render(" · ")
	return strings.Join([]string{kv("guest used", used), kv("cache (reclaimable)", cache), kv("host held", held), kv("reclaim", mode)}, sep)
}

// View renders the view.
func (m *Model) View() string {
	th := m.ctx.Theme
	w, h := m.width, m.height
	r := m.row
	var sb strings.Builder
	sb.WriteString(Title(th, r.Machine) + "\n")
	hs := m.hist[m.name]
	if hs == nil {
		hs = &series{sparkline.NewRing(1), sparkline.NewRing(1), sparkline.NewRing(1), sparkline.NewRing(1)}
	}
	half := (w - 2) / 2
	memTop := float64(r.MemoryBytes)
	diskTop := 0.0
	cpuVal, memVal, diskVal := "-", "-/"+common.FormatBytes(r.MemoryBytes), "-"
	if mt := r.Metrics; mt != nil {
		cpuVal = fmt.Sprintf("%.0f%%", mt.CPUPercent)
		memVal = common.FormatBytes(mt.MemUsed) + "/" + common.FormatBytes(r.MemoryBytes)
		diskVal = common.FormatBytes(mt.DiskUsed) + "/" + common.FormatBytes(mt.DiskTotal)
		diskTop = float64(mt.DiskTotal)
	}
	cpuTop := float64(max(r.CPUs, 1) * 100)
	if half >= 30 {
		sb.WriteString(spark(th, "CPU", hs.cpu.Values(), cpuTop, cpuVal, half) + "  " + spark(th, "guest mem", hs.mem.Values(), memTop, memVal, half) + "\n")
		sb.WriteString(spark(th, "host held", hs.held.Values(), memTop, common.FormatBytes(r.HostRSS), half) + "  " + spark(th, "disk", hs.disk.Values(), diskTop, diskVal, half) + "\n")
	} else {
		sb.WriteString(th.Muted.Render("CPU ") + cpuVal + th.Muted.Render("  mem ") + memVal + "\n")
		sb.WriteString(th.Muted.Render("held ") + common.FormatBytes(r.HostRSS) + th.Muted.Render("  disk ") + diskVal + "\n")
	}
	sb.WriteString(MemoryLine(th, r) + "\n")
	var tabs []string
	for i, t := range TabNames {
		if i == m.tab {
			tabs = append(tabs, th.TabActive.Render("["+t+"]"))
		} else {
			tabs = append(tabs, th.Tab.Render(" "+t+" "))
		}
	}
	hint := ""
	if m.tab == TabShell {
		if m.Focused() {
			hint = th.Busy.Render("  typing into the shell · ctrl+] leaves it")
		} else if m.sessions[m.name] != nil {
			hint = th.Muted.Render("  enter: type into the shell · F: full screen")
		}
	}
	sb.WriteString(strings.Join(tabs, " ") + hint + "\n")
	pw, ph := m.paneSize()
	var pane string
	switch m.tab {
	case TabShell:
		pane = m.shellPane(pw, ph)
	case TabConsole:
		m.console.SetSize(pw, ph)
		pane = m.console.View(th, "console log of "+m.name)
	case TabPorts:
		pane = m.portsPane(th)
	case TabInfo:
		var lines []string
		for _, kv := range Infos(r) {
			lines = append(lines, th.Muted.Render(common.Pad(kv[0], 14))+" "+kv[1])
		}
		pane = strings.Join(lines, "\n")
	}
	sb.WriteString(common.Fit(pane, pw, ph))
	return common.Fit(sb.String(), w, h)
}

func (m *Model) shellPane(w, h int) string {
	th := m.ctx.Theme
	s := m.sessions[m.name]
	if s == nil {
		switch {
		case m.opening[m.name]:
			return th.Busy.Render("opening a shell in " + m.name + "…")
		case m.shellErr[m.name] != "":
			return th.Error.Render("shell: "+m.shellErr[m.name]) + "\n" + th.Muted.Render("press enter to try again")
		case m.row.State != "running":
			return th.Muted.Render(m.name + " is " + m.row.State + ": press s to start it, then enter for a shell")
		}
		return th.Muted.Render("press enter to open a shell in " + m.name)
	}
	if cw, ch := s.Size(); cw != w || ch != h {
		s.Resize(w, h)
	}
	scr := s.Screen()
	if done, why := s.Exited(); done {
		lines := strings.Split(scr, "\n")
		msg := th.Busy.Render("[shell ended: " + why + " · enter opens a new one]")
		if len(lines) > 0 {
			lines[len(lines)-1] = msg
		}
		scr = strings.Join(lines, "\n")
	}
	return scr
}

func cpus(n int) string {
	if n == 1 {
		return "1 CPU"
	}
	return fmt.Sprintf("%d CPUs", n)
}
