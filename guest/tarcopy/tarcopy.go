// Package tarcopy is the archive format of `machine cp`: a POSIX tar stream
// (archive/tar, PAX headers) of one file, symlink or directory tree, written
// on one side of the agent channel and unpacked on the other. It is pure Go,
// used by the host (package cli) and by the guest agent alike, so images
// need no tar program.
//
// Entry names are slash-separated and relative: the first entry is the
// source's base name, the others lie under it ("dir", "dir/a", "dir/a/b").
// Symlinks are stored as symlinks and never followed, the source itself
// included (a symlink source is copied as a symlink, as `docker cp` does).
// Modes (permission, setuid/setgid/sticky bits), mtimes and numeric
// owners are recorded; Extract applies owners only when asked.
package tarcopy

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Size returns the bytes of regular-file content under src (src itself when
// it is a file), without following symlinks: the total a progress display
// counts towards. Errors are those of os.Lstat and reading directories,
// naming the path.
func Size(src string) (int64, error) {
	var total int64
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			total += fi.Size()
		}
		return nil
	})
	return total, err
}

// Write writes src (a file, symlink or directory, recursively) to w as a
// tar stream named as the package comment says, and closes the archive
// (its end blocks). Files that are neither regular, directory nor symlink
// (devices, sockets, FIFOs) are skipped. Errors name the path that failed.
func Write(w io.Writer, src string) error {
	src = filepath.Clean(src)
	base := filepath.Base(src)
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		name := base
		if rel != "." {
			name = path.Join(base, filepath.ToSlash(rel))
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		case fi.Mode().IsRegular(), fi.IsDir():
		default:
			return nil
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		hdr.Name = name
		if fi.IsDir() {
			hdr.Name += "/"
		}
		// Numeric owners only: the names of one side mean nothing on
		// the other.
		hdr.Uname, hdr.Gname = "", ""
		hdr.Format = tar.FormatPAX
		hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// Options tune Extract.
type Options struct {
	// Chown applies the archive's numeric owners (needs root).
	Chown bool
}

// Target resolves where a source named base lands for the destination dst,
// as `docker cp` does: inside dst when dst is an existing directory;
// dst itself otherwise, whose parent must exist. srcIsDir says the source
// is a directory, which cannot replace an existing non-directory. It
// returns the directory that holds the copy and the copy's name there.
func Target(dst, base string, srcIsDir bool) (dir, name string, err error) {
	fi, err := os.Stat(dst)
	switch {
	case err == nil && fi.IsDir():
		return dst, base, nil
	case err == nil && srcIsDir:
		return "", "", fmt.Errorf("%s: cannot copy a directory onto a file", dst)
	case err == nil, errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		if strings.HasSuffix(dst, "/") && err != nil {
			return "", "", fmt.Errorf("%s: no such directory", dst)
		}
		parent := filepath.Dir(filepath.Clean(dst))
		pfi, perr := os.Stat(parent)
		if perr != nil {
			return "", "", fmt.Errorf("%s: the parent directory %s does not exist", dst, parent)
		}
		if !pfi.IsDir() {
			return "", "", fmt.Errorf("%s: %s is not a directory", dst, parent)
		}
		return parent, filepath.Base(filepath.Clean(dst)), nil
	default:
		return "", "", err
	}
}

// Extract reads a stream made by Write from r and creates its tree in dir,
// the first entry renamed to name (see Target). Every file is created
// through an os.Root at dir, so no entry and no symlink (in the archive or
// already on disk) reaches outside dir; entry names that are not local
// (absolute, or with ".." going up) are refused. An existing file or
// symlink where the archive has a file is replaced; an existing directory
// is merged into. Modes and mtimes are applied, directories' last so that
// read-only directories can be filled. Errors name the entry that failed.
func Extract(r io.Reader, dir, name string, o Options) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	type dirMeta struct {
		name string
		hdr  *tar.Header
	}
	var dirs []dirMeta
	tr := tar.NewReader(r)
	first := ""
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the archive: %w", err)
		}
		clean := path.Clean(hdr.Name)
		if !filepath.IsLocal(filepath.FromSlash(clean)) {
			return fmt.Errorf("%s: refusing a path outside the destination", hdr.Name)
		}
		top, rest, _ := strings.Cut(clean, "/")
		if first == "" {
			first = top
		} else if top != first {
			return fmt.Errorf("%s: entry outside the copied tree %s", hdr.Name, first)
		}
		p := name
		if rest != "" {
			p = name + "/" + rest
		}
		if err := extractOne(root, tr, hdr, p, o); err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(dir, filepath.FromSlash(p)), err)
		}
		if hdr.Typeflag == tar.TypeDir {
			dirs = append(dirs, dirMeta{p, hdr})
		}
	}
	if first == "" {
		return errors.New("reading the archive: it is empty")
	}
	for _, d := range slices.Backward(dirs) {
		if err := root.Chmod(d.name, fileMode(d.hdr)); err != nil {
			return err
		}
		if err := root.Chtimes(d.name, d.hdr.ModTime, d.hdr.ModTime); err != nil {
			return err
		}
	}
	return nil
}

// fileMode turns a header's mode into an os.FileMode with the setuid,
// setgid and sticky bits where os expects them.
func fileMode(h *tar.Header) fs.FileMode {
	return h.FileInfo().Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
}

func extractOne(root *os.Root, tr *tar.Reader, hdr *tar.Header, p string, o Options) error {
	existing, lerr := root.Lstat(p)
	switch hdr.Typeflag {
	case tar.TypeDir:
		if lerr == nil && existing.IsDir() {
			break
		}
		if lerr == nil {
			if err := root.Remove(p); err != nil {
				return err
			}
		}
		// Owner-writable until the final Chmod, so children can be made.
		if err := root.Mkdir(p, 0o700); err != nil {
			return err
		}
	case tar.TypeReg:
		if lerr == nil && !existing.Mode().IsRegular() {
			if existing.IsDir() {
				return errors.New("cannot overwrite a directory with a file")
			}
			if err := root.Remove(p); err != nil {
				return err
			}
		}
		f, err := root.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, tr); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	case tar.TypeSymlink:
		if lerr == nil {
			if existing.IsDir() {
				return errors.New("cannot overwrite a directory with a symlink")
			}
			if err := root.Remove(p); err != nil {
				return err
			}
		}
		if err := root.Symlink(hdr.Linkname, p); err != nil {
			return err
		}
	default:
		return nil // Write makes no other kinds
	}
	if o.Chown {
		if err := root.Lchown(p, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
	}
	if hdr.Typeflag == tar.TypeReg {
		// After chown, which clears setuid/setgid.
		if err := root.Chmod(p, fileMode(hdr)); err != nil {
			return err
		}
		return root.Chtimes(p, hdr.ModTime, hdr.ModTime)
	}
	return nil
}
