// Package imagesview is the dashboard's images view: the local images with
// the machines using each, delete (refused while a machine uses the
// image) and pull with per-layer progress.
package imagesview

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/machinetop/machinetop/images"
	"github.com/machinetop/machinetop/images/progress"
	"github.com/machinetop/machinetop/theme"
	"github.com/machinetop/machinetop/tui/common"
	"github.com/machinetop/machinetop/tui/form"
	"github.com/machinetop/machinetop/tui/source"
	"github.com/machinetop/machinetop/tui/table"
)

// ListMsg carries a fresh image list.
type ListMsg struct {
	Images []images.Image
	Err    error
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

// Model is the images view.
type Model struct {
	ctx      *common.Context
	imgs     []images.Image
	err      error
	machines []source.Row
	cursor   int
	offset   int
	confirm  string
	form     *form.Model
	// pull state
	pulling string
	layers  map[string][2]int64 // digest → done, size
	order   []string
	pullErr chan error
}

// New returns the images view.
func New(ctx *common.Context) *Model { return &Model{ctx: ctx} }

// Capturing reports whether the view takes every key.
func (m *Model) Capturing() bool { return m.form != nil || m.confirm != "" }

// Load returns a Cmd that lists the images.
func (m *Model) Load() tea.Cmd {
	src := m.ctx.Src
	return func() tea.Msg {
		imgs, err := src.Images()
		return ListMsg{Images: imgs, Err: err}
	}
}

// UsedBy returns the names of the machines made from img, sorted.
func UsedBy(img images.Image, rows []source.Row) []string {
	var out []string
	for _, r := range rows {
		if r.ImageDigest == img.Digest.String() || r.Image == img.Ref() {
			out = append(out, r.Name)
		}
	}
	sort.Strings(out)
	return out
}

func (m *Model) selected() (images.Image, bool) {
	if m.cursor >= 0 && m.cursor < len(m.imgs) {
		return m.imgs[m.cursor], true
	}
	return images.Image{}, false
}

// Update handles a message.
func (m *Model) Update(msg tea.Msg) tea.Cmd {
	k := m.ctx.Keys
	switch msg := msg.(type) {
	case common.SnapshotMsg:
		m.machines = msg.Snap.Rows
	case ListMsg:
		m.imgs, m.err = msg.Images, msg.Err
		m.cursor = min(m.cursor, max(len(m.imgs)-1, 0))
	case removedMsg:
		if msg.Err != nil {
			return common.Status(common.StatusMsg{Err: fmt.Errorf("delete image %s: %w", msg.Ref, msg.Err)})
		}
		return tea.Batch(m.Load(), common.Status(common.Statusf("deleted image %s", msg.Ref)))
	case PullEventMsg:
		if msg.Ev.Kind == progress.KindBytes {
			if _, ok := m.layers[msg.Ev.Layer]; !ok {
				m.order = append(m.order, msg.Ev.Layer)
			}
			m.layers[msg.Ev.Layer] = [2]int64{msg.Ev.Done, msg.Ev.Size}
		}
		return m.nextEvent(msg.ch)
	case PullDoneMsg:
		m.pulling = ""
		if msg.Err != nil {
			return common.Status(common.StatusMsg{Err: fmt.Errorf("pull %s: %w", msg.Ref, msg.Err)})
		}
		return tea.Batch(m.Load(), common.Status(common.Statusf("pulled %s", msg.Ref)))
	case tea.KeyPressMsg:
		if m.form != nil {
			res, cmd := m.form.Update(msg)
			switch res {
			case form.Cancelled:
				m.form = nil
			case form.Submitted:
				ref := m.form.Values()[0]
				m.form = nil
				return m.pull(ref)
			}
			return cmd
		}
		if m.confirm != "" {
			ref := m.confirm
			m.confirm = ""
			if msg.String() != "y" && msg.String() != "Y" {
				return common.Status(common.Statusf("delete image %s: cancelled", ref))
			}
			src := m.ctx.Src
			return func() tea.Msg { return removedMsg{Ref: ref, Err: src.RemoveImage(ref)} }
		}
		if c, ok := common.MoveCursor(msg, k, m.cursor, len(m.imgs)); ok {
			m.cursor = c
			return nil
		}
		switch {
		case key.Matches(msg, k.Pull):
			if m.pulling != "" {
				return common.Status(common.StatusMsg{Err: fmt.Errorf("a pull of %s is running", m.pulling)})
			}
			m.form = form.New("Pull an image", form.Field{Label: "Reference", Placeholder: "e.g. debian:bookworm"})
		case key.Matches(msg, k.RemoveImage):
			img, ok := m.selected()
			if !ok {
				return nil
			}
			if used := UsedBy(img, m.machines); len(used) > 0 {
				return common.Status(common.StatusMsg{Err: fmt.Errorf("image %s is used by %s: delete those machines first", img.Ref(), strings.Join(used, ", "))})
			}
			m.confirm = img.Ref()
		}
	default:
		if m.form != nil {
			_, cmd := m.form.Update(msg)
			return cmd
		}
	}
	return nil
}

func (m *Model) pull(ref string) tea.Cmd {
	if ref == "" {
		return common.Status(common.StatusMsg{Err: fmt.Errorf("pull: no reference given")})
	}
	m.pulling, m.layers, m.order = ref, map[string][2]int64{}, nil
	ch := make(chan progress.Event, 64)
	errc := make(chan error, 1)
	m.pullErr = errc
	src := m.ctx.Src
	go func() {
		err := src.Pull(context.Background(), ref, func(e progress.Event) { ch <- e })
		errc <- err
		close(ch)
	}()
	return tea.Batch(common.Status(common.Statusf("pulling %s…", ref)), m.nextEvent(ch))
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
	w, h := m.ctx.Width, m.ctx.Height
	var bottom []string
	switch {
	case m.form != nil:
		bottom = strings.Split(m.form.View(th, w), "\n")
	case m.confirm != "":
		bottom = []string{th.Error.Render("Delete image " + m.confirm + "? [y/N]")}
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
	for _, img := range m.imgs {
		t.Rows = append(t.Rows, Cells(th, img, UsedBy(img, m.machines), now))
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
