package supervisor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/machinetop/machinetop/vm"
	"github.com/machinetop/machinetop/vm/driver"
)

// named is a backend known only by its name, as checkShare's messages
// use it.
type named struct{ driver.Backend }

func (named) Name() string { return "vz" }

func TestCheckShare(t *testing.T) {
	root := t.TempDir()
	home := filepath.Join(root, "home")
	data := filepath.Join(home, ".local", "share", "machinetop")
	proj := filepath.Join(home, "proj")
	for _, d := range []string{data, proj, filepath.Join(root, "elsewhere")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	s := &supervisor{cfg: &vm.Config{Name: "m"}, be: named{}, hidden: []string{data}}
	check := func(host string, isHome, canHide bool) error {
		s.feat = driver.Features{HideState: canHide}
		return s.checkShare(vm.Mount{Host: host, Guest: host}, isHome)
	}
	if err := check(home, true, true); err != nil {
		t.Errorf("home containing the data directory on a backend that hides it: %v", err)
	}
	if err := check(home, true, false); err == nil || !strings.Contains(err.Error(), "cannot hide") {
		t.Errorf("home containing the data directory on a backend that cannot hide it: %v", err)
	}
	if err := check(proj, false, false); err != nil {
		t.Errorf("a project directory: %v", err)
	}
	os.Mkdir(filepath.Join(data, "machines"), 0o700)
	for _, in := range []string{data, filepath.Join(data, "machines")} {
		if err := check(in, false, true); err == nil || !strings.Contains(err.Error(), "inside machinetop's own") {
			t.Errorf("share %s: %v, want a refusal", in, err)
		}
	}
	// A --mount swapped for a link (by a machine sharing home) is
	// refused; the home directory may lie behind a link.
	os.Remove(proj)
	os.Symlink(filepath.Join(root, "elsewhere"), proj)
	if err := check(proj, false, true); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("a mount replaced by a link: %v", err)
	}
	link := filepath.Join(root, "home-link")
	os.Symlink(home, link)
	if err := check(link, true, true); err != nil {
		t.Errorf("a home directory behind a link: %v", err)
	}
	if err := check(filepath.Join(root, "gone"), false, true); err == nil || !strings.Contains(err.Error(), "gone") {
		t.Errorf("a missing directory: %v", err)
	}
}
