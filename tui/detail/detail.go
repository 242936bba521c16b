// Package detail is a machine's detail view: its configuration and live
// figures with sparklines of the last minutes (guest CPU, guest memory,
// host memory held, disk used), and three tabs: an embedded shell, the
// console log (followed live), the forwarded ports (one opened in the
// browser or its URL copied with a key) and a full information list. Shell sessions
// are kept per machine and survive leaving the view.
package detail

import (
	"fmt"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/machinetop/machinetop/guest/client"
	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/tui/common"
	"github.com/machinetop/machinetop/tui/keys"
	"github.com/machinetop/machinetop/tui/logview"
	"github.com/machinetop/machinetop/tui/shell"
	"github.com/machinetop/machinetop/tui/source"
	"github.com/machinetop/machinetop/tui/sparkline"
	"github.com/machinetop/machinetop/vm"
)

// Tabs of the view.
const (
	TabShell = iota
	TabConsole
	TabPorts
	TabInfo
)

// TabNames are the tabs' titles.
var TabNames = []string{"Shell", "Console log", "Ports", "Info"}

// History is how many samples the sparklines keep (at one per refresh,
// 2 s: five minutes).
const History = 150

// consoleEvery is how often the console log is polled while shown.
const consoleEvery = 500 * time.Millisecond

// series are one machine's sparkline histories.
type series struct {
	cpu, mem, held, disk *sparkline.Ring
}

// Model is the detail view.
type Model struct {
	ctx  *common.Context
	name string
	row  source.Row
	// rows are the latest snapshot's machines, by name.
	rows map[string]source.Row
	tab  int
	// Focused is true while keys go to the shell.
	focused  bool
	sessions map[string]*shell.Session
	opening  map[string]bool
	shellErr map[string]string
	hist     map[string]*series

	console    *logview.Model
	consoleOff int64
	consoleGen int
	visible    bool
	// portCursor is the selected row of the Ports tab.
	portCursor int

	width, height int
}

var _ common.Component = (*Model)(nil)

// New returns the detail view.
func New(ctx *common.Context) *Model {
	return &Model{
		ctx: ctx, sessions: map[string]*shell.Session{}, opening: map[string]bool{},
		shellErr: map[string]string{}, hist: map[string]*series{}, console: logview.New(),
		rows: map[string]source.Row{},
	}
}

// Name returns the machine shown.
func (m *Model) Name() string { return m.name }

// Tab returns the active tab.
func (m *Model) Tab() int { return m.tab }

// Focused reports whether keys go to the shell.
func (m *Model) Focused() bool { return m.focused && m.tab == TabShell && m.sessions[m.name] != nil }

// Capturing implements common.Component: the shell is focused or the
// console log's search prompt is open.
func (m *Model) Capturing() bool {
	return m.Focused() || (m.tab == TabConsole && m.console.Searching())
}

// SetSize implements common.Component; the shell's PTY follows.
func (m *Model) SetSize(w, h int) {
	m.width, m.height = w, h
	m.resize()
}

// Title implements common.Component: the machine's name, after the
// machines tab.
func (m *Model) Title() string { return m.name }

// ShortHelp implements common.Component: only the leave chord while the
// shell is focused (every other key goes to the machine).
func (m *Model) ShortHelp() []key.Binding {
	k := m.ctx.Keys
	if m.Focused() {
		return k.Short(k.LeaveShell)
	}
	if m.tab == TabPorts {
		return k.Short(k.NextTab, k.OpenPort, k.CopyPort, k.Back, k.Start, k.Stop, k.Restart)
	}
	return k.Short(k.NextTab, k.FocusShell, k.Attach, k.Back, k.Start, k.Stop, k.Restart, k.Reclaim)
}

// FullHelp implements common.Component.
func (m *Model) FullHelp() []keys.Section {
	if m.Focused() {
		return m.ctx.Keys.Sections(keys.Shell)
	}
	return m.ctx.Keys.Sections(keys.Detail)
}

// Session returns the shell session of machine name, nil if none.
func (m *Model) Session(name string) *shell.Session { return m.sessions[name] }

// open makes machine name the one shown; a new machine starts on the
// Shell tab.
func (m *Model) open(name string) {
	if name != m.name {
		m.console.Reset()
		m.consoleOff = 0
		m.focused = false
		m.tab = TabShell
	}
	m.name, m.row = name, m.rows[name]
}

// Show implements common.Component: it starts following the console log
// when that tab is active.
func (m *Model) Show() tea.Cmd {
	m.visible = true
	return m.startConsole()
}

// Hide implements common.Component: polling stops, the shell loses the
// keys (it keeps running).
func (m *Model) Hide() {
	m.visible = false
	m.focused = false
	m.consoleGen++
}

// CloseAll ends every shell session (on quit).
func (m *Model) CloseAll() {
	for _, s := range m.sessions {
		s.Close()
	}
}

// paneSize is the size of the tab pane.
func (m *Model) paneSize() (int, int) { return m.width, max(m.height-headerLines, 3) }

// headerLines is the number of lines above the pane.
const headerLines = 4

type consoleMsg struct {
	gen  int
	data []byte
	off  int64
	err  error
}

func (m *Model) startConsole() tea.Cmd {
	if !m.visible || m.tab != TabConsole {
		return nil
	}
	m.consoleGen++
	return m.readConsole(m.consoleGen, 0)
}

// readConsole returns a Cmd that reads what is new in the console log
// after delay. A log that cannot be read yet (the machine never booted)
// reads as nothing new.
func (m *Model) readConsole(gen int, delay time.Duration) tea.Cmd {
	src, name, off := m.ctx.Src, m.name, m.consoleOff
	return func() tea.Msg {
		if delay > 0 {
			time.Sleep(delay)
		}
		data, next, err := src.ConsoleLog(name, off)
		return consoleMsg{gen: gen, data: data, off: next, err: err}
	}
}

// record adds a snapshot's samples to every machine's history.
func (m *Model) record(s source.Snapshot) {
	clear(m.rows)
	for _, r := range s.Rows {
		m.rows[r.Name] = r
		h := m.hist[r.Name]
		if h == nil {
			h = &series{sparkline.NewRing(History), sparkline.NewRing(History), sparkline.NewRing(History), sparkline.NewRing(History)}
			m.hist[r.Name] = h
		}
		var cpu, mem, disk float64
		if r.Metrics != nil {
			cpu = r.Metrics.CPUPercent
			mem = float64(r.Metrics.MemUsed)
			disk = float64(r.Metrics.DiskUsed)
		}
		h.cpu.Add(cpu)
		h.mem.Add(mem)
		h.held.Add(float64(r.HostRSS))
		h.disk.Add(disk)
		if r.Name == m.name {
			m.row = r
		}
	}
}

// Update handles a message.
func (m *Model) Update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case common.SnapshotMsg:
		m.record(msg.Snap)
		return nil
	case common.ShowMsg:
		if msg.View == keys.Detail {
			m.open(msg.Machine)
		}
		return nil
	case consoleMsg:
		return m.consoleRead(msg)
	case shell.OpenedMsg, shell.OutputMsg, shell.ExitedMsg, shell.AttachedMsg:
		return m.shellEvent(msg)
	case tea.PasteMsg:
		if m.Focused() {
			m.sessions[m.name].Paste(msg.Content)
		}
		return nil
	case tea.KeyPressMsg:
		return m.key(msg)
	}
	if m.tab == TabConsole {
		_, cmd := m.console.Update(msg, m.ctx.Keys)
		return cmd
	}
	return nil
}

// consoleRead adds what was read from the console log and reads again
// after consoleEvery, while the view shows the log.
func (m *Model) consoleRead(msg consoleMsg) tea.Cmd {
	if msg.gen != m.consoleGen || !m.visible {
		return nil
	}
	if len(msg.data) > 0 {
		m.console.Write(msg.data)
	}
	m.consoleOff = msg.off
	return m.readConsole(msg.gen, consoleEvery)
}

// shellEvent handles the shell sessions' messages: opened (or failed),
// output (re-arm), exited and returned from a full-screen attach.
func (m *Model) shellEvent(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case shell.OpenedMsg:
		delete(m.opening, msg.Name)
		if msg.Err != nil {
			m.shellErr[msg.Name] = msg.Err.Error()
			return common.Status(common.StatusMsg{Err: fmt.Errorf("shell in %s: %w", msg.Name, msg.Err)})
		}
		delete(m.shellErr, msg.Name)
		m.sessions[msg.Name] = msg.S
		if msg.Name == m.name && m.visible && m.tab == TabShell {
			m.focused = true
		}
		return msg.S.Wait()
	case shell.OutputMsg:
		if m.sessions[msg.S.Name] != msg.S {
			return nil
		}
		return msg.S.Wait()
	case shell.ExitedMsg:
		if m.sessions[msg.S.Name] == msg.S {
			m.focused = false
		}
	case shell.AttachedMsg:
		if msg.Err != nil {
			return common.Status(common.StatusMsg{Err: fmt.Errorf("attach: %w", msg.Err)})
		}
		return common.Status(common.Statusf("detached from the shell in %s; it keeps running", msg.S.Name))
	}
	return nil
}

// key handles a key: a focused shell gets every key but the leave chord;
// otherwise the machine actions, the console log's keys on its tab, then
// the tab, shell and attach keys.
func (m *Model) key(msg tea.KeyPressMsg) tea.Cmd {
	k := m.ctx.Keys
	if m.Focused() {
		if key.Matches(msg, k.LeaveShell) {
			m.focused = false
			return nil
		}
		m.sessions[m.name].Key(msg)
		return nil
	}
	switch {
	case key.Matches(msg, k.Start):
		return common.Act(m.name, common.VerbStart)
	case key.Matches(msg, k.Stop):
		return common.Act(m.name, common.VerbStop)
	case key.Matches(msg, k.Restart):
		return common.Act(m.name, common.VerbRestart)
	case key.Matches(msg, k.Reclaim):
		return common.Act(m.name, common.VerbReclaim)
	}
	if m.tab == TabConsole {
		if used, cmd := m.console.Update(msg, k); used {
			return cmd
		}
	}
	if m.tab == TabPorts {
		if used, cmd := m.portKey(msg); used {
			return cmd
		}
	}
	switch {
	case key.Matches(msg, k.NextTab):
		return m.setTab((m.tab + 1) % len(TabNames))
	case key.Matches(msg, k.PrevTab):
		return m.setTab((m.tab + len(TabNames) - 1) % len(TabNames))
	case key.Matches(msg, k.FocusShell):
		if m.tab != TabShell {
			m.setTab(TabShell)
		}
		return m.focusShell()
	case key.Matches(msg, k.Attach):
		return m.attach()
	}
	return nil
}

// attach hands the terminal to the machine's open shell.
func (m *Model) attach() tea.Cmd {
	s := m.sessions[m.name]
	if s == nil {
		return common.Status(common.StatusMsg{Err: fmt.Errorf("no shell open in %s: press enter on the Shell tab first", m.name)})
	}
	if done, _ := s.Exited(); done {
		return nil
	}
	return s.Attach()
}

func (m *Model) setTab(t int) tea.Cmd {
	m.tab = t
	m.focused = false
	m.consoleGen++
	if t == TabConsole {
		return m.startConsole()
	}
	return nil
}

// focusShell focuses the machine's shell, opening one when there is
// none (or the last one ended).
func (m *Model) focusShell() tea.Cmd {
	s := m.sessions[m.name]
	if s != nil {
		if done, _ := s.Exited(); !done {
			m.focused = true
			m.resize()
			return nil
		}
		delete(m.sessions, m.name)
	}
	if m.opening[m.name] {
		return nil
	}
	if m.row.State != vm.StateRunning {
		return common.Status(common.StatusMsg{Err: fmt.Errorf("%s is %s: start it (s) before opening a shell", m.name, m.row.State)})
	}
	m.opening[m.name] = true
	w, h := m.paneSize()
	name, src := m.name, m.ctx.Src
	u := m.row.User
	return shell.OpenCmd(func() (*client.Client, error) { return src.Agent(name) }, name, uint32(u.UID), uint32(u.GID), w, h)
}

func (m *Model) resize() {
	w, h := m.paneSize()
	if s := m.sessions[m.name]; s != nil {
		s.Resize(w, h)
	}
	m.console.SetSize(w, h)
}

// Cursor returns where the terminal cursor belongs (row and column in the
// view) while the shell is focused.
func (m *Model) Cursor() (x, y int, ok bool) {
	if !m.Focused() {
		return 0, 0, false
	}
	cx, cy, vis := m.sessions[m.name].Cursor()
	return cx, cy + headerLines, vis
}

// Infos returns the Info tab's label/value pairs for r.
func Infos(r source.Row) [][2]string {
	v := [][2]string{
		{"Name", r.Name}, {"ID", r.ID}, {"State", r.State},
		{"Default", fmt.Sprint(r.Default)},
		{"Image", r.Image}, {"Image digest", r.ImageDigest}, {"Architecture", r.GuestArch()},
		{"Created", r.Created.Local().Format("2006-01-02 15:04:05")},
		{"CPUs", r.CPUsShown()}, {"Memory", r.MemoryShown(common.FormatBytes)},
		{"Disk", common.FormatBytes(r.DiskBytes) + " (" + common.FormatBytes(r.DiskAllocated) + " allocated on the host)"},
		{"IP", ipText(r.Machine)}, {"Accelerator", strings.ToUpper(dash(r.Accelerator))},
		{"VM process", dash(pid(r.VMPID))}, {"Kernel", kernelText(r.Machine)}, {"Directory", r.Dir},
	}
	if f := r.StartFailure; f != nil {
		v = append(v, [2]string{"Start failed", f.At.Local().Format("2006-01-02 15:04:05") + ": " + f.Error})
	}
	if g := r.Guest; g != nil && g.DiskCheck != nil {
		v = append(v, [2]string{"Disk check", diskCheckText(g.DiskCheck)})
	}
	if mt := r.Metrics; mt != nil {
		v = append(v, [2]string{"Load", fmt.Sprintf("%.2f %.2f %.2f", mt.Load[0], mt.Load[1], mt.Load[2])},
			[2]string{"Guest uptime", common.FormatDuration(time.Duration(mt.UptimeSec * float64(time.Second)))})
	} else if r.MetricsErr != "" {
		v = append(v, [2]string{"Agent", r.MetricsErr})
	}
	return v
}

// ipText is the machine's address with the DHCP lease it comes from.
func ipText(m vm.Machine) string {
	if m.IP == "" || m.Lease == nil {
		return dash(m.IP)
	}
	return fmt.Sprintf("%s (DHCP from %s, renews %s)", m.Lease.Address, m.Lease.Server, m.Lease.Renew.Local().Format("2006-01-02 15:04"))
}

// diskCheckText is the latest boot's root disk check in a few words.
func diskCheckText(dc *proto.DiskCheck) string {
	s := dc.Result
	if dc.Formatted {
		s += ", formatted at first boot"
	}
	if dc.JournalRecovered {
		s += ", journal recovered"
	}
	return fmt.Sprintf("%s (e2fsck exit %d, %d ms)", s, dc.ExitCode, dc.Millis)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func pid(p int) string {
	if p == 0 {
		return ""
	}
	return fmt.Sprint(p)
}

// kernelText is the running kernel's release, else the configured kernel
// file, else "default".
func kernelText(m vm.Machine) string {
	switch {
	case m.KernelRelease != "":
		return m.KernelRelease
	case m.Kernel != "":
		return m.Kernel
	}
	return "default"
}
