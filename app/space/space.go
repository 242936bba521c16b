// Package space measures where a data directory's disk space goes
// (`machinetop system df`) and reclaims what nothing needs any more
// (`machinetop system prune`). Both front ends may call it; it reads the
// names of everything from vm/layout, images and vm/kit.
package space

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/machinetop/machinetop/images"
	"github.com/machinetop/machinetop/vm/kit"
	"github.com/machinetop/machinetop/vm/layout"
)

// Categories of space, as df and prune name them.
const (
	Machines   = "machines"
	Images     = "images"
	Rootfs     = "rootfs cache"
	BuildCache = "build cache"
	Kits       = "kits"
	Journals   = "journals"
	Partial    = "partial downloads"
	Tmp        = "tmp"
)

// Retention rules of Plan.
const (
	// KeepJournals is how many of the newest build and pull journals are
	// kept whatever their age.
	KeepJournals = 20
	// JournalMaxAge is the age past which older journals go.
	JournalMaxAge = 7 * 24 * time.Hour
	// TmpMinAge is the age an entry of the data directory's tmp/ must
	// reach before it goes: a younger one may belong to a command at work.
	TmpMinAge = time.Hour
)

// Row is one line of Usage: a category and, for machines, the machine's
// name. Bytes is the space allocated on disk; Size is the apparent size
// (for a machine, its root disk's capacity plus its other files).
type Row struct {
	Category string `json:"category"`
	Name     string `json:"name,omitempty"`
	Bytes    int64  `json:"bytes"`
	Size     int64  `json:"size"`
}

// Usage measures data directory d, whose image store is st, one Row per
// machine and per other category, in the order of the categories above.
// Errors: reading the store's index.
func Usage(d layout.Data, st *images.Store) ([]Row, error) {
	var rows []Row
	ents, _ := os.ReadDir(d.Machines())
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		alloc, size := du(d.Machine(e.Name()).Dir)
		rows = append(rows, Row{Category: Machines, Name: e.Name(), Bytes: alloc, Size: size})
	}
	u, err := st.Usage()
	if err != nil {
		return nil, err
	}
	var rootfs int64
	for _, f := range u.Rootfs {
		rootfs += f.Bytes
	}
	rows = append(rows,
		Row{Category: Images, Bytes: u.Images, Size: u.Images},
		Row{Category: Rootfs, Bytes: rootfs, Size: rootfs},
		Row{Category: BuildCache, Bytes: u.CacheOnly, Size: u.CacheOnly})
	for _, c := range []struct {
		cat string
		dir string
	}{{Kits, d.Kit()}, {Journals, d.Builds()}} {
		a, s := du(c.dir)
		rows = append(rows, Row{Category: c.cat, Bytes: a, Size: s})
	}
	a, s := du(d.Tmp())
	rows = append(rows, Row{Category: Tmp, Bytes: a + u.Scratch, Size: s + u.Scratch})
	return rows, nil
}

// Item is one thing Prune removes: its category, path (empty for the
// build cache as a whole) and the bytes it frees.
type Item struct {
	Category string `json:"category"`
	Path     string `json:"path,omitempty"`
	Bytes    int64  `json:"bytes"`
}

// Plan chooses what Prune removes from data directory d at time now:
//
//   - cached root filesystem tars that no machine links to (a machine
//     not yet booted holds a hard link to its image's tar, which is kept);
//   - every build cache entry, and the blobs no tagged image uses;
//   - journals beyond the newest KeepJournals that are older than
//     JournalMaxAge;
//   - kits other than the newest one per kernel source (the next boot
//     of a machine whose kit went builds it again); skipped while a kit
//     is being built;
//   - partial downloads: the store's scratch files and the kit cache's
//     interrupted builds and downloads;
//   - entries of the data directory's tmp/ older than TmpMinAge.
//
// Tagged images and everything in machine directories are never chosen.
// Errors: reading the store.
func Plan(d layout.Data, st *images.Store, now time.Time) ([]Item, error) {
	var out []Item
	u, err := st.Usage()
	if err != nil {
		return nil, err
	}
	for _, f := range u.Rootfs {
		if f.Links <= 1 {
			out = append(out, Item{Category: Rootfs, Path: f.Path, Bytes: f.Bytes})
		}
	}
	if u.CacheEntries > 0 {
		out = append(out, Item{Category: BuildCache, Bytes: u.CacheOnly})
	}
	out = append(out, oldJournals(d.Builds(), now)...)
	if unlock, ok := kit.LockCache(d.Kit()); ok {
		unlock()
		out = append(out, staleKits(d.Kit())...)
	}
	if u.Scratch > 0 {
		out = append(out, Item{Category: Partial, Path: filepath.Join(st.Root(), "tmp"), Bytes: u.Scratch})
	}
	ents, _ := os.ReadDir(d.Tmp())
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && now.Sub(fi.ModTime()) >= TmpMinAge {
			p := filepath.Join(d.Tmp(), e.Name())
			a, _ := du(p)
			out = append(out, Item{Category: Tmp, Path: p, Bytes: a})
		}
	}
	return out, nil
}

func oldJournals(dir string, now time.Time) []Item {
	ents, _ := os.ReadDir(dir)
	type j struct {
		path string
		fi   fs.FileInfo
	}
	var js []j
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".jsonl") {
			continue
		}
		if fi, err := e.Info(); err == nil {
			js = append(js, j{filepath.Join(dir, e.Name()), fi})
		}
	}
	sort.Slice(js, func(a, b int) bool { return js[a].fi.ModTime().After(js[b].fi.ModTime()) })
	var out []Item
	for i, x := range js {
		if i >= KeepJournals && now.Sub(x.fi.ModTime()) > JournalMaxAge {
			a, _ := du(x.path)
			out = append(out, Item{Category: Journals, Path: x.path, Bytes: a})
		}
	}
	return out
}

func staleKits(dir string) []Item {
	kits, _ := kit.ListCache(dir)
	newest := map[string]kit.CachedKit{}
	for _, k := range kits {
		if n, ok := newest[k.Source]; !ok || k.ModTime.After(n.ModTime) {
			newest[k.Source] = k
		}
	}
	var out []Item
	for _, k := range kits {
		if newest[k.Source].Dir != k.Dir {
			a, _ := du(k.Dir)
			out = append(out, Item{Category: Kits, Path: k.Dir, Bytes: a})
		}
	}
	for _, g := range kit.LeftoverGlobs {
		ms, _ := filepath.Glob(filepath.Join(dir, g))
		for _, m := range ms {
			a, _ := du(m)
			out = append(out, Item{Category: Partial, Path: m, Bytes: a})
		}
	}
	return out
}

// Prune removes items (as Plan chose them) from data directory d with
// store st. Kits and kit leftovers go only while the kit cache's lock is
// free; the store's scratch goes through its garbage collection. It
// returns the items removed and every error met (errors.Join).
func Prune(d layout.Data, st *images.Store, items []Item) ([]Item, error) {
	var done []Item
	var errs []error
	unlockKits, kitsFree := kit.LockCache(d.Kit())
	if kitsFree {
		defer unlockKits()
	}
	for _, it := range items {
		var err error
		switch {
		case it.Category == Rootfs:
			var gone bool
			if gone, err = st.RemoveRootfsFile(it.Path); err == nil && !gone {
				continue // a machine linked to it meanwhile
			}
		case it.Category == BuildCache:
			_, err = st.PruneCache()
		case it.Category == Partial && it.Path == filepath.Join(st.Root(), "tmp"):
			err = st.Collect()
		case it.Category == Kits || it.Category == Partial:
			if !kitsFree {
				continue
			}
			err = os.RemoveAll(it.Path)
		default:
			err = os.RemoveAll(it.Path)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, it)
	}
	return done, errors.Join(errs...)
}

// du returns the bytes allocated on disk under path and their apparent
// size (0, 0 for a path that does not exist).
func du(path string) (alloc, size int64) {
	filepath.WalkDir(path, func(_ string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil
		}
		if fi, err := e.Info(); err == nil {
			size += fi.Size()
			alloc += allocated(fi)
		}
		return nil
	})
	return alloc, size
}
