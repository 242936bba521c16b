//go:build linux

package hostns

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestMain lets the test binary serve as the helper, as machinetop's main
// does: Start re-executes /proc/self/exe.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == Command {
		os.Exit(Main(os.Args[2:]))
	}
	os.Exit(m.Run())
}

func TestPlanFor(t *testing.T) {
	root := t.TempDir()
	share := filepath.Join(root, "home")
	data := filepath.Join(share, ".local", "share", "machinetop")
	rt := filepath.Join(root, "run")
	for _, d := range []string{data, rt} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	p, err := PlanFor([]Share{{Path: share, ReadOnly: true}, {Path: filepath.Join(share, ".local")}}, []string{data, rt})
	if err != nil {
		t.Fatal(err)
	}
	want := Plan{
		Pin:      []string{filepath.Join(share, ".local"), filepath.Join(share, ".local", "share")},
		Hide:     []string{data},
		ReadOnly: []string{share},
	}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("PlanFor = %+v\nwant      %+v", p, want)
	}
	// A share elsewhere needs nothing.
	if p, err := PlanFor([]Share{{Path: rt + "-no"}}, []string{data}); err == nil || !p.Empty() {
		// rt-no does not exist: resolving it fails.
		t.Fatalf("PlanFor of a missing directory: %+v, %v", p, err)
	}
	other := filepath.Join(root, "other")
	os.Mkdir(other, 0o755)
	if p, err := PlanFor([]Share{{Path: other}}, []string{data, rt}); err != nil || !p.Empty() {
		t.Fatalf("PlanFor of an unrelated share: %+v, %v", p, err)
	}
	// Sharing machinetop's own directory, or one inside it, is refused.
	os.Mkdir(filepath.Join(data, "machines"), 0o700)
	for _, s := range []string{data, filepath.Join(data, "machines")} {
		if _, err := PlanFor([]Share{{Path: s}}, []string{data}); err == nil || !strings.Contains(err.Error(), "machinetop's own") {
			t.Fatalf("PlanFor(%s): %v, want a refusal", s, err)
		}
	}
	// A link to the data directory is seen through.
	link := filepath.Join(root, "link")
	os.Symlink(share, link)
	if p, err := PlanFor([]Share{{Path: link}}, []string{data}); err != nil || !reflect.DeepEqual(p.Hide, []string{data}) {
		t.Fatalf("PlanFor through a link: %+v, %v", p, err)
	}
}

// TestStartHides runs a shell under a plan, as the file server of a share
// would run, and checks what it can see and do.
func TestStartHides(t *testing.T) {
	root := t.TempDir()
	share := filepath.Join(root, "home")
	data := filepath.Join(share, ".local", "share", "machinetop")
	if err := os.MkdirAll(filepath.Join(data, "ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(data, "ssh", "id_ed25519")
	os.WriteFile(key, []byte("secret\n"), 0o600)
	os.WriteFile(filepath.Join(share, "visible"), []byte("shared\n"), 0o644)

	p, err := PlanFor([]Share{{Path: share}}, []string{data})
	if err != nil {
		t.Fatal(err)
	}
	script := `
		cat "$S/visible"
		echo "listing:$(ls -A "$D")"
		cat "$D/ssh/id_ed25519" 2>/dev/null && echo key-read
		touch "$D/planted" 2>/dev/null && echo planted
		mv "$S/.local" "$S/moved" 2>/dev/null && echo moved
		mv "$S/.local/share" "$S/.local/moved" 2>/dev/null && echo moved-share
		echo made-here > "$S/new"
	`
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Env = append(os.Environ(), "S="+share, "D="+data)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := Start(cmd, p); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the shell failed: %v\n%s", err, out.String())
	}
	if want := "shared\nlisting:\n"; out.String() != want {
		t.Fatalf("inside the namespace:\n%s\nwant:\n%s", out.String(), want)
	}
	if b, err := os.ReadFile(filepath.Join(share, "new")); err != nil || string(b) != "made-here\n" {
		t.Fatalf("a write to the share did not reach the host: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(data, "planted")); err == nil {
		t.Fatal("a file appeared in the hidden directory")
	}
	if b, _ := os.ReadFile(key); string(b) != "secret\n" {
		t.Fatalf("the key changed: %q", b)
	}
	// The caller's own view is untouched.
	if _, err := os.Stat(key); err != nil {
		t.Fatalf("the key is gone for the caller: %v", err)
	}
}

func TestStartReadOnly(t *testing.T) {
	share := t.TempDir()
	sub := filepath.Join(share, "sub")
	os.Mkdir(sub, 0o755)
	cmd := exec.Command("/bin/sh", "-c", `cat "$S/f"; { echo x > "$S/g"; } 2>/dev/null && echo wrote; { echo x > "$S/sub/g"; } 2>/dev/null && echo wrote-sub; true`)
	os.WriteFile(filepath.Join(share, "f"), []byte("ro\n"), 0o644)
	cmd.Env = append(os.Environ(), "S="+share)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	p, err := PlanFor([]Share{{Path: share, ReadOnly: true}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := Start(cmd, p); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if out.String() != "ro\n" {
		t.Fatalf("read-only share: %q, want only the read", out.String())
	}
}

func TestStartReportsHelperErrors(t *testing.T) {
	cmd := exec.Command("/bin/true")
	err := Start(cmd, Plan{Hide: []string{"/nonexistent/machinetop-test"}})
	if err == nil || !strings.Contains(err.Error(), "covering /nonexistent/machinetop-test") {
		t.Fatalf("Start with an impossible mount: %v", err)
	}
	cmd = exec.Command("/nonexistent/program")
	err = Start(cmd, Plan{Hide: []string{t.TempDir()}})
	if err == nil || !strings.Contains(err.Error(), "executing /nonexistent/program") {
		t.Fatalf("Start of a missing program: %v", err)
	}
}

// TestStartDropsCapabilities: an ordinary user's program runs without the
// capability the helper mounted with, and cannot gain one.
func TestStartDropsCapabilities(t *testing.T) {
	cmd := exec.Command("/bin/sh", "-c", `grep -E '^(CapEff|CapPrm|CapAmb|NoNewPrivs)' /proc/self/status`)
	var out strings.Builder
	cmd.Stdout = &out
	if err := Start(cmd, Plan{Hide: []string{t.TempDir()}}); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	s := out.String()
	if !strings.Contains(s, "NoNewPrivs:\t1") {
		t.Fatalf("no_new_privs not set:\n%s", s)
	}
	if os.Geteuid() == 0 {
		return // root's file server keeps root's capabilities
	}
	for _, f := range []string{"CapEff", "CapPrm", "CapAmb"} {
		if !strings.Contains(s, f+":\t0000000000000000") {
			t.Fatalf("the program kept capabilities:\n%s", s)
		}
	}
}
