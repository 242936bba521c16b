// Package tests holds machinetop's end-to-end tests: they build the real
// binaries, make real images from Debian packages, boot real machines under
// QEMU and drive them through the CLI, once as root and once as an ordinary
// user that the test creates when it runs as root.
package tests

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/machinetop/machinetop/vm/layout"
)

// Environment shared with the ordinary-user pass (set by the root pass).
const (
	envShared = "MACHINETOP_E2E_SHARED" // directory with bin/ and images
	envChild  = "MACHINETOP_E2E_CHILD"  // set in the ordinary-user pass
)

var (
	shared  string // world-readable directory: bin/, busybox.tar, debian.tar
	binDir  string
	keepDir = flag.Bool("keep", false, "keep data directories for inspection")
)

func TestMain(m *testing.M) {
	flag.Parse()
	if err := setup(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func setup() error {
	if s := os.Getenv(envShared); s != "" {
		shared = s
		binDir = filepath.Join(shared, "bin")
		return nil
	}
	var err error
	shared, err = os.MkdirTemp("", "machinetop-e2e-")
	if err != nil {
		return err
	}
	if err := os.Chmod(shared, 0o755); err != nil {
		return err
	}
	binDir = filepath.Join(shared, "bin")
	root, err := filepath.Abs("..")
	if err != nil {
		return err
	}
	build := func(env []string, out string, pkg string) error {
		cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, out), pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), env...)
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
		}
		return nil
	}
	if err := build(nil, "machinetop", "."); err != nil {
		return err
	}
	// The guest binary for each guest architecture, named as `make build`
	// names them (the kit finds them next to machinetop).
	for _, arch := range []string{"amd64", "arm64"} {
		if err := build([]string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + arch},
			"machinetop-guest-linux-"+arch, "./guest/cmd/machinetop-guest"); err != nil {
			return err
		}
	}
	mk := func(kind string, fixtures bool) error {
		out := filepath.Join(shared, kind+".tar")
		args := []string{kind, out}
		if fixtures {
			args = append(args, "--fixtures")
		}
		if kind == "debian" {
			args = append(args, "--ssh")
		}
		cmd := exec.Command(filepath.Join(root, "tests", "mkimage.sh"), args...)
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("mkimage %s: %v\n%s", kind, err, b)
		}
		return os.Chmod(out, 0o644)
	}
	if err := mk("busybox", true); err != nil {
		return err
	}
	if os.Getuid() == 0 {
		start := time.Now()
		if err := mk("debian", true); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "e2e: debian image made in %v\n", time.Since(start).Round(time.Second))
	}
	return nil
}

// env is one user's machinetop installation: its own data directory, and
// the home directory machinetop sees ($HOME): the user's own as the
// ordinary user, a scratch one under /home as root (so that no test
// shares or writes root's real home). The data directory lies inside the
// home, where it is by default (~/.local/share/machinetop), so that every
// machine sharing the home shares the directory machinetop must hide.
type env struct {
	t    *testing.T
	data string
	home string
	dir  string // working directory of machinetop; "" for the test's
	// extra are KEY=VALUE entries that override machinetop's environment.
	extra []string
	// timeout bounds one machinetop command; 0 means 12 minutes.
	timeout time.Duration
}

func newEnv(t *testing.T) *env {
	e := &env{t: t, home: os.Getenv("HOME")}
	var err error
	scratchHome := os.Getuid() == 0 || e.home == ""
	if scratchHome {
		if e.home, err = os.MkdirTemp("/home", "mt-e2e-"); err != nil {
			t.Fatal(err)
		}
	}
	share := filepath.Join(e.home, ".local", "share")
	if err := os.MkdirAll(share, 0o700); err != nil {
		t.Fatal(err)
	}
	if e.data, err = os.MkdirTemp(share, "machinetop-e2e-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Stop whatever the test left running, then remove the data.
		out, _, _ := e.mt(nil, "machine", "ls", "-q")
		for _, n := range strings.Fields(out) {
			if t.Failed() {
				// Removing the machine removes its logs: keep their
				// ends in the test's output.
				e.logTail(n)
			}
			e.mt(nil, "machine", "rm", "-f", n)
		}
		if *keepDir || t.Failed() {
			t.Logf("data directory kept: %s", e.data)
			return
		}
		os.RemoveAll(e.data)
		if scratchHome {
			os.RemoveAll(e.home)
		}
	})
	return e
}

// logTail logs the last lines of machine name's supervisor and console
// logs.
func (e *env) logTail(name string) {
	dir := layout.Data{Root: e.data}.Machine(name)
	for _, f := range []string{dir.SupervisorLog(), dir.ConsoleLog()} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		e.t.Logf("%s of %s, last %d lines:\n%s", filepath.Base(f), name, len(lines), strings.Join(lines, "\n"))
	}
}

// mt runs the machinetop binary with stdin and returns stdout, stderr and
// the exit status.
func (e *env) mt(stdin io.Reader, args ...string) (string, string, int) {
	timeout := e.timeout
	if timeout == 0 {
		timeout = 12 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "machinetop"), args...)
	cmd.Env = e.environ()
	cmd.Dir = e.dir
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			code = -1
			errb.WriteString(err.Error())
		}
	}
	return out.String(), errb.String(), code
}

// environ is the environment machinetop runs with.
func (e *env) environ() []string {
	env := append(os.Environ(), "MACHINETOP_HOME="+e.data, "HOME="+e.home)
	// exec uses the last value of a key given twice.
	return append(env, e.extra...)
}

// must runs machinetop and fails the test unless it exits 0.
func (e *env) must(args ...string) string {
	e.t.Helper()
	out, errs, code := e.mt(nil, args...)
	if code != 0 {
		e.t.Fatalf("machinetop %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// fails runs machinetop, expects a non-zero exit and an error mentioning
// want, and returns stderr.
func (e *env) fails(want string, args ...string) string {
	e.t.Helper()
	out, errs, code := e.mt(nil, args...)
	if code == 0 {
		e.t.Fatalf("machinetop %s: succeeded, want an error\nstdout: %s", strings.Join(args, " "), out)
	}
	if !strings.Contains(strings.ToLower(errs), strings.ToLower(want)) {
		e.t.Fatalf("machinetop %s: error %q does not mention %q", strings.Join(args, " "), errs, want)
	}
	return errs
}

func hostArch() string { return runtime.GOARCH }
