package detail

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/machinetop/machinetop/theme"
	"github.com/machinetop/machinetop/tui/common"
	"github.com/machinetop/machinetop/vm"
)

// webPorts are the forwards the Ports tab lets one open: every one that
// listens, SSH left out.
func webPorts(ps []vm.PortForward) []vm.PortForward {
	var out []vm.PortForward
	for _, p := range ps {
		if p.Kind != "ssh" && p.Error == "" && len(p.HostAddrs) > 0 {
			out = append(out, p)
		}
	}
	return out
}

// PortURL is the address a browser on this host opens for p:
// http://HOST:PORT on p's first host socket, 127.0.0.1 for one that
// listens on every address.
func PortURL(p vm.PortForward) string {
	host := "127.0.0.1"
	if len(p.HostAddrs) > 0 {
		if h, _, err := net.SplitHostPort(p.HostAddrs[0]); err == nil {
			if ip := net.ParseIP(h); ip != nil && !ip.IsUnspecified() {
				host = h
			}
		}
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(p.HostPort)) + "/"
}

// portKey handles the Ports tab's keys; used is false for a key it does
// not take.
func (m *Model) portKey(msg tea.KeyPressMsg) (used bool, cmd tea.Cmd) {
	k := m.ctx.Keys
	ps := webPorts(m.row.Ports)
	switch {
	case key.Matches(msg, k.Up):
		m.portCursor = max(m.portCursor-1, 0)
		return true, nil
	case key.Matches(msg, k.Down):
		m.portCursor = min(m.portCursor+1, max(len(ps)-1, 0))
		return true, nil
	case key.Matches(msg, k.OpenPort), key.Matches(msg, k.CopyPort):
		if len(ps) == 0 {
			return true, common.Status(common.StatusMsg{Err: fmt.Errorf("%s forwards no port to open", m.name)})
		}
		url := PortURL(ps[min(m.portCursor, len(ps)-1)])
		if key.Matches(msg, k.CopyPort) {
			// OSC 52: the terminal puts it on the clipboard, also
			// over SSH.
			return true, tea.Sequence(tea.SetClipboard(url), common.Status(common.Statusf("copied %s", url)))
		}
		src := m.ctx.Src
		return true, func() tea.Msg {
			if err := src.OpenURL(url); err != nil {
				return common.StatusMsg{Err: err}
			}
			return common.Statusf("opened %s", url)
		}
	}
	return false, nil
}

// portsPane renders the Ports tab: SSH, then one line per forwarded
// port (guest port, host sockets, kind, since when, why the host port
// differs), the selected one marked.
func (m *Model) portsPane(th *theme.Theme) string {
	r := m.row
	if r.State != vm.StateRunning {
		return th.Muted.Render(m.name + " is " + r.State + ": ports are forwarded while it runs")
	}
	var lines []string
	for _, p := range r.Ports {
		if p.Kind == "ssh" {
			lines = append(lines, th.Muted.Render(fmt.Sprintf("  SSH  %s → 22 (machinetop machine ssh-config %s)", strings.Join(p.HostAddrs, " "), m.name)))
		}
	}
	ps := webPorts(r.Ports)
	if len(ps) == 0 {
		lines = append(lines, th.Muted.Render("  no port forwarded: a server listening in the machine shows here within a second"))
	}
	cur := min(m.portCursor, max(len(ps)-1, 0))
	for i, p := range ps {
		line := fmt.Sprintf("%5d → %-28s %-9s since %s", p.GuestPort, PortURL(p), p.Kind, p.Since.Local().Format("15:04:05"))
		if p.Note != "" {
			line += "  (" + p.Note + ")"
		}
		if i == cur {
			lines = append(lines, th.Accent.Render("▸ "+line))
		} else {
			lines = append(lines, "  "+th.Text.Render(line))
		}
	}
	for _, p := range r.Ports {
		if p.Error != "" {
			lines = append(lines, th.Error.Render(fmt.Sprintf("  %d → host port %d: %s", p.GuestPort, p.HostPort, p.Error)))
		}
	}
	return strings.Join(lines, "\n")
}
