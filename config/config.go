// Package config reads machinetop's user configuration: a TOML file
// (https://toml.io, v1.0.0) with defaults for `machine create` and the
// dashboard's settings. Flags override it; the file overrides built-in
// defaults. The file is optional; a file that exists is read strictly:
// unknown keys and bad values are errors naming the file, line and key.
//
// Example:
//
//	[create]
//	cpus = 2
//	memory = "4G"
//	disk = "32G"
//	home-mount = "ro"      # rw, ro or none
//	mounts = ["~/src:/src"]
//	kernel = "~/kernels/vmlinuz"
//
//	[dashboard]
//	theme = "auto"         # light, dark or auto
//	refresh = "2s"         # machine list refresh interval
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	toml "github.com/pelletier/go-toml/v2"

	"github.com/machinetop/machinetop/vm"
	"github.com/machinetop/machinetop/vm/layout"
)

// Path returns the configuration file's path (layout.ConfigFile:
// $MACHINETOP_CONFIG, else the XDG config directory, on macOS too).
func Path() (string, error) { return layout.ConfigFile() }

// File is the parsed configuration. A zero or nil field was not set.
type File struct {
	// Path is the file read; Exists is false when it does not exist (all
	// fields are then unset).
	Path   string `toml:"-"`
	Exists bool   `toml:"-"`

	Create    Create    `toml:"create"`
	Dashboard Dashboard `toml:"dashboard"`
}

// Create holds defaults for `machine create`.
type Create struct {
	// CPUs is the number of virtual CPUs (0: unset); at least 1.
	CPUs int `toml:"cpus"`
	// Memory and Disk are sizes such as "4G" (vm.ParseMemory,
	// vm.ParseSize); nil when unset.
	Memory *Size `toml:"memory"`
	Disk   *Size `toml:"disk"`
	// HomeMount is rw, ro or none ("" when unset).
	HomeMount HomeMount `toml:"home-mount"`
	// Mounts are HOST[:GUEST][:ro] values as --mount takes them; nil
	// when unset. Host directories are checked when a machine is created.
	Mounts []string `toml:"mounts"`
	// Kernel is a kernel .deb or vmlinuz file ("" when unset); a leading
	// "~/" is the home directory.
	Kernel string `toml:"kernel"`
}

// Dashboard holds the dashboard's settings.
type Dashboard struct {
	// Theme is light, dark or auto ("" when unset; auto follows the
	// terminal's background).
	Theme Theme `toml:"theme"`
	// Refresh is the machine list's refresh interval; nil when unset.
	Refresh *Duration `toml:"refresh"`
}

// Size is a byte count written as a size string ("4G", "512M").
type Size struct {
	Bytes uint64
	Text  string
}

// UnmarshalText parses a size with vm.ParseSize.
func (s *Size) UnmarshalText(b []byte) error {
	n, err := vm.ParseSize(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a size: use a number with a unit, e.g. 4G or 512M", b)
	}
	*s = Size{Bytes: n, Text: string(b)}
	return nil
}

// HomeMount is a home directory sharing mode: rw, ro or none.
type HomeMount string

// check accepts "" (unset), rw, ro and none.
func (h HomeMount) check() error {
	switch h {
	case "", vm.HomeMountRW, vm.HomeMountRO, vm.HomeMountNone:
		return nil
	}
	return fmt.Errorf("%q: use rw, ro or none", string(h))
}

// Theme is a dashboard palette choice.
type Theme string

// Theme values.
const (
	ThemeAuto  Theme = "auto"
	ThemeLight Theme = "light"
	ThemeDark  Theme = "dark"
)

// check accepts "" (unset), light, dark and auto.
func (t Theme) check() error {
	switch t {
	case "", ThemeAuto, ThemeLight, ThemeDark:
		return nil
	}
	return fmt.Errorf("%q: use light, dark or auto", string(t))
}

// MinRefresh is the shortest dashboard refresh interval accepted.
const MinRefresh = 100 * time.Millisecond

// Duration is a time.Duration written as Go writes one ("2s", "1m30s").
type Duration struct{ time.Duration }

// UnmarshalText parses a duration of at least MinRefresh.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration: use e.g. 2s or 500ms", b)
	}
	if v < MinRefresh {
		return fmt.Errorf("%q is too short: use at least %v", b, MinRefresh)
	}
	d.Duration = v
	return nil
}

// Error is a problem in the configuration file: Path, and Line and Key
// where known (Line 0: the file as a whole). Its message names all three
// and what to fix.
type Error struct {
	Path string
	Line int
	Key  string
	Msg  string
}

// Error returns "PATH:LINE: KEY: MSG".
func (e *Error) Error() string {
	s := e.Path
	if e.Line > 0 {
		s += fmt.Sprintf(":%d", e.Line)
	}
	if e.Key != "" {
		s += ": " + e.Key
	}
	return s + ": " + e.Msg
}

// Load reads the file at Path(). See LoadFile.
func Load() (*File, error) {
	p, err := Path()
	if err != nil {
		return nil, err
	}
	return LoadFile(p)
}

// LoadFile reads the configuration file at path. A missing file is no
// error: it returns an empty File with Exists false. Errors: *Error for
// a file that is not valid TOML, has a key machinetop does not know, or a
// value of the wrong kind; an I/O error reading it.
func LoadFile(path string) (*File, error) {
	f := &File{Path: path}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading config file: %w", err)
	}
	f.Exists = true
	d := toml.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(f); err != nil {
		return nil, decodeError(path, err)
	}
	// Values go-toml decodes as plain numbers and strings are checked
	// here; the line is that of the key's assignment.
	// (The host's CPU count is checked by create, so one file serves
	// hosts of several sizes.)
	var cpus error
	if f.Create.CPUs < 0 {
		cpus = fmt.Errorf("%d: use a whole number of at least 1", f.Create.CPUs)
	}
	for _, c := range []struct {
		table, key string
		err        error
	}{
		{"create", "cpus", cpus},
		{"create", "home-mount", f.Create.HomeMount.check()},
		{"dashboard", "theme", f.Dashboard.Theme.check()},
	} {
		if c.err != nil {
			return nil, &Error{Path: path, Line: keyLine(b, c.key), Key: c.table + "." + c.key, Msg: c.err.Error()}
		}
	}
	return f, nil
}

// decodeError turns go-toml's errors into an *Error with the line and
// the dotted key.
func decodeError(path string, err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) && len(strict.Errors) > 0 {
		e := strict.Errors[0]
		line, _ := e.Position()
		return &Error{Path: path, Line: line, Key: strings.Join(e.Key(), "."),
			Msg: "unknown key (known: " + knownKeys(e.Key()) + ")"}
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		if strings.HasPrefix(msg, "cannot decode TOML") {
			// go-toml names Go types; say what TOML value was wanted.
			msg = "wrong kind of value: " + wantKind(de.Key())
		}
		return &Error{Path: path, Line: line, Key: strings.Join(de.Key(), "."), Msg: msg}
	}
	return &Error{Path: path, Msg: err.Error()}
}

// keys lists each table's keys, for error messages.
var keys = map[string][]string{
	"":          {"create", "dashboard"},
	"create":    {"cpus", "memory", "disk", "home-mount", "mounts", "kernel"},
	"dashboard": {"theme", "refresh"},
}

func knownKeys(key []string) string {
	table := ""
	if len(key) > 1 {
		table = key[0]
	}
	if k, ok := keys[table]; ok {
		return strings.Join(k, ", ")
	}
	return strings.Join(keys[""], ", ")
}

// wantKind says what TOML value a key takes.
func wantKind(key []string) string {
	switch strings.Join(key, ".") {
	case "create.cpus":
		return "want a whole number, e.g. cpus = 2"
	case "create.mounts":
		return `want a list of strings, e.g. mounts = ["~/src:/src"]`
	case "create", "dashboard":
		return "want a table, e.g. [" + key[0] + "]"
	}
	return `want a string, e.g. ` + key[len(key)-1] + ` = "..."`
}

// keyLine finds the line (1-based) where key is assigned, 0 if none.
func keyLine(b []byte, key string) int {
	re := regexp.MustCompile(`^\s*"?` + regexp.QuoteMeta(key) + `"?\s*=`)
	for i, l := range strings.Split(string(b), "\n") {
		if re.MatchString(l) {
			return i + 1
		}
	}
	return 0
}
