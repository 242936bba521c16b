package images

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// RootfsTar returns the path of a tar file holding the flattened root
// filesystem of the image ref addresses (see Resolve), as Flatten writes
// it. The file is cached in the store as rootfs/<manifest digest hex>.tar,
// created atomically, and deleted when the image leaves the store (Remove)
// or by RemoveRootfsCache. Its size is a multiple of 512 bytes, so it can
// be attached to a machine as a raw block device. Errors: those of
// Resolve, ctx's error, or failures reading layers (a malformed layer tar,
// a hard link to a missing file).
func (s *Store) RootfsTar(ctx context.Context, ref string) (string, error) {
	im, img, err := s.Resolve(ref)
	if err != nil {
		return "", err
	}
	dst := s.rootfsPath(im.Digest)
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	// Hold off garbage collection, which would delete the blobs being read.
	unlock, err := s.lock(ctx, gcLockFile, true)
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, _, err := s.Resolve(im.Digest.String()); err != nil {
		return "", err // removed while we waited for the lock
	}
	if _, err := os.Stat(dst); err == nil {
		return dst, nil // another process made it meanwhile
	}
	out, err := os.CreateTemp(filepath.Dir(dst), ".tmp-"+im.Digest.Hex+"-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(out.Name()) // fails harmlessly after the rename
	defer out.Close()
	spool, err := os.CreateTemp(filepath.Join(s.root, tmpDir), "spool-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(spool.Name())
	defer spool.Close()
	bw := bufio.NewWriterSize(out, 1<<20)
	if err := flatten(ctx, img, bw, spool); err != nil {
		return "", fmt.Errorf("flattening %s: %w", im.Ref(), err)
	}
	if err := bw.Flush(); err != nil {
		return "", err
	}
	if err := out.Chmod(0o644); err != nil {
		return "", err
	}
	if err := out.Sync(); err != nil {
		return "", err
	}
	if err := out.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(out.Name(), dst); err != nil {
		return "", err
	}
	return dst, nil
}

// RemoveRootfsCache deletes the cached RootfsTar file of the image ref
// addresses, if there is one. Machines need it only until their first
// boot has unpacked it. Errors: those of Resolve, or an I/O error.
func (s *Store) RemoveRootfsCache(ref string) error {
	im, _, err := s.Resolve(ref)
	if err != nil {
		return err
	}
	if err := os.Remove(s.rootfsPath(im.Digest)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (s *Store) rootfsPath(d v1.Hash) string {
	return filepath.Join(s.root, rootfsDir, d.Hex+".tar")
}

// Flatten writes img's root filesystem to w as one uncompressed tar in
// PAX format: the layers applied in order with OCI image-spec layer.md
// semantics. Whiteout files (".wh.NAME") delete NAME from lower layers,
// opaque markers (".wh..wh..opq") empty their directory of lower-layer
// entries, and later entries replace earlier ones, except that a
// directory over a directory only updates its metadata. Parent paths
// through symbolic links are resolved inside the root, as unpacking onto
// a real filesystem would. Modes (setuid, setgid, sticky), uid/gid and
// names, times, PAX records (such as SCHILY.xattr.security.capability),
// symlinks, device nodes and FIFOs are kept.
//
// The output lists every directory before its contents, in name order,
// and writes each file's data once: further names for the same file become
// hard links to the first, so every hard link points at an entry earlier
// in the output, even when the original target was deleted or replaced by
// a later layer. The output length is a multiple of 512 bytes. File data
// is staged in tmpDir (about the size of the uncompressed layers) and
// removed afterwards. Errors: ctx's error, a malformed layer, an entry
// path escaping the root, or a hard link to a missing file or directory.
func Flatten(ctx context.Context, img v1.Image, w io.Writer, tmpDir string) error {
	spool, err := os.CreateTemp(tmpDir, "flatten-*")
	if err != nil {
		return err
	}
	defer os.Remove(spool.Name())
	defer spool.Close()
	return flatten(ctx, img, w, spool)
}

func flatten(ctx context.Context, img v1.Image, w io.Writer, spool *os.File) error {
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("reading layers: %w", err)
	}
	f := &flattener{root: newDir(tar.Header{Typeflag: tar.TypeDir, Mode: 0o755}), spool: bufio.NewWriterSize(spool, 1<<20)}
	for i, l := range layers {
		if err := f.applyLayer(ctx, l); err != nil {
			return fmt.Errorf("layer %d: %w", i+1, err)
		}
	}
	if err := f.spool.Flush(); err != nil {
		return err
	}
	cw := &countWriter{w: w}
	tw := tar.NewWriter(cw)
	if err := f.emit(ctx, tw, spool, f.root, ""); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	// tar.Writer only writes whole 512-byte blocks; keep it that way for
	// the block device even if that ever changes.
	if pad := (512 - cw.n%512) % 512; pad != 0 {
		if _, err := cw.Write(make([]byte, pad)); err != nil {
			return err
		}
	}
	return nil
}

// inode is one file's metadata and data; several names (nodes) share an
// inode when they are hard links to each other.
type inode struct {
	hdr     tar.Header // Name is unused; Size is the data length
	off     int64      // data offset in the spool
	emitted string     // output name that carried the data, once written
}

// node is a name in the flattened tree.
type node struct {
	ino      *inode
	children map[string]*node // non-nil exactly for directories
}

func newDir(h tar.Header) *node {
	return &node{ino: &inode{hdr: h}, children: map[string]*node{}}
}

type flattener struct {
	root     *node
	spool    *bufio.Writer
	spoolEnd int64
}

// entry is a layer member waiting to be applied.
type entry struct {
	name string
	hdr  tar.Header
	off  int64
}

// applyLayer reads one layer, staging file data in the spool, then applies
// its whiteouts (which only affect lower layers, wherever they appear in
// the layer) and then its entries in order.
func (f *flattener) applyLayer(ctx context.Context, l v1.Layer) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	tr := tar.NewReader(ctxReader{ctx, rc})
	var adds []entry
	var whiteouts, opaques []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "/"))
		if name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("entry %q escapes the root", h.Name)
		}
		if name == "." {
			continue // the root's own metadata is the disk's business
		}
		dir, base := path.Split(name)
		switch {
		case base == ".wh..wh..opq":
			opaques = append(opaques, dir)
			continue
		case strings.HasPrefix(base, ".wh..wh."):
			continue // other AUFS metadata, not part of the filesystem
		case strings.HasPrefix(base, ".wh."):
			whiteouts = append(whiteouts, dir+strings.TrimPrefix(base, ".wh."))
			continue
		}
		hdr, ok := cleanHeader(h)
		if !ok {
			continue
		}
		e := entry{name: name, hdr: hdr}
		if hdr.Typeflag == tar.TypeReg {
			e.off = f.spoolEnd
			n, err := io.Copy(f.spool, tr)
			if err != nil {
				return fmt.Errorf("reading %s: %w", name, err)
			}
			f.spoolEnd += n
			e.hdr.Size = n
		}
		adds = append(adds, e)
	}
	// Drain to EOF so the layer reader can check its digest and trailer.
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return err
	}
	for _, d := range opaques {
		if n, err := f.walk(d, time.Time{}, false); err == nil && n != nil {
			clear(n.children)
		}
	}
	for _, p := range whiteouts {
		dir, base := path.Split(p)
		if n, err := f.walk(dir, time.Time{}, false); err == nil && n != nil {
			delete(n.children, base)
		}
	}
	for _, e := range adds {
		if err := f.add(e); err != nil {
			return err
		}
	}
	return nil
}

// cleanHeader copies the fields of h that describe a file into a fresh
// PAX header (as archive/tar advises for forwarding headers) and reports
// whether the entry is a kind of file a root filesystem holds.
func cleanHeader(h *tar.Header) (tar.Header, bool) {
	t := h.Typeflag
	switch t {
	case tar.TypeReg, tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
	case tar.TypeRegA, tar.TypeGNUSparse:
		t = tar.TypeReg // archive/tar already expanded sparse data
	default:
		return tar.Header{}, false
	}
	n := tar.Header{
		Typeflag:   t,
		Linkname:   h.Linkname,
		Mode:       h.Mode & 0o7777, // permissions and setuid/setgid/sticky; the type is Typeflag's job
		Uid:        h.Uid,
		Gid:        h.Gid,
		Uname:      h.Uname,
		Gname:      h.Gname,
		ModTime:    h.ModTime,
		AccessTime: h.AccessTime,
		ChangeTime: h.ChangeTime,
		Devmajor:   h.Devmajor,
		Devminor:   h.Devminor,
		Format:     tar.FormatPAX,
	}
	for k, v := range h.PAXRecords {
		switch k {
		case "path", "linkpath", "size", "uid", "gid", "uname", "gname", "mtime", "atime", "ctime":
			continue // carried by the header fields above
		}
		if strings.HasPrefix(k, "GNU.sparse.") {
			continue // describes the input's encoding, not the file
		}
		if n.PAXRecords == nil {
			n.PAXRecords = map[string]string{}
		}
		n.PAXRecords[k] = v
	}
	return n, true
}

// add applies one layer entry to the tree.
func (f *flattener) add(e entry) error {
	dir, base := path.Split(e.name)
	parent, err := f.walk(dir, e.hdr.ModTime, true)
	if err != nil {
		return err
	}
	old := parent.children[base]
	switch e.hdr.Typeflag {
	case tar.TypeDir:
		if old != nil && old.children != nil {
			old.ino = &inode{hdr: e.hdr} // a directory over a directory merges
			return nil
		}
		parent.children[base] = newDir(e.hdr)
	case tar.TypeLink:
		target, err := f.lookup(path.Clean(strings.TrimPrefix(e.hdr.Linkname, "/")))
		if err != nil {
			return err
		}
		switch {
		case target == nil:
			return fmt.Errorf("hard link %s points to %s, which does not exist", e.name, e.hdr.Linkname)
		case target.children != nil:
			return fmt.Errorf("hard link %s points to directory %s", e.name, e.hdr.Linkname)
		case target == old:
			return nil
		}
		parent.children[base] = &node{ino: target.ino}
	default:
		parent.children[base] = &node{ino: &inode{hdr: e.hdr, off: e.off}}
	}
	return nil
}

// lookup returns the node at p (parents resolved through symlinks, the
// last component not followed), or nil if there is none.
func (f *flattener) lookup(p string) (*node, error) {
	dir, base := path.Split(p)
	parent, err := f.walk(dir, time.Time{}, false)
	if parent == nil || err != nil {
		return nil, err
	}
	return parent.children[base], nil
}

// walk returns the directory node at p, following symlinks within the
// root (".." stops at the root, absolute targets start from it). With
// create, missing directories are made with mode 0755 and time mtime, and
// a non-directory in the way is replaced by one; without it, nil is
// returned for a path that does not lead to a directory.
func (f *flattener) walk(p string, mtime time.Time, create bool) (*node, error) {
	comps := splitPath(p)
	stack := []*node{f.root}
	for hops := 0; len(comps) > 0; {
		c := comps[0]
		comps = comps[1:]
		cur := stack[len(stack)-1]
		switch c {
		case ".":
			continue
		case "..":
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		child := cur.children[c]
		if child != nil && child.ino.hdr.Typeflag == tar.TypeSymlink {
			if hops++; hops > 40 {
				return nil, fmt.Errorf("too many levels of symbolic links in %s", p)
			}
			target := child.ino.hdr.Linkname
			if strings.HasPrefix(target, "/") {
				stack = stack[:1]
			}
			comps = append(splitPath(target), comps...)
			continue
		}
		if child == nil || child.children == nil {
			if !create {
				return nil, nil
			}
			child = newDir(tar.Header{Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX})
			cur.children[c] = child
		}
		stack = append(stack, child)
	}
	return stack[len(stack)-1], nil
}

func splitPath(p string) []string {
	return slices.DeleteFunc(strings.Split(p, "/"), func(s string) bool { return s == "" })
}

// emit writes n's children depth-first in name order.
func (f *flattener) emit(ctx context.Context, tw *tar.Writer, spool *os.File, n *node, prefix string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	names := make([]string, 0, len(n.children))
	for name := range n.children {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		c := n.children[name]
		p := prefix + name
		h := c.ino.hdr
		switch {
		case c.children != nil:
			h.Name = p + "/"
			if err := tw.WriteHeader(&h); err != nil {
				return fmt.Errorf("writing %s: %w", p, err)
			}
			if err := f.emit(ctx, tw, spool, c, p+"/"); err != nil {
				return err
			}
			continue
		case c.ino.emitted != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeLink, c.ino.emitted, 0
		case h.Typeflag != tar.TypeReg:
			h.Size = 0
		}
		h.Name = p
		if err := tw.WriteHeader(&h); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
		if h.Typeflag == tar.TypeReg && h.Size > 0 {
			if _, err := io.Copy(tw, io.NewSectionReader(spool, c.ino.off, h.Size)); err != nil {
				return fmt.Errorf("writing %s: %w", p, err)
			}
		}
		if c.ino.emitted == "" {
			c.ino.emitted = p
		}
	}
	return nil
}
