// Package machines is the dashboard's home view: a live table of machines
// with a host header, filtering, sorting, and the actions start, stop,
// restart, delete (confirmed), create (a form) and set-default. Actions run
// in tea.Cmds; a spinner marks a machine's row while its action runs.
package machines

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"

	"github.com/machinetop/machinetop/tui/common"
	"github.com/machinetop/machinetop/tui/form"
	"github.com/machinetop/machinetop/tui/source"
	"github.com/machinetop/machinetop/vm"
)

// Spinner frames, shown in the STATE cell of a machine with an action in
// flight.
var spinner = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

// spinEvery is the spinner's frame interval.
const spinEvery = 120 * time.Millisecond

// ActionDoneMsg reports the end of an action on a machine.
type ActionDoneMsg struct {
	Name, Verb string
	Err        error
	Took       time.Duration
}

type spinMsg struct{}

// Model is the machines view.
type Model struct {
	ctx  *common.Context
	snap source.Snapshot
	// rows is snap.Rows filtered and sorted, as displayed.
	rows    []source.Row
	cursor  int
	offset  int
	sortKey string
	sortRev bool

	filter    textinput.Model
	filtering bool

	busy    map[string]string // machine → verb in flight ("stopping")
	spin    int
	spinOn  bool
	confirm string // machine awaiting y/N for delete
	form    *form.Model

	cache    string
	cacheKey viewKey
}

// New returns the machines view.
func New(ctx *common.Context) *Model {
	ti := textinput.New()
	ti.Prompt = "/"
	return &Model{ctx: ctx, busy: map[string]string{}, filter: ti, sortKey: "name"}
}

// Selected returns the selected machine's name, "" when there is none.
func (m *Model) Selected() string {
	if m.cursor >= 0 && m.cursor < len(m.rows) {
		return m.rows[m.cursor].Name
	}
	return ""
}

// Row returns the latest row of machine name.
func (m *Model) Row(name string) (source.Row, bool) {
	for _, r := range m.snap.Rows {
		if r.Name == name {
			return r, true
		}
	}
	return source.Row{}, false
}

// Busy reports the action in flight on name, "" when none.
func (m *Model) Busy(name string) string { return m.busy[name] }

// Capturing reports whether the view takes every key (a form, the filter
// or a confirmation is open), so global keys must not act.
func (m *Model) Capturing() bool { return m.filtering || m.form != nil || m.confirm != "" }

// SetSnapshot replaces the data and keeps the selection on the same
// machine.
func (m *Model) SetSnapshot(s source.Snapshot) {
	sel := m.Selected()
	m.snap = s
	m.apply(sel)
}

func (m *Model) apply(sel string) {
	q := strings.ToLower(strings.TrimSpace(m.filter.Value()))
	m.rows = m.rows[:0]
	for _, r := range m.snap.Rows {
		if q == "" || strings.Contains(strings.ToLower(r.Name+" "+r.Image+" "+r.State+" "+r.IP), q) {
			m.rows = append(m.rows, r)
		}
	}
	slices.SortStableFunc(m.rows, func(a, b source.Row) int {
		c := compare(m.sortKey, a, b)
		if c == 0 {
			c = strings.Compare(a.Name, b.Name)
		}
		if m.sortRev {
			c = -c
		}
		return c
	})
	m.cursor = min(m.cursor, max(len(m.rows)-1, 0))
	for i, r := range m.rows {
		if r.Name == sel {
			m.cursor = i
		}
	}
}

func memUsed(r source.Row) uint64 {
	if r.Metrics != nil {
		return r.Metrics.MemUsed
	}
	return 0
}

func diskUsed(r source.Row) uint64 {
	if r.Metrics != nil && r.Metrics.DiskUsed > 0 {
		return r.Metrics.DiskUsed
	}
	return r.DiskAllocated
}

func cmpNum[T int | uint64 | int64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func compare(k string, a, b source.Row) int {
	switch k {
	case "image":
		return strings.Compare(a.Image, b.Image)
	case "cpus":
		return cmpNum(a.CPUs, b.CPUs)
	case "mem":
		return -cmpNum(memUsed(a), memUsed(b))
	case "disk":
		return -cmpNum(diskUsed(a), diskUsed(b))
	case "state":
		return strings.Compare(a.State, b.State)
	case "uptime":
		return cmpNum(a.Started.UnixNano(), b.Started.UnixNano())
	}
	return strings.Compare(a.Name, b.Name)
}

func (m *Model) sortBy(k string) {
	if m.sortKey == k {
		m.sortRev = !m.sortRev
	} else {
		m.sortKey, m.sortRev = k, false
	}
	m.apply(m.Selected())
}

// Update handles a message.
func (m *Model) Update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case common.SnapshotMsg:
		m.SetSnapshot(msg.Snap)
	case ActionDoneMsg:
		delete(m.busy, msg.Name)
		refresh := func() tea.Msg { return common.RefreshMsg{} }
		if msg.Err != nil {
			return tea.Batch(refresh, common.Status(common.StatusMsg{Err: fmt.Errorf("%s %s: %w", msg.Verb, msg.Name, msg.Err)}))
		}
		return tea.Batch(refresh, common.Status(common.Statusf("%s %s: done in %s", msg.Verb, msg.Name, msg.Took.Round(100*time.Millisecond))))
	case spinMsg:
		m.spin++
		if len(m.busy) == 0 {
			m.spinOn = false
			return nil
		}
		return spinCmd()
	case tea.KeyPressMsg:
		return m.key(msg)
	default:
		if m.form != nil {
			_, cmd := m.form.Update(msg)
			return cmd
		}
		if m.filtering {
			var cmd tea.Cmd
			m.filter, cmd = m.filter.Update(msg)
			return cmd
		}
	}
	return nil
}

func spinCmd() tea.Cmd { return tea.Tick(spinEvery, func(time.Time) tea.Msg { return spinMsg{} }) }

func (m *Model) key(msg tea.KeyPressMsg) tea.Cmd {
	k := m.ctx.Keys
	if m.form != nil {
		res, cmd := m.form.Update(msg)
		switch res {
		case form.Cancelled:
			m.form = nil
		case form.Submitted:
			v := m.form.Values()
			m.form = nil
			return m.create(v)
		}
		return cmd
	}
	if m.confirm != "" {
		name := m.confirm
		m.confirm = ""
		if msg.String() == "y" || msg.String() == "Y" {
			return m.act(name, "delete", "deleting", func(ctx context.Context) error { return m.ctx.Src.Delete(ctx, name) })
		}
		return common.Status(common.Statusf("delete %s: cancelled", name))
	}
	if m.filtering {
		switch msg.String() {
		case "esc":
			m.filtering = false
			m.filter.SetValue("")
			m.filter.Blur()
			m.apply(m.Selected())
			return nil
		case "enter":
			m.filtering = false
			m.filter.Blur()
			return nil
		}
		var cmd tea.Cmd
		m.filter, cmd = m.filter.Update(msg)
		m.apply(m.Selected())
		return cmd
	}
	sel := m.Selected()
	if c, ok := common.MoveCursor(msg, k, m.cursor, len(m.rows)); ok {
		m.cursor = c
		return nil
	}
	for _, s := range []struct {
		b   key.Binding
		col string
	}{{k.SortName, "name"}, {k.SortImage, "image"}, {k.SortCPUs, "cpus"}, {k.SortMem, "mem"},
		{k.SortDisk, "disk"}, {k.SortState, "state"}, {k.SortUptime, "uptime"}} {
		if key.Matches(msg, s.b) {
			m.sortBy(s.col)
			return nil
		}
	}
	switch {
	case key.Matches(msg, k.Filter):
		m.filtering = true
		return m.filter.Focus()
	case key.Matches(msg, k.Back):
		if m.filter.Value() != "" {
			m.filter.SetValue("")
			m.apply(sel)
		}
	case key.Matches(msg, k.Create):
		img := ""
		if r, ok := m.Row(sel); ok {
			img = r.Image
		}
		m.form = form.New("Create a machine (it boots when created)",
			form.Field{Label: "Image", Placeholder: "NAME:TAG", Value: img},
			form.Field{Label: "Name", Placeholder: "default: from the image"},
			form.Field{Label: "CPUs", Placeholder: strconv.Itoa(vm.DefaultCPUs())},
			form.Field{Label: "Memory", Placeholder: "e.g. 512M, 2G (default: half the host's)"})
		return nil
	case sel == "":
		return nil
	case key.Matches(msg, k.Open):
		return func() tea.Msg { return common.OpenDetailMsg{Name: sel} }
	case key.Matches(msg, k.Start):
		return m.act(sel, "start", "starting", func(ctx context.Context) error { return m.ctx.Src.Start(ctx, sel) })
	case key.Matches(msg, k.Stop):
		return m.act(sel, "stop", "stopping", func(ctx context.Context) error { return m.ctx.Src.Stop(ctx, sel) })
	case key.Matches(msg, k.Restart):
		return m.act(sel, "restart", "restarting", func(ctx context.Context) error { return m.ctx.Src.Restart(ctx, sel) })
	case key.Matches(msg, k.SetDefault):
		return m.act(sel, "set-default", "", func(context.Context) error { return m.ctx.Src.SetDefault(sel) })
	case key.Matches(msg, k.Delete):
		if m.busy[sel] != "" {
			return common.Status(common.StatusMsg{Err: fmt.Errorf("%s is busy %s", sel, m.busy[sel])})
		}
		m.confirm = sel
	}
	return nil
}

// act runs fn for machine name in a Cmd, marking the row busy with
// progress (no spinner when progress is "").
func (m *Model) act(name, verb, progress string, fn func(context.Context) error) tea.Cmd {
	if b := m.busy[name]; b != "" {
		return common.Status(common.StatusMsg{Err: fmt.Errorf("%s is busy %s", name, b)})
	}
	run := func() tea.Msg {
		start := time.Now()
		err := fn(context.Background())
		return ActionDoneMsg{Name: name, Verb: verb, Err: err, Took: time.Since(start)}
	}
	if progress == "" {
		return run
	}
	m.busy[name] = progress
	// In sequence, so a quick failure is not overwritten by the progress
	// message.
	cmds := []tea.Cmd{tea.Sequence(common.Status(common.Statusf("%s %s…", progress, name)), run)}
	if !m.spinOn {
		m.spinOn = true
		cmds = append(cmds, spinCmd())
	}
	return tea.Batch(cmds...)
}

func (m *Model) create(v []string) tea.Cmd {
	opts := vm.CreateOptions{Image: v[0], Name: v[1]}
	if v[2] != "" {
		n, err := strconv.Atoi(v[2])
		if err != nil {
			return common.Status(common.StatusMsg{Err: fmt.Errorf("create: CPUs %q is not a whole number", v[2])})
		}
		opts.CPUs = n
	}
	if v[3] != "" {
		b, err := vm.ParseSize(v[3])
		if err != nil {
			return common.Status(common.StatusMsg{Err: fmt.Errorf("create: memory %q: %v", v[3], err)})
		}
		opts.MemoryBytes = b
	}
	if opts.Image == "" {
		return common.Status(common.StatusMsg{Err: fmt.Errorf("create: no image given")})
	}
	label := opts.Name
	if label == "" {
		label = opts.Image
	}
	return m.act(label, "create", "creating", func(ctx context.Context) error { return m.ctx.Src.Create(ctx, opts) })
}

// Do runs the machine action bound to msg (start, stop or restart) on
// machine name; other keys do nothing.
func (m *Model) Do(name string, msg tea.KeyPressMsg) tea.Cmd {
	k := m.ctx.Keys
	switch {
	case key.Matches(msg, k.Start):
		return m.act(name, "start", "starting", func(ctx context.Context) error { return m.ctx.Src.Start(ctx, name) })
	case key.Matches(msg, k.Stop):
		return m.act(name, "stop", "stopping", func(ctx context.Context) error { return m.ctx.Src.Stop(ctx, name) })
	case key.Matches(msg, k.Restart):
		return m.act(name, "restart", "restarting", func(ctx context.Context) error { return m.ctx.Src.Restart(ctx, name) })
	}
	return nil
}
