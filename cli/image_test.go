package cli

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/machinetop/machinetop/images"
)

// runImageCLI runs the real command tree with args and returns stdout.
func runImageCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := NewRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func writeRootfsTar(t *testing.T, dir string) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Typeflag: tar.TypeDir, Name: "etc/", Mode: 0o755},
		{Typeflag: tar.TypeReg, Name: "etc/hostname", Mode: 0o644, Size: 5},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("host\n"))
		}
	}
	tw.Close()
	p := filepath.Join(dir, "rootfs.tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestImageCommands(t *testing.T) {
	home := t.TempDir()
	t.Setenv("MACHINETOP_HOME", home)
	src := writeRootfsTar(t, t.TempDir())

	out, err := runImageCLI(t, "image", "import", src, "demo:v1")
	if err != nil {
		t.Fatal(err)
	}
	digest := strings.TrimSpace(out)
	if !strings.HasPrefix(digest, "sha256:") || len(digest) != 71 {
		t.Fatalf("import printed %q, want a digest", out)
	}
	if _, err := os.Stat(filepath.Join(home, "images", "blobs", "sha256", digest[7:])); err != nil {
		t.Errorf("store not under the data directory: %v", err)
	}
	if _, err := runImageCLI(t, "image", "import", src, "demo:v2"); err != nil {
		t.Fatal(err)
	}

	out, err = runImageCLI(t, "image", "ls")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "REPOSITORY TAG DIGEST SIZE CREATED PLATFORM" {
		t.Fatalf("ls output:\n%s", out)
	}
	if f := strings.Fields(lines[1]); f[0] != "demo" || f[1] != "v1" || f[2] != digest[7:19] || !strings.HasSuffix(f[3], "B") && !strings.HasSuffix(f[3], "K") {
		t.Errorf("ls row %q", lines[1])
	}

	out, err = runImageCLI(t, "image", "list", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []imageRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("json output %q: %v", out, err)
	}
	if len(rows) != 2 || rows[0].Repository != "demo" || rows[0].Digest != digest || rows[0].Size <= 0 || rows[0].Platform == "" || rows[0].ID != digest[7:19] {
		t.Errorf("json rows %+v", rows)
	}

	// -q prints each image once, however many tags it has.
	out, err = runImageCLI(t, "image", "ls", "-q")
	if err != nil {
		t.Fatal(err)
	}
	unique := map[string]bool{}
	for _, r := range rows {
		unique[r.Digest[7:19]] = true
	}
	for _, id := range strings.Fields(out) {
		if !unique[id] {
			t.Errorf("ls -q printed unknown %q", id)
		}
		delete(unique, id)
	}
	if len(unique) != 0 || strings.Count(out, "\n") != len(strings.Fields(out)) {
		t.Errorf("ls -q printed %q", out)
	}

	if _, err := runImageCLI(t, "image", "ls", "--format", "yaml"); err == nil {
		t.Error("--format yaml accepted")
	}

	out, err = runImageCLI(t, "image", "rm", "demo:v1", "nosuch")
	if err == nil || !strings.Contains(err.Error(), "nosuch") || !strings.Contains(err.Error(), "machinetop image import") {
		t.Errorf("rm of a missing image: %v", err)
	}
	if out != "demo:v1\n" {
		t.Errorf("rm printed %q", out)
	}
	if _, err := runImageCLI(t, "image", "delete", "demo:v2"); err != nil {
		t.Fatal(err)
	}
	out, err = runImageCLI(t, "image", "ls", "--format", "json")
	if err != nil || strings.TrimSpace(out) != "[]" {
		t.Errorf("ls of an empty store = %q, %v", out, err)
	}

	_, err = runImageCLI(t, "image", "import", filepath.Join(t.TempDir(), "missing.tar"), "x")
	if err == nil {
		t.Error("import of a missing file succeeded")
	}
}

func TestWriteImageTable(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	d := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	var buf bytes.Buffer
	writeImageTable(&buf, []images.Image{
		{Name: "debian", Tag: "bookworm", Digest: d, Size: 75 << 20, Created: now.Add(-3 * time.Minute), Platform: "linux/arm64/v8"},
		{Name: "example.com/team/app", Tag: "v1", Digest: d, Size: 3 << 29, Created: now.Add(-49 * time.Hour)},
	}, now)
	want := "" +
		"REPOSITORY            TAG       DIGEST        SIZE  CREATED        PLATFORM\n" +
		"debian                bookworm  abababababab  75M   3 minutes ago  linux/arm64/v8\n" +
		"example.com/team/app  v1        abababababab  1.5G  2 days ago     -\n"
	if buf.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", buf.String(), want)
	}
}

// relativeTime is docker's wording (go-units), anchored at now; an image
// without a creation time shows "unknown".
func TestRelativeTime(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for d, want := range map[time.Duration]string{
		45 * time.Second:     "45 seconds ago",
		3 * time.Hour:        "3 hours ago",
		800 * 24 * time.Hour: "2 years ago",
	} {
		if got := relativeTime(now.Add(-d), now); got != want {
			t.Errorf("relativeTime(-%v) = %q, want %q", d, got, want)
		}
	}
	if got := relativeTime(time.Time{}, now); got != "unknown" {
		t.Errorf("zero time = %q", got)
	}
}
