// Package testfs holds file-tree helpers that tests in several packages
// share.
package testfs

import (
	"io/fs"
	"os"
	"path/filepath"
)

// CopyTree copies the directory tree src to dst: directories (mode 0755)
// and the contents of regular files (mode 0644); anything else is
// skipped. It returns the first error of the walk, a read or a write.
func CopyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		out := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(out, 0o755)
		case !d.Type().IsRegular():
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o644)
	})
}
