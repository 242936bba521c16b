package tests

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCopyAndStats boots a busybox machine and copies a tree with a 50 MiB
// file into it and back with `machine cp`, then reads `machine stats`.
func TestCopyAndStats(t *testing.T) {
	e := newEnv(t)
	e.must("image", "import", filepath.Join(shared, "busybox.tar"), "busybox:test")
	e.must("machine", "create", "busybox:test", "-n", "cp", "--cpus", "1", "--memory", "1G")
	// A directory outside the shared home, owned by the mapped user.
	uid := strings.TrimSpace(e.mustRunUser("cp", "", "id", "-u"))
	gid := strings.TrimSpace(e.mustRunUser("cp", "", "id", "-g"))
	e.mustRun("cp", "sh", "-c", "mkdir -p /data && chown "+uid+":"+gid+" /data")
	t.Run("Copy", func(t *testing.T) { testCopy(t, e, "cp") })
	t.Run("Stats", func(t *testing.T) { testStats(t, e, "cp") })
}

// treeFacts lists a tree's entries with mode, and sha256 for files or the
// target for symlinks.
func treeFacts(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		s := fmt.Sprintf("%o", fi.Mode().Perm())
		switch {
		case fi.Mode().IsRegular():
			s += " " + fileSHA(t, p) + " " + fi.ModTime().UTC().Format(time.RFC3339)
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			s = "link " + l
		case fi.IsDir():
			s += " dir"
		}
		out[rel] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func fileSHA(t *testing.T, p string) string {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil))
}

func testCopy(t *testing.T, e *env, name string) {
	src := filepath.Join(t.TempDir(), "tree")
	os.MkdirAll(filepath.Join(src, "sub", "deep"), 0o755)
	big := filepath.Join(src, "big")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, 50<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	os.WriteFile(filepath.Join(src, "run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755)
	os.WriteFile(filepath.Join(src, "sub", "secret"), []byte("s"), 0o600)
	os.WriteFile(filepath.Join(src, "sub", "deep", "ro"), []byte("r"), 0o444)
	os.Symlink("../big", filepath.Join(src, "sub", "link"))
	os.Chmod(filepath.Join(src, "sub"), 0o750)
	old := time.Date(2021, 5, 6, 7, 8, 9, 0, time.UTC)
	os.Chtimes(filepath.Join(src, "run.sh"), old, old)
	want := treeFacts(t, src)

	// Host to machine: into an existing directory.
	start := time.Now()
	_, errs, code := e.mt(nil, "machine", "cp", src, name+":/data/")
	if code != 0 {
		t.Fatalf("cp in: exit %d: %s", code, errs)
	}
	in := time.Since(start)
	if !strings.Contains(errs, "copied") {
		t.Errorf("cp in printed %q, want a line saying what was copied", errs)
	}
	sums := e.mustRunUser(name, "", "sh", "-c", "cd /data/tree && sha256sum big && stat -c '%a %n' big run.sh sub sub/secret sub/deep/ro && readlink sub/link")
	for _, w := range []string{want["big"][4:68] + "  big", "755 run.sh", "750 sub", "600 sub/secret", "444 sub/deep/ro", "../big"} {
		if !strings.Contains(sums, w) {
			t.Errorf("in the machine: %q missing from\n%s", w, sums)
		}
	}

	// Machine to host: to a new name.
	back := filepath.Join(t.TempDir(), "back")
	start = time.Now()
	if _, errs, code := e.mt(nil, "machine", "cp", "-q", name+":/data/tree", back); code != 0 || errs != "" {
		t.Fatalf("cp out: exit %d: %q", code, errs)
	}
	out := time.Since(start)
	got := treeFacts(t, back)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s after the round trip: %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("round trip: %d entries, want %d", len(got), len(want))
	}
	t.Logf("machine cp of a tree with a 50 MiB file: host→guest %v (%.0f MiB/s), guest→host %v (%.0f MiB/s)",
		in.Round(time.Millisecond), 50/in.Seconds(), out.Round(time.Millisecond), 50/out.Seconds())

	// Bad input: exit 125 and a message naming what was wrong.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{src, back}, "neither"},
		{[]string{name + ":/a", name + ":/b"}, "both"},
		{[]string{"/nonexistent/src", name + ":/data/"}, "on the host: lstat /nonexistent/src: no such file"},
		{[]string{name + ":/data/nosuch", back}, "in machine " + name + ":/data/nosuch"},
		{[]string{big, name + ":/data/nodir/big"}, "parent directory /data/nodir does not exist"},
		{[]string{name + ":/data/tree/big", filepath.Join(back, "nodir", "big")}, "parent directory " + filepath.Join(back, "nodir") + " does not exist"},
		{[]string{big, name + ":relative"}, "absolute path"},
		{[]string{big, "nosuchmachine:/data/"}, "nosuchmachine"},
		// /data is the mapped user's, 0755: another user may not write.
		{[]string{"-u", "65534", big, name + ":/data/"}, "permission denied"},
	} {
		_, errs, code := e.mt(nil, append([]string{"machine", "cp"}, tc.args...)...)
		if code != 125 || !strings.Contains(errs, tc.want) {
			t.Errorf("cp %v: exit %d, %q; want 125 and %q", tc.args, code, errs, tc.want)
		}
	}
	// A failed copy into the machine left it usable.
	e.mustRunUser(name, "", "true")
}

func testStats(t *testing.T, e *env, name string) {
	table := e.must("machine", "stats", "--no-stream")
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "NAME") || !strings.HasPrefix(lines[1], name+" ") {
		t.Fatalf("stats table:\n%s", table)
	}
	if got := strings.TrimSpace(e.must("machine", "stats", "--no-stream", "--format", "{{.Name}}", name)); got != name {
		t.Errorf("--format '{{.Name}}' printed %q", got)
	}
	var rows []struct {
		Name          string
		CPUPercent    float64
		CPUs          int
		MemUsed       uint64
		MemTotal      uint64
		HostRSS       uint64
		DiskUsed      uint64
		DiskSize      uint64
		DiskAllocated uint64
		NetRx, NetTx  uint64
		Error         string
	}
	if err := json.Unmarshal([]byte(e.must("machine", "stats", "--no-stream", "--format", "json")), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 {
		t.Fatalf("stats json: %+v", rows)
	}
	r := rows[0]
	t.Logf("stats: %+v", r)
	switch {
	case r.Error != "":
		t.Errorf("stats error: %s", r.Error)
	case r.CPUs != 1 || r.CPUPercent < 0 || r.CPUPercent > 100:
		t.Errorf("CPU: %d CPUs, %.1f%%", r.CPUs, r.CPUPercent)
	case r.MemTotal < 700<<20 || r.MemTotal > 1<<30 || r.MemUsed == 0 || r.MemUsed > r.MemTotal:
		t.Errorf("memory: used %d of %d", r.MemUsed, r.MemTotal)
	case r.HostRSS < 20<<20:
		t.Errorf("host RSS %d: want the VM process's (tens of MiB at least)", r.HostRSS)
	case r.DiskUsed < 50<<20 || r.DiskUsed > r.DiskSize || r.DiskAllocated < 1<<20:
		// The 50 MiB copied in is on the guest's filesystem; the host
		// file holds at least the filesystem's metadata (the guest may
		// not have written the copy back yet).
		t.Errorf("disk: used %d of %d, %d allocated", r.DiskUsed, r.DiskSize, r.DiskAllocated)
	}
	e.fails("nosuch", "machine", "stats", "--no-stream", "nosuch")
}
