// Package keys is the dashboard's keymap: every key binding, grouped by the
// view it works in. The help overlay and the README's key table are both
// generated from it, so they cannot drift apart.
package keys

import (
	"strings"

	"charm.land/bubbles/v2/key"
)

// View names a group of bindings.
type View string

// The groups of bindings, one per view plus the global ones.
const (
	Global   View = "global"
	Machines View = "machines"
	Detail   View = "detail"
	Shell    View = "shell"
	Log      View = "log"
	Images   View = "images"
	Builds   View = "builds"
)

// Map holds every binding. Fields are grouped by view; see Sections.
type Map struct {
	// Global
	Quit, Help, Back, ViewMachines, ViewImages, ViewBuilds key.Binding
	// Lists (machines, images, builds)
	Up, Down, Top, Bottom, Filter, Open key.Binding
	// Machines: sorting (shift+letter) and actions
	SortName, SortImage, SortCPUs, SortMem, SortDisk, SortState, SortUptime key.Binding
	Start, Stop, Restart, Delete, Create, SetDefault                        key.Binding
	// Detail
	NextTab, PrevTab, FocusShell, Attach key.Binding
	// Shell (focused): the one chord that is never sent to the machine
	LeaveShell key.Binding
	// Log views (console log, build log)
	Follow, Search, NextMatch, PrevMatch, PageUp, PageDown key.Binding
	// Images
	Pull, RemoveImage key.Binding
	// Builds
	NewBuild key.Binding
}

func b(help string, keys ...string) key.Binding {
	return key.NewBinding(key.WithKeys(keys...), key.WithHelp(strings.Join(keys, "/"), help))
}

func bh(shown, help string, keys ...string) key.Binding {
	return key.NewBinding(key.WithKeys(keys...), key.WithHelp(shown, help))
}

// Default returns the dashboard's keymap.
func Default() *Map {
	return &Map{
		Quit:         b("quit (machines keep running)", "q", "ctrl+c"),
		Help:         b("show or hide the keys of this view", "?"),
		Back:         b("back, cancel", "esc"),
		ViewMachines: b("machines view", "1"),
		ViewImages:   b("images view", "2"),
		ViewBuilds:   b("builds view", "3"),

		Up:     bh("k/↑", "move up", "k", "up"),
		Down:   bh("j/↓", "move down", "j", "down"),
		Top:    bh("g/home", "first row", "g", "home"),
		Bottom: bh("G/end", "last row", "G", "end"),
		Filter: b("filter rows", "/"),
		Open:   b("open the machine's detail view", "enter"),

		SortName:   b("sort by name (again: reverse)", "N"),
		SortImage:  b("sort by image", "I"),
		SortCPUs:   b("sort by CPUs", "C"),
		SortMem:    b("sort by memory used", "M"),
		SortDisk:   b("sort by disk used", "D"),
		SortState:  b("sort by state", "T"),
		SortUptime: b("sort by uptime", "U"),
		Start:      b("start the machine", "s"),
		Stop:       b("stop the machine", "x"),
		Restart:    b("restart the machine", "r"),
		Delete:     b("delete the machine (asks y/N)", "d"),
		Create:     b("create a machine (form)", "c"),
		SetDefault: b("make it the default machine", "S"),

		NextTab:    bh("tab", "next tab (Shell, Console log, Info)", "tab"),
		PrevTab:    bh("shift+tab", "previous tab", "shift+tab"),
		FocusShell: bh("enter/i", "type into the shell (opens it if needed)", "enter", "i"),
		Attach:     b("full-screen attach to the shell (ctrl+] returns)", "F"),

		LeaveShell: bh("ctrl+]", "leave the shell without closing it", "ctrl+]"),

		Follow:    b("follow new lines on/off", "f"),
		Search:    b("search", "/"),
		NextMatch: b("next match", "n"),
		PrevMatch: bh("N", "previous match", "N"),
		PageUp:    bh("pgup/ctrl+u", "page up", "pgup", "ctrl+u"),
		PageDown:  bh("pgdn/ctrl+d", "page down", "pgdown", "ctrl+d"),

		Pull:        b("pull an image (prompt)", "p"),
		RemoveImage: b("delete the image (refused while a machine uses it)", "d"),

		NewBuild: b("start a build (form)", "b"),
	}
}

// Section is a titled list of bindings.
type Section struct {
	View     View
	Title    string
	Bindings []key.Binding
}

// Sections returns the bindings of v followed by the global ones, as the
// help overlay shows them. An unknown view returns only the global section.
func (m *Map) Sections(v View) []Section {
	list := []key.Binding{m.Up, m.Down, m.Top, m.Bottom}
	logs := []key.Binding{m.Up, m.Down, m.PageUp, m.PageDown, m.Top, m.Bottom, m.Follow, m.Search, m.NextMatch, m.PrevMatch}
	var out []Section
	switch v {
	case Machines:
		out = append(out,
			Section{Machines, "Machines", append(list, m.Filter, m.Open)},
			Section{Machines, "Machine actions", []key.Binding{m.Start, m.Stop, m.Restart, m.Delete, m.Create, m.SetDefault}},
			Section{Machines, "Sort", []key.Binding{m.SortName, m.SortImage, m.SortCPUs, m.SortMem, m.SortDisk, m.SortState, m.SortUptime}})
	case Detail:
		out = append(out, Section{Detail, "Machine detail", []key.Binding{m.NextTab, m.PrevTab, m.FocusShell, m.Attach, m.Start, m.Stop, m.Restart}},
			Section{Log, "Console log tab", logs})
	case Shell:
		out = append(out, Section{Shell, "Shell (every other key goes to the machine)", []key.Binding{m.LeaveShell}})
	case Images:
		out = append(out, Section{Images, "Images", append(list, m.Pull, m.RemoveImage)})
	case Builds:
		out = append(out, Section{Builds, "Builds", []key.Binding{m.Up, m.Down, m.NewBuild}},
			Section{Log, "Build log", logs[2:]})
	}
	if v != Shell {
		out = append(out, Section{Global, "Everywhere", []key.Binding{m.ViewMachines, m.ViewImages, m.ViewBuilds, m.Back, m.Help, m.Quit}})
	}
	return out
}

// AllViews lists the views in the order the README's key table shows them.
var AllViews = []View{Machines, Detail, Shell, Images, Builds}

// Markdown renders every view's bindings as the README's Markdown key
// table: one row per binding, sections in AllViews order, the global
// section last, no binding listed twice within a section title.
func (m *Map) Markdown() string {
	var sb strings.Builder
	sb.WriteString("| Where | Key | Action |\n|---|---|---|\n")
	seen := map[string]bool{}
	var global Section
	for _, v := range AllViews {
		for _, s := range m.Sections(v) {
			if s.View == Global {
				global = s
				continue
			}
			if seen[s.Title] {
				continue
			}
			seen[s.Title] = true
			for _, kb := range s.Bindings {
				row(&sb, s.Title, kb)
			}
		}
	}
	for _, kb := range global.Bindings {
		row(&sb, global.Title, kb)
	}
	return sb.String()
}

func row(sb *strings.Builder, where string, kb key.Binding) {
	h := kb.Help()
	k := strings.ReplaceAll(h.Key, "|", `\|`)
	sb.WriteString("| " + where + " | `" + k + "` | " + h.Desc + " |\n")
}
