package vm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseMount(t *testing.T) {
	home := t.TempDir()
	proj := filepath.Join(home, "proj")
	os.Mkdir(proj, 0o755)
	os.WriteFile(filepath.Join(home, "file"), nil, 0o644)
	good := map[string]Mount{
		"~/proj":              {Host: proj, Guest: proj},
		proj + ":ro":          {Host: proj, Guest: proj, ReadOnly: true},
		proj + ":/src":        {Host: proj, Guest: "/src"},
		"~/proj:/srv/src:ro":  {Host: proj, Guest: "/srv/src", ReadOnly: true},
		"~/proj:/srv/src:rw":  {Host: proj, Guest: "/srv/src"},
		"~/proj::ro":          {Host: proj, Guest: proj, ReadOnly: true},
		"~/proj:/usr/local/x": {Host: proj, Guest: "/usr/local/x"},
	}
	for spec, want := range good {
		got, err := ParseMount(spec, home)
		if err != nil || got != want {
			t.Errorf("ParseMount(%q) = %+v, %v; want %+v", spec, got, err, want)
		}
	}
	bad := map[string]string{
		"/nonexistent/dir":    "does not exist",
		"~/file":              "not a directory",
		"~/proj:rel":          "relative",
		"~/proj:/proc/x":      "/proc",
		"~/proj:/":            "root filesystem",
		"~/proj:/etc":         "/etc",
		"~/proj:/dev":         "/dev",
		"~/proj:/a/../b":      "not clean",
		"a:b:c:ro":            "HOST[:GUEST]",
		"":                    "HOST[:GUEST]",
		"~/proj:/.machinetop": "/.machinetop",
	}
	for spec, want := range bad {
		if _, err := ParseMount(spec, home); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseMount(%q): error %v, want one mentioning %q", spec, err, want)
		}
	}
}

func TestSharesAndGuestDir(t *testing.T) {
	home := t.TempDir()
	c := &Config{User: UserSetup{HomeDir: home}, HomeMount: HomeMountRO,
		Mounts: []Mount{{Host: home + "/proj", Guest: "/src"}}}
	sh := c.Shares()
	if len(sh) != 2 || sh[0].Guest != home || !sh[0].ReadOnly || sh[1].Guest != "/src" {
		t.Fatalf("Shares: %+v", sh)
	}
	if err := checkShares(c); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]string{
		home:                  home,
		home + "/a/b":         home + "/a/b",
		home + "/proj/x":      "/src/x",
		home + "/proj":        "/src",
		"/elsewhere":          "",
		home + "-other/thing": "",
	} {
		got, ok := GuestDir(sh, dir)
		if got != want || ok != (want != "") {
			t.Errorf("GuestDir(%q) = %q, %v; want %q", dir, got, ok, want)
		}
	}
	c.HomeMount = HomeMountNone
	if got := c.Shares(); len(got) != 1 {
		t.Fatalf("home-mount none: %+v", got)
	}
	c.Mounts = append(c.Mounts, Mount{Host: home, Guest: "/src"})
	if err := checkShares(c); err == nil || !strings.Contains(err.Error(), "/src") {
		t.Fatalf("two shares on /src: %v", err)
	}
}
