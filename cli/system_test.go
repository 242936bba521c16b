package cli_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSystemDFAndPrune(t *testing.T) {
	e := newEnv(t)
	e.withMachines("dev")
	out := e.must("system", "df")
	for _, w := range []string{"CATEGORY NAME ALLOCATED SIZE", "machines dev", "images", "rootfs cache", "build cache", "kits", "journals", "total"} {
		if !hasRow(out, w) {
			t.Errorf("system df lacks %q:\n%s", w, out)
		}
	}
	out = e.must("system", "df", "--format", "{{.Category}}/{{.Name}} {{.Size}}")
	if !strings.Contains(out, "machines/dev 2147") { // the 2G sparse disk and a few small files
		t.Errorf("system df --format: %q, want dev's 2G disk", out)
	}
	e.must("system", "df", "--format", "json")

	// Journals: 21 older than a week, so the oldest goes; the machine
	// not booted yet keeps its image's rootfs tar.
	old := time.Now().Add(-8 * 24 * time.Hour)
	builds := filepath.Join(e.data, "builds")
	os.MkdirAll(builds, 0o755)
	for i := range 21 {
		p := filepath.Join(builds, fmt.Sprintf("j%02d.jsonl", i))
		os.WriteFile(p, []byte("{}\n"), 0o644)
		mt := old.Add(-time.Duration(i) * time.Hour)
		os.Chtimes(p, mt, mt)
	}
	oldest := filepath.Join(builds, "j20.jsonl")
	out = e.must("system", "prune", "--dry-run")
	if !hasRow(out, "journals "+oldest) || hasRow(out, "rootfs cache /") || !hasRow(out, "total would free") {
		t.Errorf("prune --dry-run:\n%s\nwant the oldest journal and not the linked rootfs tar", out)
	}
	if _, err := os.Stat(oldest); err != nil {
		t.Fatal("--dry-run removed a journal")
	}
	// Without a terminal it refuses unless --force.
	e.fails([]string{"system", "prune"}, "pass --force")

	// Deleting the machine leaves its image's tar unused.
	e.must("machine", "rm", "dev")
	out = e.must("system", "prune", "-f")
	if !hasRow(out, "rootfs cache "+filepath.Join(e.data, "images", "rootfs")) || !hasRow(out, "journals "+oldest) || !hasRow(out, "total freed") {
		t.Errorf("prune -f:\n%s", out)
	}
	if _, err := os.Stat(oldest); err == nil {
		t.Error("prune -f kept the oldest journal")
	}
	if out := e.must("system", "prune", "-f"); strings.TrimSpace(out) != "nothing to prune" {
		t.Errorf("second prune: %q", out)
	}
	// The image is whole: a machine can still be made from it.
	e.must("machine", "create", "tiny:1", "-n", "again", "--no-boot", "--disk", "2G", "--memory", "256M", "--cpus", "1")
}

// hasRow reports whether a line of out begins with the words of prefix,
// however the columns are padded.
func hasRow(out, prefix string) bool {
	want := strings.Join(strings.Fields(prefix), " ")
	for _, l := range lines(out) {
		if strings.HasPrefix(strings.Join(strings.Fields(l), " "), want) {
			return true
		}
	}
	return false
}
