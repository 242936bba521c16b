package build

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"

	"github.com/machinetop/machinetop/images"
)

// entry is one file of a copy source: a path relative to the source's
// root ("etc/app.conf"; "" is the root), its tar header (name unset) and
// how to read a regular file's content.
type entry struct {
	name string
	hdr  tar.Header
	open func() (io.ReadCloser, error)
}

// source is a file tree COPY and ADD read from: the build context or an
// image's flattened root filesystem.
type source struct {
	what    string // "build context", "stage builder", "image debian:12"
	entries map[string]*entry
	names   []string // sorted
	// local is the context directory for the build context, "" otherwise.
	local string
	// file holds an image source's flattened tar; nil for the context.
	file *os.File
}

// close releases an image source's file.
func (s *source) close() {
	if s.file != nil {
		s.file.Close()
		os.Remove(s.file.Name())
	}
}

func (s *source) add(e *entry) {
	s.entries[e.name] = e
	s.names = append(s.names, e.name)
}

func (s *source) sort() { sort.Strings(s.names) }

// contextSource reads the build context dir, leaving out what its
// .dockerignore excludes (Dockerfile reference, ".dockerignore file").
func contextSource(dir string) (*source, error) {
	var pm *patternmatcher.PatternMatcher
	if f, err := os.Open(filepath.Join(dir, ".dockerignore")); err == nil {
		pats, err := ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf(".dockerignore: %w", err)
		}
		if pm, err = patternmatcher.New(pats); err != nil {
			return nil, fmt.Errorf(".dockerignore: %w", err)
		}
	}
	s := &source{what: "build context", entries: map[string]*entry{}, local: dir}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			rel = ""
		}
		if rel != "" && pm != nil {
			// Directories stay walkable when an exclusion (!pattern) may
			// re-include something below them.
			ex, err := pm.MatchesOrParentMatches(rel)
			if err != nil {
				return err
			}
			if ex {
				if d.IsDir() && !pm.Exclusions() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		h.Uname, h.Gname, h.Uid, h.Gid = "", "", 0, 0
		h.AccessTime, h.ChangeTime = time.Time{}, time.Time{}
		h.Name = ""
		e := &entry{name: rel, hdr: *h}
		if h.Typeflag == tar.TypeReg {
			e.open = func() (io.ReadCloser, error) { return os.Open(p) }
		}
		s.add(e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the build context: %w", err)
	}
	s.sort()
	return s, nil
}

// imageSource flattens img into a file in dir and indexes its entries.
func imageSource(ctx context.Context, img v1.Image, what, dir string) (*source, error) {
	f, err := os.CreateTemp(dir, "rootfs-*.tar")
	if err != nil {
		return nil, err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := images.Flatten(ctx, img, bw, dir); err != nil {
		f.Close()
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return nil, err
	}
	s := &source{what: what, entries: map[string]*entry{}, file: f}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	cr := &countReader{r: bufio.NewReaderSize(f, 1<<20)}
	tr := tar.NewReader(cr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("reading %s: %w", what, err)
		}
		name := strings.Trim(path.Clean("/"+h.Name), "/")
		hdr := *h
		hdr.Name = ""
		e := &entry{name: name, hdr: hdr}
		switch h.Typeflag {
		case tar.TypeReg:
			off, size := cr.n, h.Size
			e.open = func() (io.ReadCloser, error) {
				return io.NopCloser(io.NewSectionReader(f, off, size)), nil
			}
		case tar.TypeLink:
			// Flatten writes a hard link after its target: copy the target.
			tn := strings.Trim(path.Clean("/"+h.Linkname), "/")
			if t, ok := s.entries[tn]; ok {
				e.hdr = t.hdr
				e.open = t.open
			}
		}
		s.add(e)
	}
	s.sort()
	return s, nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// match returns the entries that src (a path or a path.Match pattern,
// relative to the source root) names, sorted. A pattern matching nothing
// and a missing path are errors naming src and the source.
func (s *source) match(src string) ([]*entry, error) {
	p := strings.Trim(path.Clean("/"+src), "/")
	if strings.ContainsAny(p, "*?[") {
		var out []*entry
		for _, n := range s.names {
			if ok, err := path.Match(p, n); err != nil {
				return nil, fmt.Errorf("bad pattern %q: %w", src, err)
			} else if ok {
				out = append(out, s.entries[n])
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("no source files were specified: %q matches nothing in the %s", src, s.what)
		}
		return out, nil
	}
	e, ok := s.entries[p]
	if !ok {
		if s.local != "" {
			if _, err := os.Lstat(filepath.Join(s.local, filepath.FromSlash(p))); err == nil {
				return nil, fmt.Errorf("%q is excluded by .dockerignore", src)
			}
		}
		return nil, fmt.Errorf("%q not found in the %s", src, s.what)
	}
	return []*entry{e}, nil
}

// below returns e and every entry under directory e, sorted.
func (s *source) below(e *entry) []*entry {
	out := []*entry{e}
	prefix := e.name + "/"
	if e.name == "" {
		prefix = ""
	}
	i := sort.SearchStrings(s.names, prefix)
	for ; i < len(s.names); i++ {
		n := s.names[i]
		if !strings.HasPrefix(n, prefix) {
			break
		}
		if n != e.name {
			out = append(out, s.entries[n])
		}
	}
	return out
}

// isURL reports whether an ADD source is remote.
func isURL(src string) bool {
	for _, p := range []string{"http://", "https://", "git@", "git://", "ssh://"} {
		if strings.HasPrefix(src, p) {
			return true
		}
	}
	return false
}

// openArchive opens r's content as a tar stream if it is a tar, plain or
// compressed with gzip, bzip2, xz or zstd (the formats ADD extracts). It
// returns nil for anything else.
func openArchive(open func() (io.ReadCloser, error)) (io.ReadCloser, error) {
	rc, err := open()
	if err != nil {
		return nil, err
	}
	r, err := images.Decompress(bufio.NewReaderSize(rc, 64<<10))
	if err != nil {
		rc.Close()
		return nil, nil // not an archive after all: copy it as a file
	}
	pr := bufio.NewReaderSize(r, 1024)
	head, _ := pr.Peek(512)
	if len(head) < 512 {
		rc.Close()
		return nil, nil
	}
	if _, err := tar.NewReader(bytes.NewReader(head)).Next(); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		rc.Close()
		return nil, nil
	}
	if string(head[257:262]) != "ustar" {
		rc.Close()
		return nil, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{pr, rc}, nil
}
