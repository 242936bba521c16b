package cli_test

// The CLI suite: every case runs the real machinetop binary, built by the
// Makefile as a user builds it, and checks its exit status and messages.
// Nothing here boots a machine (machines are made with --no-boot, which
// only runs mkfs.ext4); tests/ covers what needs a running one.

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
)

var (
	binDir     string // machinetop and machinetop-guest, as `make build` makes them
	repoRoot   string
	withMake   bool // built by the Makefile (else plain go build: no version ldflags)
	rootfsTar  string
	dockerfile = "FROM tiny:1\nLABEL built=from-stdin\nENV A=b\n"
)

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cli test setup:", err)
		code = 1
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	tmp, err := os.MkdirTemp("", "machinetop-cli-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)
	binDir = filepath.Join(tmp, "bin")
	if repoRoot, err = filepath.Abs(".."); err != nil {
		return 0, err
	}
	if _, err := exec.LookPath("make"); err == nil {
		withMake = true
		cmd := exec.Command("make", "-s", "build", "BIN="+binDir)
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("make build: %v\n%s", err, out)
		}
	} else {
		for _, b := range [][]string{{"machinetop", "."}, {"machinetop-guest", "./guest/cmd/machinetop-guest"}} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, b[0]), b[1])
			cmd.Dir = repoRoot
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				return 0, fmt.Errorf("go build %s: %v\n%s", b[1], err, out)
			}
		}
	}
	rootfsTar = filepath.Join(tmp, "rootfs.tar")
	if err := writeRootfs(rootfsTar); err != nil {
		return 0, err
	}
	return m.Run(), nil
}

// writeRootfs writes a tiny root filesystem tarball (enough to import and
// create machines from; nothing here boots it).
func writeRootfs(path string) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Typeflag: tar.TypeDir, Name: "etc/", Mode: 0o755},
		{Typeflag: tar.TypeReg, Name: "etc/hostname", Mode: 0o644, Size: 5},
	} {
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Size > 0 {
			tw.Write([]byte("tiny\n"))
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// env is one user's machinetop: its own data, home and runtime
// directories.
type env struct {
	t    *testing.T
	data string
	home string
	run  string
	bin  string // the machinetop binary; binDir's unless changed
	more []string
}

func newEnv(t *testing.T) *env {
	return &env{t: t, data: t.TempDir(), home: t.TempDir(), run: t.TempDir(), bin: filepath.Join(binDir, "machinetop")}
}

func (e *env) environ() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "MACHINETOP_") || strings.HasPrefix(k, "XDG_") || k == "HOME" {
			continue
		}
		out = append(out, kv)
	}
	return append(append(out, "MACHINETOP_HOME="+e.data, "HOME="+e.home, "XDG_RUNTIME_DIR="+e.run), e.more...)
}

// mt runs machinetop with stdin and returns stdout, stderr and the exit
// status.
func (e *env) mt(stdin io.Reader, args ...string) (string, string, int) {
	e.t.Helper()
	cmd := exec.Command(e.bin, args...)
	cmd.Env = e.environ()
	cmd.Dir = e.home
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			e.t.Fatalf("machinetop %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return out.String(), errb.String(), code
}

// must runs machinetop, fails the test unless it exits 0, and returns
// stdout.
func (e *env) must(args ...string) string {
	e.t.Helper()
	out, errs, code := e.mt(nil, args...)
	if code != 0 {
		e.t.Fatalf("machinetop %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// fails runs machinetop, expects exit status 125 (machinetop's own
// failure) with nothing on stdout and an error that contains every want,
// and returns stderr.
func (e *env) fails(args []string, want ...string) string {
	e.t.Helper()
	return e.failsIn(nil, args, want...)
}

func (e *env) failsIn(stdin io.Reader, args []string, want ...string) string {
	e.t.Helper()
	out, errs, code := e.mt(stdin, args...)
	if code != 125 {
		e.t.Errorf("machinetop %s: exit %d, want 125\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	if out != "" {
		e.t.Errorf("machinetop %s: printed %q on stdout for an error", strings.Join(args, " "), out)
	}
	if !strings.HasPrefix(errs, "machinetop: ") {
		e.t.Errorf("machinetop %s: stderr %q does not start with \"machinetop: \"", strings.Join(args, " "), errs)
	}
	for _, w := range want {
		if !strings.Contains(errs, w) {
			e.t.Errorf("machinetop %s: stderr %q lacks %q", strings.Join(args, " "), errs, w)
		}
	}
	return errs
}

// withMachines imports the tiny image as tiny:1 and creates the given
// machines from it without booting them.
func (e *env) withMachines(names ...string) {
	e.t.Helper()
	e.must("image", "import", rootfsTar, "tiny:1")
	for _, n := range names {
		e.must("machine", "create", "tiny:1", "-n", n, "--no-boot", "--disk", "2G", "--memory", "256M", "--cpus", "1")
	}
}

// lines splits output into its lines.
func lines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// Item 1: an unknown subcommand, argument or flag exits 125 with a
// suggestion and a pointer to the help, never help text and status 0.
func TestUnknownCommandsAndArguments(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"machine", "frobnicate"}, []string{`unknown command "frobnicate" for "machinetop machine"`, "See 'machinetop machine --help'."}},
		{[]string{"machine", "exec"}, []string{`unknown command "exec" for "machinetop machine"`}},
		{[]string{"machine", "cp"}, []string{"missing SRC DST", "usage: machinetop machine cp [flags] SRC DST"}},
		{[]string{"image", "inspect"}, []string{`unknown command "inspect" for "machinetop image"`}},
		{[]string{"machine", "lst"}, []string{`did you mean "list"`}},
		{[]string{"imag", "ls"}, []string{`unknown command "imag" for "machinetop"`, `did you mean "image"?`}},
		{[]string{"start"}, []string{`did you mean "machine start"?`}},
		{[]string{"completion", "bogus"}, []string{`unknown command "bogus" for "machinetop completion"`}},
		{[]string{"help", "nosuch"}, []string{`unknown command "nosuch" for "machinetop"`}},
		{[]string{"help", "machine", "frob"}, []string{`unknown command "frob" for "machinetop machine"`}},
		{[]string{"machine", "create"}, []string{"missing IMAGE", "usage: machinetop machine create IMAGE", "See 'machinetop machine create --help'."}},
		{[]string{"image", "import", "x.tar"}, []string{"missing NAME[:TAG]"}},
		{[]string{"machine", "start", "a", "b"}, []string{`unexpected argument "b"`}},
		{[]string{"machine", "ls", "extra"}, []string{`unexpected argument "extra"`}},
		{[]string{"version", "x"}, []string{`unexpected argument "x"`}},
		{[]string{"machine", "create", "tiny:1", "--cpu", "2"}, []string{"unknown flag --cpu; did you mean --cpus?"}},
		{[]string{"--bogus"}, []string{"unknown flag --bogus"}},
		{[]string{"machine", "create", "tiny:1", "--cpus", "x"}, []string{`--cpus "x": want a whole number`}},
		{[]string{"machine", "stop", "-t", "5"}, []string{`--timeout "5": want a duration`}},
		{[]string{"machine", "create", "tiny:1", "--memory"}, []string{"--memory needs a value"}},
		{[]string{"machine", "logs", "-n", "-1"}, []string{"--tail -1: give a number of lines"}},
		{[]string{"machine", "set", "cpus"}, []string{`"cpus" is not KEY=VALUE`}},
	} {
		errs := e.fails(tc.args, tc.want...)
		if n := strings.Count(errs, "machinetop: "); n != 1 {
			t.Errorf("machinetop %s: %d error lines, want 1: %q", strings.Join(tc.args, " "), n, errs)
		}
	}
	// Asking for a group's help is not an error.
	for _, args := range [][]string{{"machine"}, {"image"}, {"help", "machine"}, {"machine", "--help"}, {"completion"}} {
		if out := e.must(args...); !strings.Contains(out, "Available Commands:") {
			t.Errorf("machinetop %s: no help on stdout: %q", strings.Join(args, " "), out)
		}
	}
}

// hostVersion is what the Makefile sets: `git describe` or the Go
// pseudo-version of HEAD, and HEAD's commit.
func hostVersion(t *testing.T) (version, commit string) {
	t.Helper()
	git := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "TZ=UTC")
		out, err := cmd.Output()
		if err != nil {
			t.Skipf("git %s: %v (not a git checkout?)", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out))
	}
	commit = git("rev-parse", "HEAD")
	if v, err := exec.Command("git", "-C", repoRoot, "describe", "--tags", "--match", "v[0-9]*").Output(); err == nil {
		return strings.TrimSpace(string(v)), commit
	}
	return "v0.0.0-" + git("show", "-s", "--date=format-local:%Y%m%d%H%M%S", "--format=%cd", "HEAD") + "-" + commit[:12], commit
}

// Item 1: --version and version print the version, commit and Go
// version the Makefile set; the guest agent binary reports the same.
func TestVersion(t *testing.T) {
	if !withMake {
		t.Skip("no make: the binaries were built without the Makefile's version flags")
	}
	e := newEnv(t)
	ver, commit := hostVersion(t)
	out := e.must("--version")
	re := regexp.MustCompile(`^machinetop version (\S+) \(commit ([0-9a-f]{12})(-dirty)?, (go\S+), (\S+)\)\n$`)
	m := re.FindStringSubmatch(out)
	if m == nil || m[1] != ver || m[2] != commit[:12] || m[4] != runtime.Version() || m[5] != runtime.GOOS+"/"+runtime.GOARCH {
		t.Fatalf("--version printed %q; want version %s, commit %s, %s", out, ver, commit[:12], runtime.Version())
	}
	// The guest binary built beside it says the same.
	g, err := exec.Command(filepath.Join(binDir, "machinetop-guest-linux-"+runtime.GOARCH), "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Replace(out, "machinetop version", "machinetop-guest version", 1); string(g) != want {
		t.Errorf("guest --version printed %q, want %q", g, want)
	}

	text := e.must("version")
	for _, w := range []string{"machinetop   " + ver + "\n", "commit       " + commit, "go           " + runtime.Version(), "guest agent  " + ver} {
		if !strings.Contains(text, w) {
			t.Errorf("version output lacks %q:\n%s", w, text)
		}
	}
	if strings.Contains(text, "differs") {
		t.Errorf("version says the guest differs:\n%s", text)
	}
	var rep struct {
		Host      struct{ Version, Commit, Go string } `json:"machinetop"`
		Guest     struct{ Version, Commit string }
		GuestPath string
	}
	if err := json.Unmarshal([]byte(e.must("version", "--format", "json")), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Host.Version != ver || rep.Guest.Version != ver || rep.Guest.Commit != rep.Host.Commit ||
		rep.GuestPath != filepath.Join(binDir, "machinetop-guest-linux-"+runtime.GOARCH) {
		t.Errorf("version --format json: %+v", rep)
	}
	if got := e.must("version", "-f", "{{.Guest.Version}}"); got != ver+"\n" {
		t.Errorf("version -f '{{.Guest.Version}}' = %q", got)
	}
}

// Item 2 without a VM: rm of stopped machines needs no confirmation,
// reports each bad name on its own line, and takes -f/--force.
func TestRemove(t *testing.T) {
	e := newEnv(t)
	e.withMachines("dev", "web", "db")
	errs := e.fails([]string{"machine", "rm", "nosuch"}, `no such machine "nosuch"`, "machinetop machine ls")
	if len(lines(errs)) != 1 {
		t.Errorf("rm nosuch printed %d lines, want 1: %q", len(lines(errs)), errs)
	}
	out, errs, code := e.mt(nil, "machine", "rm", "Bad", "dev", "nosuch")
	if code != 125 || out != "dev\n" {
		t.Errorf("rm Bad dev nosuch: exit %d, stdout %q", code, out)
	}
	// The warning comes as dev goes; the errors, one line each, at the end.
	if l := lines(errs); len(l) != 3 || !strings.HasPrefix(l[0], "warning: dev was the default machine") ||
		!strings.HasPrefix(l[1], "machinetop: invalid machine name \"Bad\"") || !strings.HasPrefix(l[2], "machinetop: no such machine \"nosuch\"") {
		t.Errorf("rm Bad dev nosuch: stderr %q", errs)
	}
	if out := e.must("machine", "rm", "-f", "web"); out != "web\n" {
		t.Errorf("rm -f web printed %q", out)
	}
	if out := e.must("machine", "rm", "--force", "db"); out != "db\n" {
		t.Errorf("rm --force db printed %q", out)
	}
	if out := e.must("machine", "ls", "-q"); out != "" {
		t.Errorf("machines left: %q", out)
	}
}

// completions runs `machinetop __complete ARGS…` and returns the choices
// (without descriptions) and the directive.
func (e *env) completions(args ...string) ([]string, string) {
	e.t.Helper()
	out := e.must(append([]string{"__complete"}, args...)...)
	l := lines(out)
	if len(l) == 0 || !strings.HasPrefix(l[len(l)-1], ":") {
		e.t.Fatalf("__complete %q printed no directive: %q", args, out)
	}
	var choices []string
	for _, c := range l[:len(l)-1] {
		v, _, _ := strings.Cut(c, "\t")
		choices = append(choices, v)
	}
	return choices, l[len(l)-1]
}

// Item 4: machine names, image references and flag values complete; no
// file names where a name goes.
func TestCompletion(t *testing.T) {
	e := newEnv(t)
	e.withMachines("dev", "web")
	const noFiles = ":4"
	for _, tc := range []struct {
		args      []string
		want      []string
		directive string
	}{
		{[]string{"machine", "start", ""}, []string{"dev", "web"}, noFiles},
		{[]string{"m", "stop", "w"}, []string{"web"}, noFiles},
		{[]string{"machine", "start", "dev", ""}, nil, noFiles},
		{[]string{"machine", "rm", "dev", ""}, []string{"web"}, noFiles},
		{[]string{"machine", "inspect", ""}, []string{"dev", "web"}, noFiles},
		{[]string{"machine", "logs", ""}, []string{"dev", "web"}, noFiles},
		{[]string{"machine", "set-default", ""}, []string{"dev", "web"}, noFiles},
		{[]string{"machine", "run", ""}, []string{"dev", "web"}, noFiles},
		{[]string{"machine", "run", "-n", ""}, []string{"dev", "web"}, noFiles},
		{[]string{"machine", "set", "-n", "dev", "c"}, []string{"cpus="}, ":6"},
		{[]string{"machine", "set", "dev", "home-mount="}, []string{"home-mount=rw", "home-mount=ro", "home-mount=none"}, noFiles},
		{[]string{"machine", "set", "dev", "file-events="}, []string{"file-events=on", "file-events=off"}, noFiles},
		{[]string{"machine", "create", ""}, []string{"tiny:1"}, noFiles},
		{[]string{"image", "rm", ""}, []string{"tiny:1"}, noFiles},
		{[]string{"machine", "create", "tiny:1", "--home-mount", ""}, []string{"rw", "ro", "none"}, noFiles},
		{[]string{"machine", "create", "tiny:1", "--name", ""}, nil, noFiles},
		{[]string{"machine", "ls", "--format", ""}, []string{"table", "json", "{{.Name}}"}, noFiles},
		{[]string{"machine", "inspect", "-f", ""}, []string{"json", "{{.Name}}"}, noFiles},
		{[]string{"image", "pull", "--progress", ""}, []string{"auto", "plain", "tty"}, noFiles},
		{[]string{"build", "--progress", "p"}, []string{"plain"}, noFiles},
		{[]string{"image", "pull", "--platform", "linux/arm6"}, []string{"linux/arm64"}, noFiles},
		{[]string{"machine", ""}, nil, noFiles},
		{[]string{"machine", "create", "tiny:1", "--mount", ""}, nil, ":16"}, // directories
		{[]string{"build", ""}, nil, ":16"},
		{[]string{"image", "import", ""}, nil, ":0"}, // a file
	} {
		got, dir := e.completions(tc.args...)
		if tc.args[len(tc.args)-1] == "" && len(tc.args) == 2 && tc.args[0] == "machine" {
			// `machine <TAB>` lists the subcommands.
			if !slices.Contains(got, "create") || !slices.Contains(got, "run") {
				t.Errorf("__complete machine '': %q", got)
			}
		} else if !slices.Equal(got, tc.want) {
			t.Errorf("__complete %q = %q, want %q", tc.args, got, tc.want)
		}
		if dir != tc.directive {
			t.Errorf("__complete %q: directive %s, want %s", tc.args, dir, tc.directive)
		}
	}
	for _, sh := range []string{"bash", "zsh", "fish", "powershell"} {
		if out := e.must("completion", sh); !strings.Contains(out, "__complete") {
			t.Errorf("completion %s prints no script calling __complete", sh)
		}
	}
}

// Item 5: --format takes table, json, a Go template or `table TEMPLATE`
// on every list; inspect takes -f TEMPLATE.
func TestFormat(t *testing.T) {
	e := newEnv(t)
	// A misspelt field fails even when there is nothing to list.
	e.fails([]string{"machine", "ls", "--format", "{{.Nmae}}"}, `can't evaluate field Nmae`, "the fields are ID, Name, Image")
	if out := e.must("machine", "ls", "--format", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("ls --format json of no machines = %q", out)
	}
	e.withMachines("dev", "web")

	if out := e.must("machine", "ls", "--format", "{{.Name}}"); out != "dev\nweb\n" {
		t.Errorf("machine ls --format '{{.Name}}' = %q", out)
	}
	if out := e.must("machine", "ls", "--format", "{{.Name}} {{.State}} {{.CPUs}} {{.MemoryBytes | size}}"); out != "dev stopped 1 256M\nweb stopped 1 256M\n" {
		t.Errorf("ls with a template = %q", out)
	}
	if out := e.must("m", "ls", "--format", `table {{.Name}}\t{{.Image}}`); out != "NAME  IMAGE\ndev   tiny:1\nweb   tiny:1\n" {
		t.Errorf("ls --format 'table …' = %q", out)
	}
	if out := e.must("machine", "ls", "--format", "table"); !strings.HasPrefix(out, "NAME ") || len(lines(out)) != 3 {
		t.Errorf("ls --format table = %q", out)
	}
	var ms []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(e.must("machine", "ls", "--format", "json")), &ms); err != nil || len(ms) != 2 || ms[0].Name != "dev" || ms[0].Status != "stopped" {
		t.Errorf("ls --format json: %+v, %v", ms, err)
	}
	if out := e.must("machine", "ls", "--format", "{{json .Name}}"); out != "\"dev\"\n\"web\"\n" {
		t.Errorf("{{json .Name}} = %q", out)
	}
	e.fails([]string{"machine", "ls", "--format", "yaml"}, `--format "yaml": use table, json or a Go template`)
	e.fails([]string{"machine", "ls", "--format", "{{.Name"}, `--format "{{.Name"`, "unclosed action")
	e.fails([]string{"image", "ls", "--format", "{{.Name}}"}, `can't evaluate field Name`, "Repository, Tag, ID")

	if out := e.must("image", "ls", "--format", "{{.Repository}}:{{.Tag}}"); out != "tiny:1\n" {
		t.Errorf("image ls --format '{{.Repository}}:{{.Tag}}' = %q", out)
	}
	id := strings.TrimSpace(e.must("image", "ls", "-q"))
	if out := e.must("image", "ls", "--format", "{{.ID}} {{.Digest}}"); !strings.HasPrefix(out, id+" sha256:"+id) {
		t.Errorf("image ls ID/Digest = %q (ls -q %q)", out, id)
	}
	if out := e.must("image", "ls", "--format", `table {{.Repository}}\t{{.Tag}}`); out != "REPOSITORY  TAG\ntiny        1\n" {
		t.Errorf("image ls table template = %q", out)
	}

	if out := e.must("machine", "inspect", "-f", "{{.Name}} {{.State}} {{.Image}}", "web"); out != "web stopped tiny:1\n" {
		t.Errorf("inspect -f = %q", out)
	}
	var one struct{ Name string }
	if err := json.Unmarshal([]byte(e.must("machine", "inspect", "--format", "json")), &one); err != nil || one.Name != "dev" {
		t.Errorf("inspect --format json of the default machine: %+v, %v", one, err)
	}
	e.fails([]string{"machine", "inspect", "-f", "table", "dev"}, `--format "table": use json or a Go template`)
	e.fails([]string{"machine", "inspect", "-f", "{{.Bogus}}", "dev"}, "can't evaluate field Bogus")
}

// Item 6: flags after the command are the command's; NAME -- CMD and -n
// NAME both name the machine; set takes NAME first as well.
func TestNamePlacement(t *testing.T) {
	e := newEnv(t)
	// No machine at all: `run ls -la` gets as far as choosing the machine
	// (-la is not taken for machinetop's flags).
	e.fails([]string{"machine", "run", "ls", "-la"}, "no machine named and there is no default machine", "machinetop machine run --help")
	e.fails([]string{"m", "run", "nosuch", "--", "ls", "-la"}, `no such machine "nosuch"`)
	e.fails([]string{"m", "run", "-n", "nosuch", "ls", "-la"}, `no such machine "nosuch"`)
	e.fails([]string{"m", "run", "-n", "a", "b", "--", "ls"}, "the machine is given twice (-n a and b --)")
	e.fails([]string{"m", "run", "--root", "-u", "x", "--", "id"}, "--root and -u both choose the user")
	e.fails([]string{"m", "run", "-w", "rel", "--", "ls"}, `-w "rel": give an absolute path`)
	e.fails([]string{"machine", "start"}, "no machine named", "machinetop machine start --help")

	e.withMachines("dev", "web")
	e.must("machine", "set", "web", "cpus=1", "home-mount=ro")
	e.must("machine", "set", "-n", "web", "memory=512M")
	e.must("machine", "set", "home-mount=none") // the default machine, dev
	if out := e.must("machine", "inspect", "-f", "{{.HomeMount}} {{.MemoryBytes | size}}", "web"); out != "ro 512M\n" {
		t.Errorf("after set web …: %q", out)
	}
	if out := e.must("machine", "inspect", "-f", "{{.HomeMount}}", "dev"); out != "none\n" {
		t.Errorf("after set (default machine): %q", out)
	}
	e.fails([]string{"machine", "set", "-n", "dev", "web", "cpus=1"}, "the machine is given twice")
	e.fails([]string{"machine", "set", "web"}, "missing KEY=VALUE after web")
	e.fails([]string{"machine", "set", "web", "cpus"}, `"cpus" is not KEY=VALUE`)
}

// Item 11: the error-message flaws the issue lists.
func TestErrorMessages(t *testing.T) {
	e := newEnv(t)
	e.withMachines("dev")

	// --cpus 0 reads the same in create and set.
	create := e.fails([]string{"machine", "create", "tiny:1", "-n", "x", "--no-boot", "--cpus", "0"}, "cpus 0 is out of range")
	set := e.fails([]string{"machine", "set", "dev", "cpus=0"}, "cpus 0 is out of range")
	if create != set {
		t.Errorf("--cpus 0 in create: %q; cpus=0 in set: %q", create, set)
	}
	// A kernel that does not exist is refused by set as by create, and
	// nothing is stored.
	e.fails([]string{"machine", "set", "dev", "kernel=does/not/exist"}, "kernel=does/not/exist", "does not exist", "kernel .deb or vmlinuz")
	e.fails([]string{"machine", "create", "tiny:1", "--no-boot", "--kernel", "does/not/exist"}, "kernel does/not/exist", "does not exist")
	e.fails([]string{"machine", "set", "dev", "kernel=" + e.home}, "is not a file")
	if out := e.must("machine", "inspect", "-f", "[{{.Kernel}}]", "dev"); out != "[]\n" {
		t.Errorf("kernel after refused sets: %q", out)
	}
	kernel := filepath.Join(e.home, "vmlinuz")
	os.WriteFile(kernel, []byte("not really a kernel"), 0o644)
	e.must("machine", "set", "dev", "kernel=vmlinuz") // relative to the working directory ($HOME here)
	if out := e.must("machine", "inspect", "-f", "{{.Kernel}}", "dev"); out != kernel+"\n" {
		t.Errorf("set kernel=vmlinuz stored %q, want %q", out, kernel)
	}

	// image import - reads stdin; errors name "-", not a scratch file.
	f, _ := os.Open(rootfsTar)
	defer f.Close()
	out, errs, code := e.mt(f, "image", "import", "-", "fromstdin:1")
	if code != 0 || !strings.HasPrefix(out, "sha256:") {
		t.Fatalf("image import - : exit %d, %q %q", code, out, errs)
	}
	if out := e.must("image", "ls", "--format", "{{.Repository}}:{{.Tag}}"); !strings.Contains(out, "fromstdin:1\n") {
		t.Errorf("imported from stdin, but image ls shows %q", out)
	}
	errs = e.failsIn(strings.NewReader(""), []string{"image", "import", "-", "empty:1"}, "import -: ")
	if strings.Contains(errs, "stdin-") || strings.Contains(errs, e.data) {
		t.Errorf("import - error names the scratch copy: %q", errs)
	}
	// build -f - reads the Dockerfile from stdin.
	ctxDir := t.TempDir()
	out, errs, code = e.mt(strings.NewReader(dockerfile), "build", "-t", "built:1", "-f", "-", "--progress", "plain", ctxDir)
	if code != 0 || !strings.HasPrefix(out, "sha256:") {
		t.Fatalf("build -f - : exit %d, %q %q", code, out, errs)
	}
	if out := e.must("image", "ls", "--format", "{{.Repository}}:{{.Tag}}"); !strings.Contains(out, "built:1\n") {
		t.Errorf("built from stdin, but image ls shows %q", out)
	}
	// The failure is said once, by the command's error line.
	if _, errs, code := e.mt(strings.NewReader("FROM tiny:1\nBOGUS x\n"), "build", "-f", "-", "--progress", "plain", ctxDir); code != 125 ||
		!strings.Contains(errs, "machinetop: Dockerfile:2: unknown instruction: BOGUS") || strings.Count(errs, "unknown instruction") != 1 {
		t.Errorf("build -f - of a bad Dockerfile: exit %d, %q", code, errs)
	}
	// Scratch copies of stdin are gone.
	if left, _ := filepath.Glob(filepath.Join(e.data, "tmp", "stdin-*")); len(left) > 0 {
		t.Errorf("stdin copies left behind: %v", left)
	}
	// A terminal on stdin is refused rather than waited on.
	for _, args := range [][]string{{"image", "import", "-", "tty:1"}, {"build", "-f", "-", ctxDir}} {
		cmd := exec.Command(e.bin, args...)
		cmd.Env = e.environ()
		tty, err := pty.Start(cmd)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		done := make(chan struct{})
		go func() { io.Copy(&buf, tty); close(done) }()
		err = cmd.Wait()
		<-done
		tty.Close()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 125 || !strings.Contains(buf.String(), "stdin, which is a terminal") {
			t.Errorf("machinetop %s on a terminal: %v, %q", strings.Join(args, " "), err, buf.String())
		}
	}
	// logs of a machine that never booted says so.
	if _, errs, code := e.mt(nil, "machine", "logs", "dev"); code != 0 || !strings.Contains(errs, "has not booted yet") {
		t.Errorf("logs of a never-booted machine: exit %d, %q", code, errs)
	}
}

// Item 12: `go install MODULE@VERSION` gives a machinetop that reports
// that version and builds its guest agent of the same version at the
// first boot. The module is served from a file proxy made of this
// checkout; everything else comes from the module cache.
func TestGoInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: go install of the module takes a while")
	}
	const ver = "v0.0.1-clitest"
	tmp := t.TempDir()
	proxy := filepath.Join(tmp, "proxy")
	if err := writeModuleProxy(proxy, repoRoot, "github.com/machinetop/machinetop", ver); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("go", "env", "GOMODCACHE", "GOCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	dirs := lines(string(out))
	gobin := filepath.Join(tmp, "bin")
	// The build cache is the user's, also for the guest build machinetop
	// runs with the test's $HOME.
	goenv := []string{"GOCACHE=" + dirs[1],
		"GOPROXY=file://" + proxy + ",file://" + filepath.Join(dirs[0], "cache", "download"),
		"GOMODCACHE=" + filepath.Join(tmp, "mod"), "GOPATH=" + filepath.Join(tmp, "gopath"),
		"GOFLAGS=-modcacherw", "GOSUMDB=off", "GOTOOLCHAIN=local", "GOWORK=off", "GOPRIVATE=", "GONOPROXY=",
	}
	start := time.Now()
	cmd := exec.Command("go", "install", "-trimpath", "github.com/machinetop/machinetop@"+ver)
	cmd.Env = append(os.Environ(), append(goenv, "GOBIN="+gobin)...)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install: %v\n%s", err, out)
	}
	t.Logf("go install of the host binary: %v", time.Since(start).Round(time.Millisecond))

	e := newEnv(t)
	e.bin = filepath.Join(gobin, "machinetop")
	e.more = goenv
	if out := e.must("--version"); out != fmt.Sprintf("machinetop version %s (%s, %s/%s)\n", ver, runtime.Version(), runtime.GOOS, runtime.GOARCH) {
		t.Errorf("--version of the installed binary: %q", out)
	}
	if out := e.must("version"); !strings.Contains(out, "not built yet: the first boot builds it from github.com/machinetop/machinetop/guest/cmd/machinetop-guest@"+ver) {
		t.Errorf("version before the first boot:\n%s", out)
	}
	// A boot builds the guest first. The machine's kernel is a broken
	// .deb, so the boot then fails quickly, without a VM.
	broken := filepath.Join(tmp, "broken.deb")
	os.WriteFile(broken, []byte("not an ar archive"), 0o644)
	e.must("image", "import", rootfsTar, "tiny:1")
	e.must("machine", "create", "tiny:1", "-n", "g", "--no-boot", "--kernel", broken)
	start = time.Now()
	_, errs, code := e.mt(nil, "machine", "start", "g")
	t.Logf("guest build and failed boot: %v\n%s", time.Since(start).Round(time.Millisecond), errs)
	if code != 125 || !strings.Contains(errs, "building the guest agent: go install github.com/machinetop/machinetop/guest/cmd/machinetop-guest@"+ver) {
		t.Errorf("start with a broken kernel: exit %d\n%s", code, errs)
	}
	built := filepath.Join(e.data, "guest", ver, "machinetop-guest-linux-"+runtime.GOARCH)
	out, err = exec.Command(built, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "machinetop-guest version "+ver+" (") {
		t.Errorf("built guest %s --version: %q, %v", built, out, err)
	}
	if out := e.must("version"); !strings.Contains(out, "guest agent  "+ver) || !strings.Contains(out, built) || strings.Contains(out, "differs") {
		t.Errorf("version after the guest was built:\n%s", out)
	}
}
