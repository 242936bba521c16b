package version

import (
	"os"
	"runtime"
	"runtime/debug"
	"testing"
)

func TestLdflagsValues(t *testing.T) {
	for flags, want := range map[string][2]string{
		"-s -X " + "github.com/machinetop/machinetop/internal/version.version=v1.2.3 -X github.com/machinetop/machinetop/internal/version.commit=abc-dirty": {"v1.2.3", "abc-dirty"},
		"-X=github.com/machinetop/machinetop/internal/version.version=v0.0.0-1-abc":                                                                         {"v0.0.0-1-abc", ""},
		"-s -w":                      {"", ""},
		"-X other/pkg.version=v9 -X": {"", ""},
	} {
		if v, c := ldflagsValues(flags); v != want[0] || c != want[1] {
			t.Errorf("ldflagsValues(%q) = %q, %q; want %q, %q", flags, v, c, want[0], want[1])
		}
	}
}

func TestFill(t *testing.T) {
	// `go install MODULE@COMMIT`: the commit comes from the pseudo-version.
	i := Info{}
	i.fill(&debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261129134009-33c5bf8c8771"}})
	if i.Version != "v0.0.0-20261129134009-33c5bf8c8771" || i.Commit != "33c5bf8c8771" {
		t.Errorf("pseudo-version: %+v", i)
	}
	// A checkout build: vcs settings, and a dirty tree marked.
	i = Info{}
	i.fill(&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}}})
	if i.Version != "" || i.Commit != "0123456789abcdef0123-dirty" || i.ShortCommit() != "0123456789ab-dirty" {
		t.Errorf("vcs settings: %+v, short %q", i, i.ShortCommit())
	}
	// -X values win over the build information.
	i = Info{Version: "v1.0.0", Commit: "feed"}
	i.fill(&debug.BuildInfo{Main: debug.Module{Version: "v2.0.0"}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "beef"}}})
	if i.Version != "v1.0.0" || i.Commit != "feed" {
		t.Errorf("-X values replaced: %+v", i)
	}
}

func TestString(t *testing.T) {
	i := Info{Version: "v1.2.3", Commit: "0123456789abcdef", Go: "go1.26.8", Platform: "linux/amd64"}
	if s := i.String(); s != "v1.2.3 (commit 0123456789ab, go1.26.8, linux/amd64)" {
		t.Errorf("String() = %q", s)
	}
	if s := (Info{Version: Unknown, Go: "go1.26.8"}).String(); s != "devel (go1.26.8)" {
		t.Errorf("String() without a commit = %q", s)
	}
	if !i.Same(Info{Version: "v1.2.3", Commit: "0123456789abcdef", Platform: "darwin/arm64"}) || i.Same(Info{Version: "v1.2.3"}) {
		t.Error("Same compares version and commit only")
	}
}

// FromFile reads another Go binary's build: here the test binary itself.
func TestFromFile(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	i, err := FromFile(exe)
	if err != nil || i.Go != runtime.Version() || i.Version == "" {
		t.Errorf("FromFile(test binary) = %+v, %v", i, err)
	}
	if _, err := FromFile("version.go"); err == nil {
		t.Error("FromFile of a Go source file succeeded")
	}
}
