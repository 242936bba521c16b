// Package imagesview is the dashboard's images view: the local images with
// the machines using each (Source.ImageUsers), delete (refused while a
// machine uses the image, else confirmed y/N) and pull with per-layer
// progress.
package imagesview

import (
	"context"
	"fmt"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/machinetop/machinetop/images"
	"github.com/machinetop/machinetop/images/progress"
	"github.com/machinetop/machinetop/theme"
	"github.com/machinetop/machinetop/tui/common"
	"github.com/machinetop/machinetop/tui/form"
	"github.com/machinetop/machinetop/tui/keys"
	"github.com/machinetop/machinetop/tui/modal"
	"github.com/machinetop/machinetop/tui/table"
)

// ListMsg carries a fresh image list.
type ListMsg struct {
	Images []images.Image
	// Users[i] are the machines made from Images[i] (Source.ImageUsers).
	Users [][]string
	Err   error
}

// PullEventMsg carries one progress event of the running pull.
type PullEventMsg struct {
	Ev progress.Event
	ch <-chan progress.Event
}

// PullDoneMsg ends a pull.
type PullDoneMsg struct {
	Ref string
	Err error
}

type removedMsg struct {
	Ref string
	Err error
}

// usersMsg answers the in-use check made before deleting Ref.
type usersMsg struct {
	Ref   string
	Users []string
	Err   error
}

// Model is the images view.
type Model struct {
	ctx     *common.Context
	imgs    []images.Image
	users   [][]string
	err     error
	cursor  int
	offset  int
	visible bool
	loading bool
	// modal is the delete confirmation or the pull prompt.
	modal modal.Model
	// pull state
	pulling string
	layers  map[string][2]int64 // digest → done, size
	order   []string
	pullErr chan error

	width, height int
}

var _ common.Component = (*Model)(nil)

// New returns the images view.
func New(ctx *common.Context) *Model { return &Model{ctx: ctx} }

// Capturing implements common.Component: a prompt is open.
func (m *Model) Capturing() bool { return m.modal.Open() }

// SetSize implements common.Component.
func (m *Model) SetSize(w, h int) { m.width, m.height = w, h }

// Show implements common.Component: it lists the images, and lists them
// again with every snapshot while shown (the MACHINES column follows the
// machines).
func (m *Model) Show() tea.Cmd {
	m.visible = true
	return m.Load()
}

// Hide implements common.Component.
func (m *Model) Hide() { m.visible = false }

// Title implements common.Component.
func (m *Model) Title() string { return "Images" }

// Cursor implements common.Component: the view has no cursor of its own.
func (m *Model) Cursor() (int, int, bool) { return 0, 0, false }

// ShortHelp implements common.Component.
func (m *Model) ShortHelp() []key.Binding {
	k := m.ctx.Keys
	return k.Short(k.Pull, k.RemoveImage, k.ViewMachines, k.ViewBuilds)
}

// FullHelp implements common.Component.
func (m *Model) FullHelp() []keys.Section { return m.ctx.Keys.Sections(keys.Images) }

// Load returns a Cmd that lists the images and the machines using each.
func (m *Model) Load() tea.Cmd {
	m.loading = true
	src := m.ctx.Src
	return func() tea.Msg {
		imgs, err := src.Images()
		msg := ListMsg{Images: imgs, Users: make([][]string, len(imgs)), Err: err}
		for i, img := range imgs {
			used, err := src.ImageUsers(img.Digest.String(), img.Ref())
			if err != nil && msg.Err == nil {
				msg.Err = fmt.Errorf("which machines use %s: %w", img.Ref(), err)
			}
			msg.Users[i] = used
		}
		return msg
	}
}

func (m *Model) selected() (images.Image, bool) {
	if m.cursor >= 0 && m.cursor < len(m.imgs) {
		return m.imgs[m.cursor], true
	}
	return images.Image{}, false
}

// Update handles a message.
func (m *Model) Update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case common.SnapshotMsg:
		if m.visible && !m.loading {
			return m.Load()
		}
	case ListMsg:
		m.loading = false
		m.imgs, m.users, m.err = msg.Images, msg.Users, msg.Err
		m.cursor = min(m.cursor, max(len(m.imgs)-1, 0))
	case usersMsg:
		return m.confirmRemove(msg)
	case removedMsg:
		if msg.Err != nil {
			return common.Status(common.StatusMsg{Err: fmt.Errorf("delete image %s: %w", msg.Ref, msg.Err)})
		}
		return tea.Batch(m.Load(), common.Status(common.Statusf("deleted image %s", msg.Ref)))
	case PullEventMsg:
		m.pullEvent(msg.Ev)
		return m.nextEvent(msg.ch)
	case PullDoneMsg:
		m.pulling = ""
		if msg.Err != nil {
			return common.Status(common.StatusMsg{Err: fmt.Errorf("pull %s: %w", msg.Ref, msg.Err)})
		}
		return tea.Batch(m.Load(), common.Status(common.Statusf("pulled %s", msg.Ref)))
	case tea.KeyPressMsg:
		return m.key(msg)
	default:
		_, cmd := m.modal.Update(msg)
		return cmd
	}
	return nil
}

// key handles a key: the open prompt takes it first.
func (m *Model) key(msg tea.KeyPressMsg) tea.Cmd {
	if used, cmd := m.modal.Update(msg); used {
		return cmd
	}
	k := m.ctx.Keys
	if c, ok := common.MoveCursor(msg, k, m.cursor, len(m.imgs)); ok {
		m.cursor = c
		return nil
	}
	switch {
	case key.Matches(msg, k.Pull):
		if m.pulling != "" {
			return common.Status(common.StatusMsg{Err: fmt.Errorf("a pull of %s is running", m.pulling)})
		}
		m.modal.Form(form.New("Pull an image", form.Field{Label: "Reference", Placeholder: "e.g. debian:bookworm"}),
			func(v []string) tea.Cmd { return m.pull(v[0]) })
	case key.Matches(msg, k.RemoveImage):
		img, ok := m.selected()
		if !ok {
			return nil
		}
		// Ask the source which machines use it now, not as last listed.
		src, digest, ref := m.ctx.Src, img.Digest.String(), img.Ref()
		return func() tea.Msg {
			used, err := src.ImageUsers(digest, ref)
			return usersMsg{Ref: ref, Users: used, Err: err}
		}
	}
	return nil
}

// confirmRemove refuses to delete an image in use, else asks y/N.
func (m *Model) confirmRemove(u usersMsg) tea.Cmd {
	switch {
	case u.Err != nil:
		return common.Status(common.StatusMsg{Err: fmt.Errorf("delete image %s: cannot tell which machines use it: %w", u.Ref, u.Err)})
	case len(u.Users) > 0:
		return common.Status(common.StatusMsg{Err: fmt.Errorf("image %s is used by %s: delete those machines first", u.Ref, strings.Join(u.Users, ", "))})
	}
	src, ref := m.ctx.Src, u.Ref
	m.modal.Confirm("Delete image "+ref+"?", func() tea.Cmd {
		return func() tea.Msg { return removedMsg{Ref: ref, Err: src.RemoveImage(ref)} }
	}, common.Status(common.Statusf("delete image %s: cancelled", ref)))
	return nil
}

// pullEvent records a layer's progress.
func (m *Model) pullEvent(ev progress.Event) {
	if ev.Kind != progress.KindBytes {
		return
	}
	if _, ok := m.layers[ev.Layer]; !ok {
		m.order = append(m.order, ev.Layer)
	}
	m.layers[ev.Layer] = [2]int64{ev.Done, ev.Size}
}

// pull returns the Cmd that starts pulling ref and waits for its first
// event; the pull runs in its own goroutine, its events arrive one
// PullEventMsg at a time.
func (m *Model) pull(ref string) tea.Cmd {
	if ref == "" {
		return common.Status(common.StatusMsg{Err: fmt.Errorf("pull: no reference given")})
	}
	m.pulling, m.layers, m.order = ref, map[string][2]int64{}, nil
	ch := make(chan progress.Event, 64)
	errc := make(chan error, 1)
	m.pullErr = errc
	src, first := m.ctx.Src, m.nextEvent(ch)
	start := func() tea.Msg {
		go func() {
			err := src.Pull(context.Background(), ref, func(e progress.Event) { ch <- e })
			errc <- err
			close(ch)
		}()
		return first()
	}
	return tea.Batch(common.Status(common.Statusf("pulling %s…", ref)), start)
}

func (m *Model) nextEvent(ch <-chan progress.Event) tea.Cmd {
	errc, ref := m.pullErr, m.pulling
	return func() tea.Msg {
		ev, ok := <-ch
		if !ok {
			return PullDoneMsg{Ref: ref, Err: <-errc}
		}
		return PullEventMsg{Ev: ev, ch: ch}
	}
}

// Columns of the images table.
var Columns = []table.Column{
	{Title: "IMAGE", Min: 10, Max: 40},
	{Title: "DIGEST", Min: 12, Max: 12, Drop: 2},
	{Title: "SIZE", Min: 6, Right: true},
	{Title: "CREATED", Min: 7, Right: true, Drop: 3},
	{Title: "MACHINES", Min: 8, Drop: 1},
}

// Cells renders one image row.
func Cells(th *theme.Theme, img images.Image, used []string, now time.Time) []table.Cell {
	created := "-"
	if !img.Created.IsZero() {
		created = common.FormatDuration(now.Sub(img.Created)) + " ago"
	}
	u := strings.Join(used, ",")
	if u == "" {
		u = "-"
	}
	return []table.Cell{
		{Text: img.Ref(), Style: &th.Text},
		{Text: img.Digest.Hex[:min(12, len(img.Digest.Hex))], Style: &th.Muted},
		{Text: common.FormatBytes(uint64(img.Size))},
		{Text: created, Style: &th.Muted},
		{Text: u},
	}
}

// View renders the view.
func (m *Model) View() string {
	th := m.ctx.Theme
	w, h := m.width, m.height
	var bottom []string
	switch {
	case m.modal.Open():
		bottom = strings.Split(m.modal.View(th, w), "\n")
	case m.pulling != "":
		bottom = append(bottom, th.Busy.Render("pulling "+m.pulling))
		for _, l := range m.order {
			p := m.layers[l]
			pct := ""
			if p[1] > 0 {
				pct = fmt.Sprintf(" %3d%%", p[0]*100/p[1])
			}
			short := strings.TrimPrefix(l, "sha256:")
			bottom = append(bottom, fmt.Sprintf("  %s %s/%s%s", short[:min(12, len(short))], common.FormatBytes(uint64(p[0])), common.FormatBytes(uint64(p[1])), pct))
		}
	}
	var sb strings.Builder
	if m.err != nil {
		sb.WriteString(th.Error.Render("cannot list images: "+m.err.Error()) + "\n")
	}
	t := table.Table{Columns: Columns, Cursor: m.cursor, Offset: m.offset}
	now := m.ctx.Now()
	for i, img := range m.imgs {
		var used []string
		if i < len(m.users) {
			used = m.users[i]
		}
		t.Rows = append(t.Rows, Cells(th, img, used, now))
	}
	if len(m.imgs) == 0 {
		t.Cursor = -1
	}
	body, off := t.Render(th, w, max(h-len(bottom), 1))
	m.offset = off
	sb.WriteString(body)
	if len(m.imgs) == 0 {
		sb.WriteString("\n" + theme.Blank + th.Muted.Render("no images: import one with `machinetop image import FILE NAME:TAG`, or pull (p)"))
	}
	out := common.Fit(sb.String(), w, h-len(bottom))
	if len(bottom) > 0 {
		out += "\n" + strings.Join(bottom, "\n")
	}
	return common.Fit(out, w, h)
}
