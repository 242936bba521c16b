// Package keys is the dashboard's keymap: every key binding, grouped by the
// view it works in, each with a long description (the help overlay and the
// README's key table) and a short label (the footer). All three are
// generated from it, so they cannot drift apart.
package keys

import (
	"strings"

	"charm.land/bubbles/v2/key"
)

// View names a view of the dashboard and its group of bindings. It is the
// dashboard's one view identifier: the root model keys its views by it.
type View string

// The views, plus the groups of bindings that are not views of their own
// (Global everywhere, Shell while the detail view's shell is focused, Log
// in the console and build log panes).
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
	Start, Stop, Restart, Reclaim, Delete, Create, SetDefault               key.Binding
	// Detail
	NextTab, PrevTab, FocusShell, Attach key.Binding
	// Detail: the Ports tab
	OpenPort, CopyPort key.Binding
	// Shell (focused): the one chord that is never sent to the machine
	LeaveShell key.Binding
	// Log views (console log, build log)
	Follow, Search, NextMatch, PrevMatch, PageUp, PageDown key.Binding
	// Images
	Pull, RemoveImage key.Binding
	// Builds
	NewBuild key.Binding

	// short maps a binding's help to its footer label (see Short).
	short map[key.Help]key.Help
}

// Default returns the dashboard's keymap.
func Default() *Map {
	m := &Map{short: map[key.Help]key.Help{}}
	// bind makes a binding of keys whose help shows them joined by "/";
	// desc is its help text, short its footer label.
	bind := func(desc, short string, keys ...string) key.Binding {
		return m.bindShown(strings.Join(keys, "/"), desc, short, keys...)
	}
	shown := m.bindShown

	m.Quit = bind("quit (machines keep running)", "quit", "q", "ctrl+c")
	m.Help = bind("show or hide the keys of this view", "help", "?")
	m.Back = bind("back, cancel", "back", "esc")
	m.ViewMachines = bind("machines view", "machines", "1")
	m.ViewImages = bind("images view", "images", "2")
	m.ViewBuilds = bind("builds view", "builds", "3")

	m.Up = shown("k/↑", "move up", "up", "k", "up")
	m.Down = shown("j/↓", "move down", "down", "j", "down")
	m.Top = shown("g/home", "first row", "top", "g", "home")
	m.Bottom = shown("G/end", "last row", "bottom", "G", "end")
	m.Filter = bind("filter rows", "filter", "/")
	m.Open = bind("open the machine's detail view", "open", "enter")

	m.SortName = bind("sort by name (again: reverse)", "by name", "N")
	m.SortImage = bind("sort by image", "by image", "I")
	m.SortCPUs = bind("sort by CPUs", "by CPUs", "C")
	m.SortMem = bind("sort by memory used", "by memory", "M")
	m.SortDisk = bind("sort by disk used", "by disk", "D")
	m.SortState = bind("sort by state", "by state", "T")
	m.SortUptime = bind("sort by uptime", "by uptime", "U")
	m.Start = bind("start the machine", "start", "s")
	m.Stop = bind("stop the machine", "stop", "x")
	m.Restart = bind("restart the machine", "restart", "r")
	m.Reclaim = bind("return idle page cache to the host now", "reclaim", "R")
	m.Delete = bind("delete the machine (asks y/N)", "delete", "d")
	m.Create = bind("create a machine (form)", "create", "c")
	m.SetDefault = bind("make it the default machine", "default", "S")

	m.NextTab = shown("tab", "next tab (Shell, Console log, Ports, Info)", "next tab", "tab")
	m.PrevTab = shown("shift+tab", "previous tab", "previous tab", "shift+tab")
	m.FocusShell = shown("enter/i", "type into the shell (opens it if needed)", "shell", "enter", "i")
	m.Attach = bind("full-screen attach to the shell (ctrl+] returns)", "full screen", "F")
	m.OpenPort = bind("open http://127.0.0.1:PORT of the selected port in the browser", "open", "o")
	m.CopyPort = bind("copy http://127.0.0.1:PORT of the selected port (to the terminal's clipboard)", "copy URL", "y")

	m.LeaveShell = shown("ctrl+]", "leave the shell without closing it", "leave the shell (it keeps running)", "ctrl+]")

	m.Follow = bind("follow new lines on/off", "follow", "f")
	m.Search = bind("search", "search", "/")
	m.NextMatch = bind("next match", "next", "n")
	m.PrevMatch = shown("N", "previous match", "previous", "N")
	m.PageUp = shown("pgup/ctrl+u", "page up", "page up", "pgup", "ctrl+u")
	m.PageDown = shown("pgdn/ctrl+d", "page down", "page down", "pgdown", "ctrl+d")

	m.Pull = bind("pull an image (prompt)", "pull", "p")
	m.RemoveImage = bind("delete the image (refused while a machine uses it)", "delete", "d")

	m.NewBuild = bind("start a build (form)", "build", "b")
	return m
}

// bindShown makes a binding of keys whose help shows them as shown, with
// help text desc, and records short as its footer label (keyed by the
// first key).
func (m *Map) bindShown(shown, desc, short string, keys ...string) key.Binding {
	b := key.NewBinding(key.WithKeys(keys...), key.WithHelp(shown, desc))
	m.short[b.Help()] = key.Help{Key: keys[0], Desc: short}
	return b
}

// Short returns bs with their footer labels as help: the first key and a
// word or two ("s start"), where Help gives every key and a sentence
// ("s: start the machine"). A binding that is not from this map keeps its
// help.
func (m *Map) Short(bs ...key.Binding) []key.Binding {
	out := make([]key.Binding, len(bs))
	for i, b := range bs {
		if h, ok := m.short[b.Help()]; ok {
			b.SetHelp(h.Key, h.Desc)
		}
		out[i] = b
	}
	return out
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
			Section{Machines, "Machine actions", []key.Binding{m.Start, m.Stop, m.Restart, m.Reclaim, m.Delete, m.Create, m.SetDefault}},
			Section{Machines, "Sort", []key.Binding{m.SortName, m.SortImage, m.SortCPUs, m.SortMem, m.SortDisk, m.SortState, m.SortUptime}})
	case Detail:
		out = append(out, Section{Detail, "Machine detail", []key.Binding{m.NextTab, m.PrevTab, m.FocusShell, m.Attach, m.Start, m.Stop, m.Restart, m.Reclaim}},
			Section{Log, "Console log tab", logs},
			Section{Detail, "Ports tab", []key.Binding{m.Up, m.Down, m.OpenPort, m.CopyPort}})
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
