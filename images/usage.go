package images

import (
	"os"
	"path/filepath"
	"strings"
)

// Usage is what the store holds on disk, in bytes of file content.
type Usage struct {
	// Images is the blobs that tagged images reach (shared blobs once).
	Images int64
	// CacheEntries is the number of build cache entries (CachePut);
	// CacheOnly is the bytes of blobs that only they reach, which
	// PruneCache would free.
	CacheEntries int
	CacheOnly    int64
	// Rootfs lists the cached flattened root filesystems (RootfsTar).
	Rootfs []RootfsFile
	// Scratch is the bytes in the store's scratch directory: partial
	// blobs of interrupted pulls and imports, freed by Collect.
	Scratch int64
}

// RootfsFile is one cached RootfsTar file.
type RootfsFile struct {
	Path  string
	Bytes int64
	// Links is the file's hard link count: above 1 while a machine that
	// has not unpacked its image yet links to it.
	Links uint64
}

// Usage measures the store. Errors: reading index.json or a manifest.
func (s *Store) Usage() (Usage, error) {
	var u Usage
	idx, err := s.readIndex()
	if err != nil {
		return u, err
	}
	tagged, cached := map[string]bool{}, map[string]bool{}
	for _, d := range idx.Manifests {
		live := tagged
		if _, ok := d.Annotations[AnnotationCacheKey]; ok {
			live = cached
			u.CacheEntries++
		}
		if err := s.mark(d, live); err != nil {
			return u, err
		}
	}
	blobs := filepath.Join(s.root, "blobs", "sha256")
	size := func(hex string) int64 {
		fi, err := os.Stat(filepath.Join(blobs, hex))
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	for h := range tagged {
		u.Images += size(h)
	}
	for h := range cached {
		if !tagged[h] {
			u.CacheOnly += size(h)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(s.root, rootfsDir))
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".tar") || strings.HasPrefix(e.Name(), ".") {
			continue // a flatten in progress
		}
		p := filepath.Join(s.root, rootfsDir, e.Name())
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		u.Rootfs = append(u.Rootfs, RootfsFile{Path: p, Bytes: fi.Size(), Links: linkCount(fi)})
	}
	filepath.WalkDir(filepath.Join(s.root, tmpDir), func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				u.Scratch += fi.Size()
			}
		}
		return nil
	})
	return u, nil
}

// RemoveRootfsFile deletes the cached RootfsTar file at path, as Usage
// lists it, unless a machine links to it (its link count is above 1);
// the image's next RootfsTar makes it again. It reports whether the file
// went. Errors: a path that is not a file of the cache, or an I/O error.
func (s *Store) RemoveRootfsFile(path string) (bool, error) {
	if filepath.Dir(path) != filepath.Join(s.root, rootfsDir) || !strings.HasSuffix(path, ".tar") {
		return false, &os.PathError{Op: "remove", Path: path, Err: os.ErrInvalid}
	}
	fi, err := os.Stat(path)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if linkCount(fi) > 1 {
		return false, nil
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return false, err
	}
	return true, nil
}

// Collect deletes unreferenced blobs, root filesystems of images gone
// from the store and scratch files, unless a writer or reader holds the
// store busy (then the next Collect finds the same garbage).
func (s *Store) Collect() error { return s.tryGC() }
