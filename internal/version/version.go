// Package version says which build of machinetop is running: the module
// version, the VCS commit and the Go toolchain. The Makefile sets version
// and commit at link time:
//
//	-ldflags "-X github.com/machinetop/machinetop/internal/version.version=v1.2.3
//	          -X github.com/machinetop/machinetop/internal/version.commit=<hex>[-dirty]"
//
// A binary built without them (`go install MODULE@VERSION`, a plain `go
// build`) takes them from the build information the Go toolchain embeds
// (runtime/debug.ReadBuildInfo: the main module's version and the vcs.*
// settings). The host binary and the guest agent both report this, so a
// guest agent from another build shows.
package version

import (
	"debug/buildinfo"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"golang.org/x/mod/module"
)

// Set with -ldflags -X (see the package doc); empty means "not set".
var (
	version string
	commit  string
)

// Unknown is the Version of a build that carries no version: a `go build`
// in a source tree without the Makefile's -ldflags.
const Unknown = "devel"

// Info describes one build.
type Info struct {
	// Version is the module version ("v1.2.3", a pseudo-version such as
	// "v0.0.0-20261201120000-0123456789ab", or `git describe` output), or
	// Unknown.
	Version string `json:"version"`
	// Commit is the VCS revision (hex, as long as it is known; "-dirty"
	// appended for a tree with uncommitted changes), or "" when unknown.
	Commit string `json:"commit,omitempty"`
	// Go is the toolchain that built the binary, e.g. "go1.26.8".
	Go string `json:"go"`
	// Platform is GOOS/GOARCH of the binary, e.g. "linux/amd64".
	Platform string `json:"platform"`
}

// Get returns this binary's build information.
func Get() Info {
	i := Info{Version: version, Commit: commit, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		i.fill(bi)
	}
	if i.Version == "" {
		i.Version = Unknown
	}
	return i
}

// FromFile reads the build information of another Go binary at path (such
// as the guest agent, which may be built for another OS and cannot always
// be run here): the -X values of the Makefile's -ldflags when present, else
// the embedded module version and vcs settings. It returns an error when
// path is not a Go binary.
func FromFile(path string) (Info, error) {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return Info{}, err
	}
	i := Info{Go: bi.GoVersion}
	var goos, goarch string
	for _, s := range bi.Settings {
		switch s.Key {
		case "-ldflags":
			i.Version, i.Commit = ldflagsValues(s.Value)
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		}
	}
	if goos != "" && goarch != "" {
		i.Platform = goos + "/" + goarch
	}
	i.fill(bi)
	if i.Version == "" {
		i.Version = Unknown
	}
	return i, nil
}

// fill sets what the -X flags left empty from bi.
func (i *Info) fill(bi *debug.BuildInfo) {
	if i.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		i.Version = bi.Main.Version
	}
	if i.Commit != "" {
		return
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	switch {
	case rev != "":
		i.Commit = rev
		if modified == "true" {
			i.Commit += "-dirty"
		}
	case module.IsPseudoVersion(i.Version):
		// `go install MODULE@COMMIT` records no vcs settings, but the
		// pseudo-version ends in the commit's 12-digit prefix.
		i.Commit, _ = module.PseudoVersionRev(i.Version)
	}
}

// ldflagsValues picks this package's -X values out of a -ldflags string as
// the Go toolchain records it in the build information.
func ldflagsValues(flags string) (ver, rev string) {
	const pkg = "github.com/machinetop/machinetop/internal/version."
	fields := strings.Fields(flags)
	for n, f := range fields {
		var def string
		switch {
		case f == "-X" && n+1 < len(fields):
			def = fields[n+1]
		case strings.HasPrefix(f, "-X="):
			def = f[len("-X="):]
		default:
			continue
		}
		name, val, ok := strings.Cut(strings.TrimPrefix(def, pkg), "=")
		if !ok || !strings.HasPrefix(def, pkg) {
			continue
		}
		switch name {
		case "version":
			ver = val
		case "commit":
			rev = val
		}
	}
	return ver, rev
}

// ShortCommit is Commit cut to 12 hex digits (keeping "-dirty").
func (i Info) ShortCommit() string {
	rev, dirty := strings.CutSuffix(i.Commit, "-dirty")
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

// String renders the build on one line: "v1.2.3 (commit 0123456789ab,
// go1.26.8, linux/amd64)"; the commit is left out when unknown.
func (i Info) String() string {
	var parts []string
	if c := i.ShortCommit(); c != "" {
		parts = append(parts, "commit "+c)
	}
	for _, p := range []string{i.Go, i.Platform} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return i.Version
	}
	return fmt.Sprintf("%s (%s)", i.Version, strings.Join(parts, ", "))
}

// Same reports whether i and o are the same build of the source (version
// and commit), whatever the platform or toolchain.
func (i Info) Same(o Info) bool { return i.Version == o.Version && i.Commit == o.Commit }
