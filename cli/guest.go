package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/gofrs/flock"
	"github.com/spf13/cobra"

	"github.com/machinetop/machinetop/vm/kit"
	"github.com/machinetop/machinetop/vm/layout"
)

// The guest binary (machinetop-guest, static linux/<arch>) goes into every
// machine's initramfs. `make` builds it next to machinetop, where
// kit.GuestBinary finds it. `go install MODULE@VERSION` builds only
// machinetop; such a binary knows its module and version from its build
// information, so the first boot builds the guest agent of that same
// version with the Go toolchain (`go install …/guest/cmd/machinetop-guest@VERSION`
// for GOOS=linux, CGO_ENABLED=0) into the data directory (layout.Data.GuestBuild) and points
// $MACHINETOP_GUEST at it.

// guestPackage is the guest binary's package path in the module.
const guestPackage = "/guest/cmd/machinetop-guest"

// installedModule returns the module path and version this binary was
// built from when `go install MODULE@VERSION` built it from the module
// proxy or cache. ok is false for a build in a source tree: its version is
// "(devel)", or (Go 1.24 and later) a pseudo-version made from the
// checkout, which carries vcs.* settings and may name a commit no proxy
// serves.
func installedModule() (path, version string, ok bool) {
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Path == "" || bi.Main.Version == "" || bi.Main.Version == "(devel)" {
		return "", "", false
	}
	for _, s := range bi.Settings {
		if strings.HasPrefix(s.Key, "vcs") {
			return "", "", false
		}
	}
	return bi.Main.Path, bi.Main.Version, true
}

// guestLookup is what findGuest found.
type guestLookup struct {
	// Path is the guest binary a boot would use, or "".
	Path string
	// Built is true when Path is one buildGuest made (kit.GuestBinary
	// finds it only through $MACHINETOP_GUEST).
	Built bool
	// Buildable is true when there is none yet but ensureGuest can
	// build one: this binary came from `go install MODULE@VERSION`.
	Buildable bool
}

// findGuest looks for the guest binary a boot would use: the one
// kit.GuestBinary finds ($MACHINETOP_GUEST, next to machinetop,
// ../lib/machinetop), else one buildGuest made for this binary's module
// version. The error is kit.GuestBinary's when neither exists and none
// can be built.
func findGuest(data layout.Data) (guestLookup, error) {
	path, err := kit.GuestBinary(runtime.GOARCH)
	if err == nil || os.Getenv(kit.GuestEnv) != "" {
		return guestLookup{Path: path}, err
	}
	_, ver, ok := installedModule()
	if !ok {
		return guestLookup{}, err
	}
	p := data.GuestBuild(ver, runtime.GOARCH)
	if fi, serr := os.Stat(p); serr == nil && fi.Mode().IsRegular() {
		return guestLookup{Path: p, Built: true}, nil
	}
	return guestLookup{Buildable: true}, nil
}

// ensureGuest makes sure the next boot has a guest binary: when findGuest
// finds none but can build one, it builds it (saying so on log). A built
// one is handed to this process and the supervisors it starts through
// $MACHINETOP_GUEST. A guest binary that is missing and cannot be built is
// left for the boot to report with kit.GuestBinary's list of places
// looked at: a running machine needs none.
func ensureGuest(ctx context.Context, data layout.Data, log io.Writer) error {
	g, err := findGuest(data)
	if err != nil {
		return nil
	}
	if g.Buildable {
		mod, ver, _ := installedModule()
		g.Path = data.GuestBuild(ver, runtime.GOARCH)
		if err := buildGuest(ctx, mod, ver, runtime.GOARCH, g.Path, log); err != nil {
			return err
		}
		g.Built = true
	}
	if g.Built {
		os.Setenv(kit.GuestEnv, g.Path)
	}
	return nil
}

// prepareBoot runs ensureGuest before a command that may boot a machine,
// so that building the guest agent shows on the user's terminal rather
// than only in the supervisor's log.
func prepareBoot(cmd *cobra.Command) error {
	data, err := layout.DataDir()
	if err != nil {
		return err
	}
	return ensureGuest(cmd.Context(), data, cmd.ErrOrStderr())
}

// buildGuest builds the guest binary of module mod at version ver for
// linux/arch with `go install`, and moves it to out. A lock makes
// concurrent boots build it once. It needs the Go toolchain on PATH and
// the module from the module proxy or cache, as `go install` did.
func buildGuest(ctx context.Context, mod, ver, arch, out string, log io.Writer) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("no guest binary, and no Go toolchain to build it with: install Go, or build it yourself: GOOS=linux GOARCH=%s CGO_ENABLED=0 go install %s%s@%s and set $%s to its path",
			arch, mod, guestPackage, ver, kit.GuestEnv)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	l := flock.New(filepath.Join(filepath.Dir(out), ".build.lock"))
	if err := l.Lock(); err != nil {
		return err
	}
	defer l.Unlock()
	if _, err := os.Stat(out); err == nil {
		return nil // another boot built it meanwhile
	}
	modcache, err := exec.CommandContext(ctx, goBin, "env", "GOMODCACHE").Output()
	if err != nil {
		return fmt.Errorf("go env GOMODCACHE: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), ".build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	pkg := mod + guestPackage + "@" + ver
	fmt.Fprintf(log, "building the guest agent: go install %s (once per version) …\n", pkg)
	c := exec.CommandContext(ctx, goBin, "install", "-trimpath", "-ldflags=-s", pkg)
	// GOPATH points the result at tmp/bin (tmp/bin/linux_ARCH when cross
	// compiling, where GOBIN is not allowed); the module cache stays the
	// user's.
	c.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off",
		"GOBIN=", "GOPATH="+tmp, "GOMODCACHE="+strings.TrimSpace(string(modcache)))
	c.Stdout, c.Stderr = log, log
	if err := c.Run(); err != nil {
		return fmt.Errorf("building the guest agent (go install %s): %w; or build it from a checkout with `make` and set $%s to bin/machinetop-guest-linux-%s", pkg, err, kit.GuestEnv, arch)
	}
	for _, p := range []string{filepath.Join(tmp, "bin", "machinetop-guest"), filepath.Join(tmp, "bin", "linux_"+arch, "machinetop-guest")} {
		if err := os.Rename(p, out); err == nil {
			fmt.Fprintf(log, "built %s\n", out)
			return nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return fmt.Errorf("go install %s left no machinetop-guest under %s", pkg, filepath.Join(tmp, "bin"))
}
