package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gofrs/flock"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/renameio/v2"
)

const (
	// AnnotationRefName is the OCI image-spec annotation that carries an
	// image's tag on its index.json descriptor (image-spec annotations.md).
	AnnotationRefName = "org.opencontainers.image.ref.name"
	// AnnotationName carries the full normalised "NAME:TAG" on an
	// index.json descriptor; the tag alone would be ambiguous across names.
	AnnotationName = "io.machinetop.image.name"
)

// Names of the files and directories the store keeps next to the OCI
// layout (oci-layout, index.json, blobs/). The image-spec allows extra
// entries in a layout directory.
const (
	indexLockFile = "index.lock" // held exclusively while index.json is rewritten
	gcLockFile    = "gc.lock"    // shared by writers and readers of blobs, exclusive for garbage collection
	tmpDir        = "tmp"        // partial blobs and import scratch; emptied by garbage collection
	rootfsDir     = "rootfs"     // flattened root filesystem tars, by manifest digest
)

// ErrNotFound is matched (errors.Is) by every error that reports a
// reference naming no image in the store; the concrete type is
// *NotFoundError.
var ErrNotFound = errors.New("image not found")

// NotFoundError reports that Ref names no image in the store. Its message
// tells the user how to get one (image pull or image import).
type NotFoundError struct {
	// Ref is the reference as the caller gave it.
	Ref string
}

// Error names the reference and how to add an image under it.
func (e *NotFoundError) Error() string {
	if strings.HasPrefix(e.Ref, "sha256:") {
		return fmt.Sprintf("no image has digest %s; \"machinetop image ls\" lists the images", e.Ref)
	}
	name := "NAME"
	if n, t, err := ParseRef(e.Ref); err == nil {
		name = n + ":" + t
	}
	return fmt.Sprintf("image %q not found; get it with \"machinetop image pull %s\" or \"machinetop image import FILE %s\"", e.Ref, name, name)
}

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// AmbiguousError reports that a digest prefix matches more than one image.
type AmbiguousError struct {
	// Prefix is the digest prefix as the caller gave it.
	Prefix string
	// Digests are the matching manifest digests, sorted.
	Digests []v1.Hash
}

// Error lists the matching digests, 12 hex digits each.
func (e *AmbiguousError) Error() string {
	s := make([]string, len(e.Digests))
	for i, d := range e.Digests {
		s[i] = d.Hex[:12]
	}
	return fmt.Sprintf("digest prefix %q is ambiguous: it matches images %s; give more digits", e.Prefix, strings.Join(s, ", "))
}

// Image describes one tagged image in the store. An image with several
// tags appears once per tag.
type Image struct {
	// Name is the normalised repository name, e.g. "debian" or
	// "example.com/team/app".
	Name string
	// Tag is the tag, e.g. "bookworm"; never empty.
	Tag string
	// Digest is the digest of the image manifest (OCI image-spec
	// manifest.md), which identifies the image.
	Digest v1.Hash
	// Size is the stored size in bytes: the compressed layers plus the
	// config blob, as listed in the manifest.
	Size int64
	// Created is the creation time recorded in the image config; zero if
	// the config has none.
	Created time.Time
	// Platform is "os/arch", or "os/arch/variant" when the config names a
	// variant, e.g. "linux/amd64" or "linux/arm64/v8".
	Platform string
}

// Ref returns "NAME:TAG".
func (i Image) Ref() string { return i.Name + ":" + i.Tag }

// Store is an image store kept as an OCI image layout directory
// (OCI image-spec image-layout.md): blobs under blobs/sha256, one
// index.json descriptor per tag. Its methods are safe for concurrent use
// by goroutines and by processes sharing the directory: index.json is
// replaced atomically under a file lock, and blobs are complete before any
// index entry points at them, so an interrupted write leaves at most
// unreferenced blobs, which the next garbage collection removes.
type Store struct {
	root   string
	layout layout.Path
}

// Open opens the image store in directory root, creating the directory and
// an empty OCI image layout in it if needed. It fails if root holds an
// oci-layout file of an unsupported version.
func Open(root string) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	s := &Store{root: abs, layout: layout.Path(abs)}
	for _, d := range []string{filepath.Join("blobs", "sha256"), tmpDir, rootfsDir} {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o755); err != nil {
			return nil, fmt.Errorf("creating image store: %w", err)
		}
	}
	lf := filepath.Join(abs, "oci-layout")
	switch b, err := os.ReadFile(lf); {
	case errors.Is(err, os.ErrNotExist):
		if err := renameio.WriteFile(lf, []byte(`{"imageLayoutVersion":"1.0.0"}`+"\n"), 0o644); err != nil {
			return nil, fmt.Errorf("creating image store: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("opening image store: %w", err)
	default:
		var l struct {
			Version string `json:"imageLayoutVersion"`
		}
		if err := json.Unmarshal(b, &l); err != nil || !strings.HasPrefix(l.Version, "1.") {
			return nil, fmt.Errorf("opening image store: %s is not an OCI image layout version 1.x", lf)
		}
	}
	if _, err := os.Stat(filepath.Join(abs, "index.json")); errors.Is(err, os.ErrNotExist) {
		// An empty index keeps the directory a valid layout for other tools.
		err := s.updateIndex(context.Background(), func(*v1.IndexManifest) error { return nil })
		if err != nil {
			return nil, fmt.Errorf("creating image store: %w", err)
		}
	}
	return s, nil
}

// Root returns the store's directory as an absolute path.
func (s *Store) Root() string { return s.root }

// List returns every tagged image, one entry per tag, sorted by name and
// then tag. Entries whose manifest or config cannot be read are reported
// as an error rather than skipped.
func (s *Store) List() ([]Image, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	var out []Image
	for _, d := range idx.Manifests {
		name, tag := entryName(d)
		if name == "" {
			continue // not ours to show: no name
		}
		im, _, err := s.describe(name, tag, d)
		if err != nil {
			return nil, err
		}
		out = append(out, im)
	}
	slices.SortFunc(out, func(a, b Image) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Tag, b.Tag)
	})
	return out, nil
}

// Resolve finds the image ref addresses: "NAME[:TAG]" (tag defaults to
// latest), or a manifest digest prefix, "sha256:HEX" or bare HEX of at
// least 4 hex digits. A name wins over a digest prefix spelt the same way,
// as in Docker. A digest matching several tags returns the first by name.
// Errors: *NotFoundError (errors.Is ErrNotFound) when nothing matches,
// *AmbiguousError when a prefix matches several images, or an I/O error.
// The v1.Image reads its blobs lazily from the store.
func (s *Store) Resolve(ref string) (Image, v1.Image, error) {
	idx, err := s.readIndex()
	if err != nil {
		return Image{}, nil, err
	}
	i, err := match(idx, ref)
	if err != nil {
		return Image{}, nil, err
	}
	d := idx.Manifests[i[0]]
	name, tag := entryName(d)
	return s.describe(name, tag, d)
}

// Put stores img under ref ("NAME[:TAG]") and returns its description.
// Blobs are written first, each verified against its digest and renamed
// into place; index.json is updated last. If ref already names an image,
// the tag moves to img; the old image is garbage-collected once no tag
// refers to it. Put follows the OCI image-spec image-layout.md; img may
// use OCI or Docker schema 2 media types and is stored unchanged, so its
// digest is preserved. Errors: an invalid ref, ctx's error if cancelled,
// or failures reading img or writing the store.
func (s *Store) Put(ctx context.Context, img v1.Image, ref string) (Image, error) {
	name, tag, err := ParseRef(ref)
	if err != nil {
		return Image{}, err
	}
	unlock, err := s.lock(ctx, gcLockFile, true)
	if err != nil {
		return Image{}, err
	}
	im, displaced, err := s.put(ctx, img, name, tag)
	unlock()
	if err != nil || displaced {
		// Drop the blobs of a failed write or of an image that lost its last
		// tag, unless another process holds the store busy; then the next
		// collection does it.
		_ = s.tryGC() // best effort; a later collection retries
	}
	return im, err
}

// put writes img and tags it; the caller holds the shared gc lock.
// displaced reports that the tag moved away from another image that now has
// no tag.
func (s *Store) put(ctx context.Context, img v1.Image, name, tag string) (_ Image, displaced bool, _ error) {
	desc, err := s.writeImage(ctx, img)
	if err != nil {
		return Image{}, false, err
	}
	full := name + ":" + tag
	desc.Annotations = map[string]string{AnnotationRefName: tag, AnnotationName: full}
	err = s.updateIndex(ctx, func(idx *v1.IndexManifest) error {
		var old *v1.Hash
		kept := idx.Manifests[:0]
		for _, d := range idx.Manifests {
			if n, t := entryName(d); n+":"+t == full {
				old = &d.Digest
				continue
			}
			kept = append(kept, d)
		}
		idx.Manifests = append(kept, desc)
		if old != nil && *old != desc.Digest {
			displaced = !slices.ContainsFunc(idx.Manifests, func(d v1.Descriptor) bool { return d.Digest == *old })
		}
		return nil
	})
	if err != nil {
		return Image{}, false, err
	}
	im, _, err := s.describe(name, tag, desc)
	return im, displaced, err
}

// writeImage writes img's layers, config and manifest blobs and returns
// the manifest's descriptor (without annotations).
func (s *Store) writeImage(ctx context.Context, img v1.Image) (v1.Descriptor, error) {
	mt, err := img.MediaType()
	if err != nil {
		return v1.Descriptor{}, err
	}
	if mt != types.OCIManifestSchema1 && mt != types.DockerManifestSchema2 {
		return v1.Descriptor{}, fmt.Errorf("unsupported manifest media type %q: want an OCI or Docker schema 2 image manifest", mt)
	}
	layers, err := img.Layers()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("reading image layers: %w", err)
	}
	for _, l := range layers {
		// Streaming layers learn their digest only once read; a zero hash
		// makes writeBlob accept whatever it computes.
		want, err := l.Digest()
		if err != nil {
			want = v1.Hash{}
		}
		if want.Hex != "" {
			// Do not even open a layer the store has: for a remote image
			// that would start a download.
			if _, err := os.Stat(s.blobPath(want)); err == nil {
				continue
			}
		}
		rc, err := l.Compressed()
		if err != nil {
			return v1.Descriptor{}, fmt.Errorf("reading layer %s: %w", want, err)
		}
		_, err = s.writeBlob(ctx, want, rc)
		rc.Close()
		if err != nil {
			return v1.Descriptor{}, fmt.Errorf("writing layer %s: %w", want, err)
		}
	}
	// The config is stored under the digest the manifest names and must
	// hash to it: ConfigName hashes whatever the config blob holds, which
	// for an image read from a layout need not be what the manifest says.
	m, err := img.Manifest()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("reading image manifest: %w", err)
	}
	cfgName := m.Config.Digest
	if cfgName.Hex == "" {
		return v1.Descriptor{}, errors.New("the image manifest names no config")
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("reading image config: %w", err)
	}
	// An index entry whose config does not parse would break List.
	cf, err := v1.ParseConfigFile(bytes.NewReader(cfg))
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("reading image config: %w", err)
	}
	if _, err := s.writeBlob(ctx, cfgName, bytes.NewReader(cfg)); err != nil {
		return v1.Descriptor{}, fmt.Errorf("writing image config: %w", err)
	}
	raw, err := img.RawManifest()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("reading image manifest: %w", err)
	}
	d, err := s.writeBlob(ctx, v1.Hash{}, bytes.NewReader(raw))
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("writing image manifest: %w", err)
	}
	desc := v1.Descriptor{MediaType: mt, Size: int64(len(raw)), Digest: d}
	if cf.OS != "" {
		desc.Platform = &v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
	}
	return desc, nil
}

// writeBlob copies r into the blob store and returns its sha256 digest. If
// want is non-zero the content must hash to it. A blob that already exists
// is trusted (blobs only ever appear by rename after verification) and r is
// not read. The caller holds the shared gc lock.
func (s *Store) writeBlob(ctx context.Context, want v1.Hash, r io.Reader) (v1.Hash, error) {
	if want.Hex != "" {
		if want.Algorithm != "sha256" {
			return v1.Hash{}, fmt.Errorf("unsupported digest algorithm %q", want.Algorithm)
		}
		if _, err := os.Stat(s.blobPath(want)); err == nil {
			return want, nil
		}
	}
	f, err := os.CreateTemp(filepath.Join(s.root, tmpDir), "blob-*")
	if err != nil {
		return v1.Hash{}, err
	}
	defer os.Remove(f.Name()) // fails harmlessly after the rename
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), ctxReader{ctx, r}); err != nil {
		return v1.Hash{}, err
	}
	got := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
	if want.Hex != "" && got != want {
		return v1.Hash{}, fmt.Errorf("content does not match its digest (it hashes to %s)", got)
	}
	if err := f.Chmod(0o644); err != nil {
		return v1.Hash{}, err
	}
	if err := f.Sync(); err != nil {
		return v1.Hash{}, err
	}
	if err := f.Close(); err != nil {
		return v1.Hash{}, err
	}
	return got, os.Rename(f.Name(), s.blobPath(got))
}

func (s *Store) blobPath(h v1.Hash) string {
	return filepath.Join(s.root, "blobs", h.Algorithm, h.Hex)
}

// Remove deletes what ref addresses: given "NAME[:TAG]" it removes that tag;
// given a digest prefix it removes the image with every tag it has. Blobs
// and cached root filesystem tars no longer referenced by any tag are then
// deleted; if another process is writing to the store at that moment, the
// deletion is left to the next collection rather than waiting for it.
// Errors: *NotFoundError, *AmbiguousError, or an I/O error.
func (s *Store) Remove(ref string) error {
	err := s.updateIndex(context.Background(), func(idx *v1.IndexManifest) error {
		hits, err := match(idx, ref)
		if err != nil {
			return err
		}
		kept := idx.Manifests[:0]
		for i, d := range idx.Manifests {
			if !slices.Contains(hits, i) {
				kept = append(kept, d)
			}
		}
		idx.Manifests = kept
		return nil
	})
	if err != nil {
		return err
	}
	if err := s.tryGC(); err != nil {
		return fmt.Errorf("removed %s, but deleting its unused data failed: %w", ref, err)
	}
	return nil
}

// match returns the indexes into idx.Manifests that ref addresses: one for
// a name, all entries of the image for a digest prefix.
func match(idx *v1.IndexManifest, ref string) ([]int, error) {
	if name, tag, err := ParseRef(ref); err == nil {
		for i, d := range idx.Manifests {
			if n, t := entryName(d); n == name && t == tag {
				return []int{i}, nil
			}
		}
	}
	prefix, ok := digestPrefix(ref)
	if !ok {
		return nil, &NotFoundError{Ref: ref}
	}
	var hits []int
	var digests []v1.Hash
	for i, d := range idx.Manifests {
		if n, _ := entryName(d); n == "" || !strings.HasPrefix(d.Digest.Hex, prefix) {
			continue
		}
		hits = append(hits, i)
		if !slices.Contains(digests, d.Digest) {
			digests = append(digests, d.Digest)
		}
	}
	switch {
	case len(digests) == 0:
		return nil, &NotFoundError{Ref: ref}
	case len(digests) > 1:
		slices.SortFunc(digests, func(a, b v1.Hash) int { return strings.Compare(a.Hex, b.Hex) })
		return nil, &AmbiguousError{Prefix: ref, Digests: digests}
	}
	// Put the alphabetically first tag first so Resolve is deterministic.
	slices.SortFunc(hits, func(a, b int) int {
		na, ta := entryName(idx.Manifests[a])
		nb, tb := entryName(idx.Manifests[b])
		return strings.Compare(na+":"+ta, nb+":"+tb)
	})
	return hits, nil
}

// entryName returns the name and tag of an index.json entry: from our
// annotation, else from an image-spec ref.name holding a full reference;
// "" if the entry has neither.
func entryName(d v1.Descriptor) (name, tag string) {
	if full, ok := d.Annotations[AnnotationName]; ok {
		if n, t, err := ParseRef(full); err == nil {
			return n, t
		}
	}
	if r, ok := d.Annotations[AnnotationRefName]; ok && strings.Contains(r, "/") {
		if n, t, err := ParseRef(r); err == nil {
			return n, t
		}
	}
	return "", ""
}

// describe builds an Image for index entry d and opens it.
func (s *Store) describe(name, tag string, d v1.Descriptor) (Image, v1.Image, error) {
	img, err := s.layout.Image(d.Digest)
	if err != nil {
		return Image{}, nil, fmt.Errorf("reading image %s:%s: %w", name, tag, err)
	}
	m, err := img.Manifest()
	if err != nil {
		return Image{}, nil, fmt.Errorf("reading manifest of %s:%s: %w", name, tag, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return Image{}, nil, fmt.Errorf("reading config of %s:%s: %w", name, tag, err)
	}
	im := Image{Name: name, Tag: tag, Digest: d.Digest, Size: m.Config.Size, Created: cf.Created.Time}
	for _, l := range m.Layers {
		im.Size += l.Size
	}
	im.Platform = cf.OS + "/" + cf.Architecture
	if cf.Variant != "" {
		im.Platform += "/" + cf.Variant
	}
	return im, img, nil
}

func (s *Store) readIndex() (*v1.IndexManifest, error) {
	f, err := os.Open(filepath.Join(s.root, "index.json"))
	if errors.Is(err, os.ErrNotExist) {
		return &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	idx, err := v1.ParseIndexManifest(f)
	if err != nil {
		return nil, fmt.Errorf("reading image store index %s: %w", f.Name(), err)
	}
	return idx, nil
}

// updateIndex applies fn to index.json under the index lock and replaces
// the file atomically. If fn fails nothing is written.
func (s *Store) updateIndex(ctx context.Context, fn func(*v1.IndexManifest) error) error {
	unlock, err := s.lock(ctx, indexLockFile, false)
	if err != nil {
		return err
	}
	defer unlock()
	idx, err := s.readIndex()
	if err != nil {
		return err
	}
	if err := fn(idx); err != nil {
		return err
	}
	if idx.Manifests == nil {
		idx.Manifests = []v1.Descriptor{} // the spec requires the array
	}
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	return renameio.WriteFile(filepath.Join(s.root, "index.json"), append(b, '\n'), 0o644)
}

// lock takes a file lock in the store directory, waiting until it is free
// or ctx ends, and returns its release function.
func (s *Store) lock(ctx context.Context, name string, shared bool) (func(), error) {
	// A fresh Flock per acquisition: flock(2) locks belong to the open file,
	// so goroutines of one process exclude each other like processes do.
	fl := flock.New(filepath.Join(s.root, name))
	try := fl.TryLockContext
	if shared {
		try = fl.TryRLockContext
	}
	ok, err := try(ctx, 10*time.Millisecond)
	if err == nil && !ok {
		err = ctx.Err()
	}
	if err != nil {
		fl.Close()
		return nil, fmt.Errorf("locking image store %s: %w", s.root, err)
	}
	return func() { fl.Close() }, nil
}

// tryGC collects garbage unless another writer or reader holds the store
// busy; skipping is safe because the next collection finds the same
// garbage, and it keeps a removal from waiting behind a long import.
func (s *Store) tryGC() error {
	fl := flock.New(filepath.Join(s.root, gcLockFile))
	if ok, err := fl.TryLock(); err != nil || !ok {
		return nil
	}
	defer fl.Close()
	return s.gc()
}

// gc deletes blobs no index entry reaches, root filesystem tars of images no
// longer in the index, and scratch files. The caller holds the gc lock
// exclusively, so no write or flatten is in flight.
func (s *Store) gc() error {
	idx, err := s.readIndex()
	if err != nil {
		return err
	}
	live := map[string]bool{}
	images := map[string]bool{}
	for _, d := range idx.Manifests {
		images[d.Digest.Hex] = true
		if err := s.mark(d, live); err != nil {
			return err
		}
	}
	blobs := filepath.Join(s.root, "blobs", "sha256")
	ents, err := os.ReadDir(blobs)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !live[e.Name()] {
			if err := os.Remove(filepath.Join(blobs, e.Name())); err != nil {
				return err
			}
		}
	}
	ents, err = os.ReadDir(filepath.Join(s.root, rootfsDir))
	if err != nil {
		return err
	}
	for _, e := range ents {
		if hex, ok := strings.CutSuffix(e.Name(), ".tar"); !ok || !images[hex] {
			if err := os.RemoveAll(filepath.Join(s.root, rootfsDir, e.Name())); err != nil {
				return err
			}
		}
	}
	ents, err = os.ReadDir(filepath.Join(s.root, tmpDir))
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(s.root, tmpDir, e.Name())); err != nil {
			return err
		}
	}
	// Leftovers of an index.json write that died before its rename.
	stale, _ := filepath.Glob(filepath.Join(s.root, ".index.json.tmp-*"))
	for _, f := range stale {
		os.Remove(f)
	}
	return nil
}

// mark adds d and every blob it references to live. A manifest that
// cannot be read stops collection rather than losing its blobs.
func (s *Store) mark(d v1.Descriptor, live map[string]bool) error {
	if live[d.Digest.Hex] {
		return nil
	}
	live[d.Digest.Hex] = true
	switch d.MediaType {
	case types.OCIImageIndex, types.DockerManifestList:
		b, err := os.ReadFile(s.blobPath(d.Digest))
		if err != nil {
			return err
		}
		idx, err := v1.ParseIndexManifest(bytes.NewReader(b))
		if err != nil {
			return fmt.Errorf("reading index %s: %w", d.Digest, err)
		}
		for _, c := range idx.Manifests {
			if err := s.mark(c, live); err != nil {
				return err
			}
		}
	case types.OCIManifestSchema1, types.DockerManifestSchema2:
		b, err := os.ReadFile(s.blobPath(d.Digest))
		if err != nil {
			return err
		}
		m, err := v1.ParseManifest(bytes.NewReader(b))
		if err != nil {
			return fmt.Errorf("reading manifest %s: %w", d.Digest, err)
		}
		live[m.Config.Digest.Hex] = true
		for _, l := range m.Layers {
			live[l.Digest.Hex] = true
		}
	}
	return nil
}

// ctxReader fails reads once ctx is done, so long copies stop promptly.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
