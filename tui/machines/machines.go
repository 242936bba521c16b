// Package machines is the dashboard's home view: a live table of machines
// with a host header, filtering, sorting, and the actions start, stop,
// restart, delete (confirmed y/N), create (a form) and set-default. Actions
// run in tea.Cmds; a spinner marks a machine's row while its action runs.
// It also runs the actions other views ask for (common.ActionMsg), so every
// action on a machine shows the same way.
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
	"github.com/machinetop/machinetop/tui/keys"
	"github.com/machinetop/machinetop/tui/modal"
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
	// Result, when set, is the status line to show instead of "done".
	Result string
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

	busy   map[string]string // machine → verb in flight ("stopping")
	spin   int
	spinOn bool
	// modal is the delete confirmation or the create form.
	modal modal.Model
	// loaded is set by the first snapshot.
	loaded bool

	width, height int
	cache         string
	cacheKey      viewKey
}

var _ common.Component = (*Model)(nil)

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

// Capturing implements common.Component: the filter prompt, the create
// form or the delete confirmation is open.
func (m *Model) Capturing() bool { return m.filtering || m.modal.Open() }

// SetSize implements common.Component.
func (m *Model) SetSize(w, h int) { m.width, m.height = w, h }

// Show implements common.Component; the rows come with every snapshot.
func (m *Model) Show() tea.Cmd { return nil }

// Hide implements common.Component.
func (m *Model) Hide() {}

// Title implements common.Component.
func (m *Model) Title() string { return "Machines" }

// Cursor implements common.Component: the view has no cursor of its own.
func (m *Model) Cursor() (int, int, bool) { return 0, 0, false }

// ShortHelp implements common.Component.
func (m *Model) ShortHelp() []key.Binding {
	k := m.ctx.Keys
	return k.Short(k.Open, k.Start, k.Stop, k.Restart, k.Reclaim, k.Delete, k.Create, k.SetDefault, k.Filter)
}

// FullHelp implements common.Component.
func (m *Model) FullHelp() []keys.Section { return m.ctx.Keys.Sections(keys.Machines) }

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
		m.loaded = true
		m.SetSnapshot(msg.Snap)
	case common.ActionMsg:
		return m.do(msg.Machine, msg.Verb)
	case ActionDoneMsg:
		delete(m.busy, msg.Name)
		refresh := func() tea.Msg { return common.RefreshMsg{} }
		if msg.Err != nil {
			return tea.Batch(refresh, common.Status(common.StatusMsg{Err: fmt.Errorf("%s %s: %w", msg.Verb, msg.Name, msg.Err)}))
		}
		if msg.Result != "" {
			return tea.Batch(refresh, common.Status(common.Statusf("%s", msg.Result)))
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
		if used, cmd := m.modal.Update(msg); used {
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

// key handles a key: the open prompt takes it first, then the filter
// prompt, then the list's movement, sort and action keys.
func (m *Model) key(msg tea.KeyPressMsg) tea.Cmd {
	if used, cmd := m.modal.Update(msg); used {
		return cmd
	}
	if m.filtering {
		return m.filterKey(msg)
	}
	k := m.ctx.Keys
	if c, ok := common.MoveCursor(msg, k, m.cursor, len(m.rows)); ok {
		m.cursor = c
		return nil
	}
	for _, s := range m.sorts() {
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
			m.apply(m.Selected())
		}
		return nil
	case key.Matches(msg, k.Create):
		m.openCreateForm()
		return nil
	}
	return m.rowKey(msg, m.Selected())
}

// filterKey edits the filter prompt: esc clears and closes it, enter
// closes it keeping the filter; rows are filtered as the user types.
func (m *Model) filterKey(msg tea.KeyPressMsg) tea.Cmd {
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

// sorts pairs each sort key with the column it sorts by.
func (m *Model) sorts() []struct {
	b   key.Binding
	col string
} {
	k := m.ctx.Keys
	return []struct {
		b   key.Binding
		col string
	}{{k.SortName, "name"}, {k.SortImage, "image"}, {k.SortCPUs, "cpus"}, {k.SortMem, "mem"},
		{k.SortDisk, "disk"}, {k.SortState, "state"}, {k.SortUptime, "uptime"}}
}

// rowKey handles the keys that act on the selected machine sel.
func (m *Model) rowKey(msg tea.KeyPressMsg, sel string) tea.Cmd {
	k := m.ctx.Keys
	if sel == "" {
		return nil
	}
	if v, ok := m.verbOf(msg); ok {
		return m.do(sel, v)
	}
	switch {
	case key.Matches(msg, k.Open):
		return common.Show(keys.Detail, sel)
	case key.Matches(msg, k.SetDefault):
		return m.act(sel, "set-default", "", func(context.Context) error { return m.ctx.Src.SetDefault(sel) })
	case key.Matches(msg, k.Delete):
		if b := m.busy[sel]; b != "" {
			return common.Status(common.StatusMsg{Err: fmt.Errorf("%s is busy %s", sel, b)})
		}
		m.modal.Confirm(fmt.Sprintf("Delete machine %s and its disk?", sel), func() tea.Cmd {
			return m.act(sel, "delete", "deleting", func(ctx context.Context) error { return m.ctx.Src.Delete(ctx, sel) })
		}, common.Status(common.Statusf("delete %s: cancelled", sel)))
	}
	return nil
}

// openCreateForm opens the create form, its image prefilled from the
// selected machine.
func (m *Model) openCreateForm() {
	img := ""
	if r, ok := m.Row(m.Selected()); ok {
		img = r.Image
	}
	m.modal.Form(form.New("Create a machine (it boots when created)",
		form.Field{Label: "Image", Placeholder: "NAME:TAG", Value: img},
		form.Field{Label: "Name", Placeholder: "default: from the image"},
		form.Field{Label: "CPUs", Placeholder: strconv.Itoa(vm.DefaultCPUs())},
		form.Field{Label: "Memory", Placeholder: "e.g. 512M, 2G (default: half the host's)"}), m.create)
}

// verbs are the machine actions with a key of their own, here and in
// the detail view (common.ActionMsg): the verb, the word its busy row
// shows, and the Source call.
var verbs = map[common.Verb]struct {
	progress string
	run      func(src source.Source, ctx context.Context, name string) (string, error)
}{
	common.VerbStart:   {"starting", quiet(source.Source.Start)},
	common.VerbStop:    {"stopping", quiet(source.Source.Stop)},
	common.VerbRestart: {"restarting", quiet(source.Source.Restart)},
	common.VerbReclaim: {"reclaiming", source.Source.Reclaim},
}

// quiet adapts an action without a result line to verbs' run.
func quiet(f func(source.Source, context.Context, string) error) func(source.Source, context.Context, string) (string, error) {
	return func(src source.Source, ctx context.Context, name string) (string, error) {
		return "", f(src, ctx, name)
	}
}

// verbOf returns the verb bound to msg.
func (m *Model) verbOf(msg tea.KeyPressMsg) (common.Verb, bool) {
	k := m.ctx.Keys
	switch {
	case key.Matches(msg, k.Start):
		return common.VerbStart, true
	case key.Matches(msg, k.Stop):
		return common.VerbStop, true
	case key.Matches(msg, k.Restart):
		return common.VerbRestart, true
	case key.Matches(msg, k.Reclaim):
		return common.VerbReclaim, true
	}
	return "", false
}

// do runs verb on machine name.
func (m *Model) do(name string, v common.Verb) tea.Cmd {
	a, ok := verbs[v]
	if !ok {
		return common.Status(common.StatusMsg{Err: fmt.Errorf("%s %s: no such machine action", v, name)})
	}
	src := m.ctx.Src
	return m.actResult(name, string(v), a.progress, func(ctx context.Context) (string, error) { return a.run(src, ctx, name) })
}

// act runs fn for machine name in a Cmd, marking the row busy with
// progress (no spinner when progress is "").
func (m *Model) act(name, verb, progress string, fn func(context.Context) error) tea.Cmd {
	return m.actResult(name, verb, progress, func(ctx context.Context) (string, error) { return "", fn(ctx) })
}

// actResult is act for an fn whose string, when not empty, is the status
// line shown once it is done.
func (m *Model) actResult(name, verb, progress string, fn func(context.Context) (string, error)) tea.Cmd {
	if b := m.busy[name]; b != "" {
		return common.Status(common.StatusMsg{Err: fmt.Errorf("%s is busy %s", name, b)})
	}
	run := func() tea.Msg {
		start := time.Now()
		res, err := fn(context.Background())
		return ActionDoneMsg{Name: name, Verb: verb, Err: err, Took: time.Since(start), Result: res}
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
