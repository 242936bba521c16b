package space

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/machinetop/machinetop/images"
	"github.com/machinetop/machinetop/vm/layout"
)

func touch(t *testing.T, p string, size int, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestPlanAndPrune runs the selection over a real store: what a tagged
// image or a machine needs stays, the rest goes, and a dry run (Plan
// alone) changes nothing.
func TestPlanAndPrune(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	d := layout.Data{Root: t.TempDir()}
	st, err := images.Open(d.Images())
	if err != nil {
		t.Fatal(err)
	}
	kept, _ := random.Image(4096, 2)
	if _, err := st.Put(ctx, kept, "keep:1"); err != nil {
		t.Fatal(err)
	}
	linked, _ := random.Image(4096, 1)
	if _, err := st.Put(ctx, linked, "linked:1"); err != nil {
		t.Fatal(err)
	}
	// A build cache entry of its own, and one sharing the tagged image's
	// blobs (which must survive its removal).
	cacheOnly, _ := random.Image(8192, 1)
	if _, err := st.CachePut(ctx, "step-a", cacheOnly); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CachePut(ctx, "step-b", kept); err != nil {
		t.Fatal(err)
	}
	keptTar, err := st.RootfsTar(ctx, "keep:1")
	if err != nil {
		t.Fatal(err)
	}
	linkedTar, err := st.RootfsTar(ctx, "linked:1")
	if err != nil {
		t.Fatal(err)
	}
	// A machine created but not booted yet links to linked:1's tar.
	m := d.Machine("dev")
	os.MkdirAll(m.Dir, 0o700)
	if err := os.Link(linkedTar, m.ImageTar()); err != nil {
		t.Fatal(err)
	}
	touch(t, m.Disk(), 1<<16, now)

	// 22 recent journals and 3 older than a week.
	var oldJournals []string
	for i := range 22 {
		touch(t, filepath.Join(d.Builds(), fmt.Sprintf("new%02d.jsonl", i)), 10, now.Add(-time.Duration(i+1)*time.Hour))
	}
	for i := range 3 {
		p := filepath.Join(d.Builds(), fmt.Sprintf("old%d.jsonl", i))
		touch(t, p, 10, now.Add(-JournalMaxAge-time.Duration(i+1)*time.Hour))
		oldJournals = append(oldJournals, p)
	}
	// Two kits of one kernel package, one of another; leftovers.
	kit := func(name, source string, age time.Duration) string {
		dir := filepath.Join(d.Kit(), name)
		touch(t, filepath.Join(dir, "vmlinuz"), 100, now)
		touch(t, filepath.Join(dir, "kit.json"), 0, now)
		os.WriteFile(filepath.Join(dir, "kit.json"), []byte(`{"source":"`+source+`"}`), 0o644)
		os.Chtimes(dir, now.Add(-age), now.Add(-age))
		return dir
	}
	oldKit := kit("aaa", "package linux-a.deb", 48*time.Hour)
	newKit := kit("bbb", "package linux-a.deb", time.Hour)
	otherKit := kit("ccc", "kernel /boot/vmlinuz", 72*time.Hour)
	partialDeb := filepath.Join(d.Kit(), "debs", "linux-a.deb.partial-0123456789abcdef")
	touch(t, partialDeb, 50, now)
	buildDir := filepath.Join(d.Kit(), ".build-1")
	touch(t, filepath.Join(buildDir, "x"), 5, now)
	// tmp/: an old leftover and a fresh entry.
	oldTmp, newTmp := filepath.Join(d.Tmp(), "old"), filepath.Join(d.Tmp(), "new")
	touch(t, oldTmp, 7, now.Add(-2*TmpMinAge))
	touch(t, newTmp, 7, now)

	items, err := Plan(d, st, now)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var cacheBytes int64
	for _, it := range items {
		if it.Category == BuildCache {
			cacheBytes = it.Bytes
			got = append(got, BuildCache)
			continue
		}
		got = append(got, it.Category+" "+it.Path)
	}
	sort.Strings(got)
	want := []string{BuildCache, Journals + " " + oldJournals[0], Journals + " " + oldJournals[1], Journals + " " + oldJournals[2],
		Kits + " " + oldKit, Partial + " " + buildDir, Partial + " " + partialDeb, Rootfs + " " + keptTar, Tmp + " " + oldTmp}
	sort.Strings(want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Plan chose\n%v\nwant\n%v", got, want)
	}
	cfg, _ := cacheOnly.RawConfigFile()
	if min := int64(8192 + len(cfg)); cacheBytes < min {
		t.Errorf("build cache frees %d bytes, want at least the cache-only image's %d", cacheBytes, min)
	}
	// The dry run touched nothing.
	if !exists(keptTar) || !exists(oldKit) || !exists(oldJournals[0]) {
		t.Fatal("Plan removed files")
	}

	done, err := Prune(d, st, items)
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != len(items) {
		t.Errorf("Prune removed %d of %d items", len(done), len(items))
	}
	for _, p := range append(oldJournals, keptTar, oldKit, partialDeb, buildDir, oldTmp) {
		if exists(p) {
			t.Errorf("%s survived the prune", p)
		}
	}
	for _, p := range []string{linkedTar, m.ImageTar(), m.Disk(), newKit, otherKit, newTmp, filepath.Join(d.Builds(), "new21.jsonl")} {
		if !exists(p) {
			t.Errorf("%s was removed", p)
		}
	}
	if _, ok := st.CacheGet("step-a"); ok {
		t.Error("build cache entry step-a survived")
	}
	// The tagged images are whole: they flatten again from their blobs.
	for _, ref := range []string{"keep:1", "linked:1"} {
		if _, err := st.RootfsTar(ctx, ref); err != nil {
			t.Errorf("%s after prune: %v", ref, err)
		}
	}
	// A second plan finds nothing but the rootfs tar just made again.
	items, _ = Plan(d, st, now)
	if len(items) != 1 || items[0].Path != keptTar {
		t.Errorf("second Plan = %+v, want only %s", items, keptTar)
	}
}

func TestUsage(t *testing.T) {
	d := layout.Data{Root: t.TempDir()}
	st, err := images.Open(d.Images())
	if err != nil {
		t.Fatal(err)
	}
	img, _ := random.Image(4096, 1)
	st.Put(context.Background(), img, "a:1")
	m := d.Machine("dev")
	os.MkdirAll(m.Dir, 0o700)
	f, _ := os.Create(m.Disk())
	f.Truncate(1 << 30) // sparse: 1 GiB apparent, nothing allocated
	f.Write(make([]byte, 4096))
	f.Close()
	rows, err := Usage(d, st)
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]Row{}
	for _, r := range rows {
		by[r.Category+r.Name] = r
	}
	if r := by[Machines+"dev"]; r.Size != 1<<30 || r.Bytes < 4096 || r.Bytes > 1<<20 {
		t.Errorf("machine row = %+v, want 1 GiB apparent and a few KiB allocated", r)
	}
	if r := by[Images]; r.Bytes < 4096 {
		t.Errorf("images row = %+v, want at least the layer's 4096 bytes", r)
	}
}
