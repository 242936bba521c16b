package build

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
)

// copySpec is one COPY or ADD after expansion.
type copySpec struct {
	srcs    []string
	dest    string // absolute, as the user wrote it after WORKDIR resolution
	destDir bool   // dest names a directory (trailing slash, several sources)
	uid     int    // -1: keep the source's
	gid     int
	chmod   int64 // -1: keep the source's
	extract bool  // ADD: unpack local tar archives
	zeroIDs bool  // files from the build context belong to root
}

// layerWriter writes a layer tar to a file while hashing what the cache
// key depends on: names, types, modes, owners, link targets and contents,
// but not modification times.
type layerWriter struct {
	f   *os.File
	bw  *bufio.Writer
	tw  *tar.Writer
	key io.Writer
	sum func() string
	n   int
}

func newLayerWriter(dir string) (*layerWriter, error) {
	f, err := os.CreateTemp(dir, "copy-*.tar")
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	bw := bufio.NewWriterSize(f, 1<<20)
	return &layerWriter{f: f, bw: bw, tw: tar.NewWriter(bw), key: h,
		sum: func() string { return fmt.Sprintf("%x", h.Sum(nil)) }}, nil
}

// add writes one entry named name (a slash path without leading slash);
// r supplies a regular file's content.
func (w *layerWriter) add(name string, h tar.Header, r io.Reader) error {
	h.Name = name
	if h.Typeflag == tar.TypeDir {
		h.Name += "/"
	}
	if h.Typeflag != tar.TypeReg {
		h.Size = 0
	}
	h.Format = tar.FormatPAX
	fmt.Fprintf(w.key, "%s\x00%c\x00%o\x00%d\x00%d\x00%s\x00%d\x00", h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.Linkname, h.Size)
	for k, v := range h.PAXRecords {
		fmt.Fprintf(w.key, "%s=%s\x00", k, v)
	}
	if err := w.tw.WriteHeader(&h); err != nil {
		return err
	}
	w.n++
	if h.Typeflag == tar.TypeReg && r != nil {
		n, err := io.Copy(io.MultiWriter(w.tw, w.key), r)
		if err != nil {
			return err
		}
		if n != h.Size {
			return fmt.Errorf("%s changed while it was copied", name)
		}
	}
	return nil
}

// finish closes the tar and returns the cache hash of its content.
func (w *layerWriter) finish() (string, error) {
	if err := w.tw.Close(); err != nil {
		return "", err
	}
	if err := w.bw.Flush(); err != nil {
		return "", err
	}
	return w.sum(), nil
}

func (w *layerWriter) discard() {
	w.f.Close()
	os.Remove(w.f.Name())
}

// writeCopy writes the layer for spec reading from src into w. Parent
// directories of the destination are not written: unpacking creates
// missing ones (mode 0755) and existing ones keep their metadata.
func writeCopy(w *layerWriter, src *source, spec copySpec) error {
	type item struct {
		e    *entry
		base string // the matched entry, for paths below a directory
	}
	var items []item
	for _, s := range spec.srcs {
		es, err := src.match(s)
		if err != nil {
			return err
		}
		for _, e := range es {
			items = append(items, item{e: e, base: e.name})
		}
	}
	destDir := spec.destDir || len(items) > 1
	dest := strings.Trim(path.Clean(spec.dest), "/")
	fix := func(h tar.Header) tar.Header {
		if spec.zeroIDs {
			h.Uid, h.Gid = 0, 0
		}
		h.Uname, h.Gname = "", ""
		if spec.uid >= 0 {
			h.Uid, h.Gid = spec.uid, spec.gid
		}
		if spec.chmod >= 0 {
			h.Mode = h.Mode&^0o7777 | spec.chmod
		}
		return h
	}
	open := func(e *entry) (io.ReadCloser, error) {
		if e.open == nil {
			return io.NopCloser(strings.NewReader("")), nil
		}
		return e.open()
	}
	for _, it := range items {
		e := it.e
		if e.hdr.Typeflag == tar.TypeDir {
			// A directory's contents go into dest itself.
			for _, sub := range src.below(e) {
				rel := strings.TrimPrefix(strings.TrimPrefix(sub.name, e.name), "/")
				name := path.Join(dest, rel)
				if name == "" || name == "." {
					continue // the root exists
				}
				if err := addEntry(w, name, fix(sub.hdr), sub, open); err != nil {
					return err
				}
			}
			continue
		}
		name := dest
		if destDir || dest == "" {
			name = path.Join(dest, path.Base(e.name))
		}
		if spec.extract && e.hdr.Typeflag == tar.TypeReg && e.open != nil {
			ar, err := openArchive(e.open)
			if err != nil {
				return err
			}
			if ar != nil {
				err := extractInto(w, ar, dest, spec)
				ar.Close()
				if err != nil {
					return fmt.Errorf("extracting %s: %w", e.name, err)
				}
				continue
			}
		}
		if err := addEntry(w, name, fix(e.hdr), e, open); err != nil {
			return err
		}
	}
	return nil
}

func addEntry(w *layerWriter, name string, h tar.Header, e *entry, open func(*entry) (io.ReadCloser, error)) error {
	if h.Typeflag != tar.TypeReg {
		return w.add(name, h, nil)
	}
	rc, err := open(e)
	if err != nil {
		return err
	}
	defer rc.Close()
	return w.add(name, h, rc)
}

// extractInto copies the entries of archive ar under directory dest, as
// ADD does for local tar files: owners and modes as in the archive unless
// --chown/--chmod say otherwise.
func extractInto(w *layerWriter, ar io.Reader, dest string, spec copySpec) error {
	tr := tar.NewReader(ar)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		rel := strings.Trim(path.Clean("/"+h.Name), "/")
		if rel == "" {
			continue
		}
		hh := *h
		if spec.uid >= 0 {
			hh.Uid, hh.Gid = spec.uid, spec.gid
		}
		if hh.Typeflag == tar.TypeLink {
			hh.Linkname = path.Join(dest, strings.Trim(path.Clean("/"+h.Linkname), "/"))
		}
		if err := w.add(path.Join(dest, rel), hh, tr); err != nil {
			return err
		}
	}
}

// parseChmod parses COPY --chmod's octal mode; "" means keep (-1).
func parseChmod(s string) (int64, error) {
	if s == "" {
		return -1, nil
	}
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o7777 {
		return 0, fmt.Errorf("--chmod=%s: use an octal mode such as 0755", s)
	}
	return int64(m), nil
}

// parseChown resolves COPY --chown's "user[:group]" (names or numbers)
// with the passwd and group files read from lookup (which returns "" when
// a file does not exist). "" means keep (-1, -1).
func parseChown(s string, lookup func(file string) (string, error)) (int, int, error) {
	if s == "" {
		return -1, -1, nil
	}
	u, g, hasGroup := strings.Cut(s, ":")
	uid, err := resolveID(u, "etc/passwd", lookup)
	if err != nil {
		return 0, 0, fmt.Errorf("--chown=%s: %w", s, err)
	}
	gid := uid
	if hasGroup {
		if gid, err = resolveID(g, "etc/group", lookup); err != nil {
			return 0, 0, fmt.Errorf("--chown=%s: %w", s, err)
		}
	} else if _, err := strconv.Atoi(u); err != nil {
		// A user name alone: its primary group.
		passwd, _ := lookup("etc/passwd")
		for _, l := range strings.Split(passwd, "\n") {
			f := strings.Split(l, ":")
			if len(f) >= 4 && f[0] == u {
				gid, _ = strconv.Atoi(f[3])
			}
		}
	}
	return uid, gid, nil
}

func resolveID(name, file string, lookup func(string) (string, error)) (int, error) {
	if n, err := strconv.Atoi(name); err == nil {
		return n, nil
	}
	content, err := lookup(file)
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(content, "\n") {
		f := strings.Split(l, ":")
		if len(f) >= 3 && f[0] == name {
			return strconv.Atoi(f[2])
		}
	}
	return 0, fmt.Errorf("%q is not in the image's /%s", name, file)
}
