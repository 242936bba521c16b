package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadGood(t *testing.T) {
	p := write(t, `# defaults
[create]
cpus = 2
memory = "4G"
disk = "32G"
home-mount = "ro"
mounts = ["~/src:/src", "/data:/data:ro"]
kernel = "~/vmlinuz"

[dashboard]
theme = "light"
refresh = "500ms"
`)
	f, err := LoadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	c, d := f.Create, f.Dashboard
	if !f.Exists || c.CPUs != 2 || c.Memory.Bytes != 4<<30 || c.Disk.Bytes != 32<<30 || c.HomeMount != "ro" ||
		len(c.Mounts) != 2 || c.Mounts[1] != "/data:/data:ro" || c.Kernel != "~/vmlinuz" {
		t.Errorf("create = %+v", c)
	}
	if d.Theme != ThemeLight || d.Refresh.Duration != 500*time.Millisecond {
		t.Errorf("dashboard = %+v", d)
	}
}

func TestLoadMissingFile(t *testing.T) {
	f, err := LoadFile(filepath.Join(t.TempDir(), "none.toml"))
	if err != nil || f.Exists || f.Create.Memory != nil || f.Dashboard.Theme != "" {
		t.Fatalf("LoadFile(missing) = %+v, %v", f, err)
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		line       int
		key, msg   string
	}{
		{"unknown key", "[create]\ncpus = 2\nmemroy = \"4G\"\n", 3, "create.memroy", "unknown key (known: cpus, memory"},
		{"unknown table", "[dashbord]\ntheme = \"dark\"\n", 1, "dashbord", "unknown key"},
		{"bad size", "[create]\nmemory = \"lots\"\n", 2, "create.memory", `"lots" is not a size`},
		{"bad theme", "\n[dashboard]\ntheme = \"blue\"\n", 3, "dashboard.theme", "use light, dark or auto"},
		{"bad home mount", "[create]\nhome-mount = \"yes\"\n", 2, "create.home-mount", "use rw, ro or none"},
		{"short refresh", "[dashboard]\nrefresh = \"1ms\"\n", 2, "dashboard.refresh", "too short"},
		{"wrong kind", "[create]\ncpus = \"two\"\n", 2, "create.cpus", "want a whole number"},
		{"bad cpus", "[create]\n\ncpus = -1\n", 3, "create.cpus", "at least 1"},
		{"syntax", "[create\n", 1, "", "expected ']'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := write(t, tc.text)
			_, err := LoadFile(p)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v (%T), want *Error", err, err)
			}
			if ce.Path != p || ce.Line != tc.line || ce.Key != tc.key || !strings.Contains(ce.Msg, tc.msg) {
				t.Errorf("err = %+v, want line %d key %q msg containing %q", ce, tc.line, tc.key, tc.msg)
			}
			if !strings.HasPrefix(err.Error(), p+":") {
				t.Errorf("message %q does not start with the file", err)
			}
		})
	}
}

func TestPath(t *testing.T) {
	t.Setenv("MACHINETOP_CONFIG", "")
	t.Setenv("XDG_CONFIG_HOME", "/xdg")
	if p, _ := Path(); p != "/xdg/machinetop/config.toml" {
		t.Errorf("with XDG_CONFIG_HOME: %s", p)
	}
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("HOME", "/home/u")
	if p, _ := Path(); p != "/home/u/.config/machinetop/config.toml" {
		t.Errorf("default: %s", p)
	}
	t.Setenv("MACHINETOP_CONFIG", "/etc/mt.toml")
	if p, _ := Path(); p != "/etc/mt.toml" {
		t.Errorf("MACHINETOP_CONFIG: %s", p)
	}
}
