package images

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// AcceptedFormats describes, for error messages, what Import reads.
const AcceptedFormats = `a root filesystem tar (plain, gzip, zstd, xz or bzip2), ` +
	`a "docker save" tar, or an OCI image layout (a directory or a tar of one)`

// ImportOptions configure Import.
type ImportOptions struct {
	// Platform is the platform of the image to import; nil means
	// HostPlatform. A root filesystem tar is labelled with it, and of an
	// OCI layout holding several images the one for it is taken. An image
	// whose config names another platform is refused when Platform is
	// set, and taken as it is when Platform is nil.
	Platform *v1.Platform
}

// Import adds the image in file or directory path to the store under ref
// ("NAME[:TAG]") and returns it. The format is detected from the content:
//
//   - an OCI image layout directory, or a tar of one (an oci-layout file at
//     its top; OCI image-spec image-layout.md). If its index holds several
//     images, the one for opts.Platform (linux on the host architecture by
//     default) is taken.
//   - a "docker save" tar (manifest.json at its top; Docker image spec
//     v1.2 combined format), holding exactly one image.
//   - anything else that is a tar, optionally gzip, zstd, xz or bzip2
//     compressed, is a root filesystem, as with "docker import": it becomes
//     a one-layer image for opts.Platform (linux on the host architecture
//     by default), its config carrying a history entry that names the
//     file.
//
// Any of these tars may itself be compressed. A file that is not one of
// these, or is truncated or corrupt, gives an error naming path and
// AcceptedFormats and leaves the store's index unchanged; blobs written
// before the failure are garbage-collected. Other errors: an invalid ref,
// an image for another platform than opts.Platform, ctx's error if
// cancelled.
func (s *Store) Import(ctx context.Context, path, ref string, opts ImportOptions) (Image, error) {
	name, tag, err := ParseRef(ref)
	if err != nil {
		return Image{}, err
	}
	plat := HostPlatform()
	if opts.Platform != nil {
		plat = *opts.Platform
	}
	unlock, err := s.lock(ctx, gcLockFile, true)
	if err != nil {
		return Image{}, err
	}
	scratch, err := os.MkdirTemp(filepath.Join(s.root, tmpDir), "import-*")
	if err != nil {
		unlock()
		return Image{}, err
	}
	img, err := s.openImport(ctx, path, scratch, plat)
	if err == nil && opts.Platform != nil {
		if perr := checkImagePlatform(img, plat); perr != nil {
			err = fmt.Errorf("import %s: %w", path, perr)
		}
	}
	var im Image
	var displaced bool
	if err == nil {
		im, displaced, err = s.put(ctx, img, name, tag)
		var pe *fs.PathError
		switch {
		case err == nil || ctx.Err() != nil:
		case errors.As(err, &pe):
			// The store's disk, not the file's content.
			err = fmt.Errorf("import %s: %w", path, err)
		default:
			err = fmt.Errorf("import %s: %w; accepted formats: %s", path, err, AcceptedFormats)
		}
	}
	os.RemoveAll(scratch)
	unlock()
	if err != nil || displaced {
		_ = s.tryGC() // best effort; a later collection retries
	}
	return im, err
}

// openImport detects path's format and opens the image in it, using
// scratch for temporary files; plat is the platform a root filesystem is
// labelled with and picks among the images of a layout.
func (s *Store) openImport(ctx context.Context, p, scratch string, plat v1.Platform) (v1.Image, error) {
	unrecognised := func(why error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("import %s: %w; accepted formats: %s", p, why, AcceptedFormats)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	if fi.IsDir() {
		if _, err := os.Stat(filepath.Join(p, "oci-layout")); err != nil {
			return nil, unrecognised(errors.New("directory has no oci-layout file"))
		}
		img, err := imageFromLayout(p, plat)
		if err != nil {
			return nil, unrecognised(err)
		}
		return img, nil
	}
	kind, err := scanTar(ctx, p)
	if err != nil {
		return nil, unrecognised(err)
	}
	var img v1.Image
	switch kind {
	case kindOCI:
		dir := filepath.Join(scratch, "layout")
		if err = extractTar(ctx, p, dir); err == nil {
			img, err = imageFromLayout(dir, plat)
		}
	case kindDockerSave:
		img, err = tarball.Image(func() (io.ReadCloser, error) { return openDecompressed(p) }, nil)
		if err == nil {
			// Surface a broken manifest.json or config now, not mid-write.
			_, err = img.ConfigFile()
		}
		if err != nil {
			err = fmt.Errorf("reading \"docker save\" tar: %w", err)
		}
	default:
		img, err = s.rootfsImage(ctx, p, scratch, plat)
	}
	if err != nil {
		return nil, unrecognised(err)
	}
	return img, nil
}

type tarKind int

const (
	kindRootfs tarKind = iota
	kindDockerSave
	kindOCI
)

// scanTar reads every header of the (possibly compressed) tar at p, which
// proves it is a whole tar, and tells which kind it is from its top-level
// files.
func scanTar(ctx context.Context, p string) (tarKind, error) {
	rc, err := openDecompressed(p)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	tr := tar.NewReader(ctxReader{ctx, rc})
	top := map[string]bool{}
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("not a valid tar archive: %w", err)
		}
		n++
		top[cleanName(h.Name)] = true
	}
	if n == 0 {
		return 0, errors.New("the archive is empty")
	}
	// Reading on to the end checks a compressed stream's trailer.
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return 0, fmt.Errorf("reading to the end: %w", err)
	}
	switch {
	case top["oci-layout"] && top["index.json"]:
		// Docker 25+ "docker save" writes both; the OCI view keeps digests.
		return kindOCI, nil
	case top["manifest.json"]:
		return kindDockerSave, nil
	}
	return kindRootfs, nil
}

// cleanName turns a tar member name into a slash path relative to the
// archive root: "./etc/" and "/etc" become "etc", the root becomes ".".
func cleanName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// openDecompressed opens file p and undoes gzip, zstd, xz or bzip2
// compression, recognised by magic number. An uncompressed file is
// returned as the *os.File itself so tar readers can seek over contents.
func openDecompressed(p string) (io.ReadCloser, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	r, err := Decompress(bufio.NewReaderSize(f, 64<<10))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("bad compressed stream: %w", err)
	}
	return readCloser{r, f}, nil
}

// Decompress returns a reader of br's content decompressed when it starts
// with the magic number of gzip (RFC 1952), zstd (RFC 8878), xz or bzip2,
// and br itself otherwise. It returns the decompressor's error for a
// damaged header.
func Decompress(br *bufio.Reader) (io.Reader, error) {
	magic, _ := br.Peek(6)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return gzip.NewReader(br)
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		d, err := zstd.NewReader(br)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return xz.NewReader(br)
	case bytes.HasPrefix(magic, []byte("BZh")):
		return bzip2.NewReader(br), nil
	}
	return br, nil
}

// readCloser reads from a decompressor and closes it and the file below.
type readCloser struct {
	io.Reader
	f *os.File
}

func (r readCloser) Close() error {
	if c, ok := r.Reader.(io.Closer); ok {
		c.Close()
	}
	return r.f.Close()
}

// extractTar unpacks the regular files and directories of the (possibly
// compressed) tar at p into dir; that is all an OCI layout holds.
func extractTar(ctx context.Context, p, dir string) error {
	rc, err := openDecompressed(p)
	if err != nil {
		return err
	}
	defer rc.Close()
	tr := tar.NewReader(ctxReader{ctx, rc})
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := cleanName(h.Name)
		if name == "." {
			continue
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(dst, 0o755)
		case tar.TypeReg:
			err = writeFileFrom(dst, tr)
		}
		if err != nil {
			return err
		}
	}
}

func writeFileFrom(dst string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// HostPlatform is the platform images are chosen for and imported root
// filesystems are labelled with: linux on the host's architecture
// (machines run Linux whatever the host OS is).
func HostPlatform() v1.Platform { return LinuxPlatform(runtime.GOARCH) }

// LinuxPlatform is the platform of linux images for the GOARCH arch, with
// the variant registries list for it ("v8" for arm64, as image-spec's
// image-index.md recommends).
func LinuxPlatform(arch string) v1.Platform {
	p := v1.Platform{OS: "linux", Architecture: arch}
	if p.Architecture == "arm64" {
		p.Variant = "v8"
	}
	return p
}

// imageFromLayout picks the image to import from the OCI layout in dir:
// the only image in it, else the only one for host (the platform asked
// for).
func imageFromLayout(dir string, host v1.Platform) (v1.Image, error) {
	ii, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("reading OCI layout: %w", err)
	}
	var cands []candidate
	if err := collectImages(ii, &cands, 0); err != nil {
		return nil, fmt.Errorf("reading OCI layout: %w", err)
	}
	switch len(cands) {
	case 0:
		return nil, errors.New("the OCI layout holds no image")
	case 1:
		return cands[0].img, nil
	}
	var hits []candidate
	var seen []string
	for _, c := range cands {
		seen = append(seen, c.platform.String())
		if platformMatches(c.platform, host) {
			hits = append(hits, c)
		}
	}
	switch len(hits) {
	case 0:
		return nil, fmt.Errorf("the OCI layout has no image for %s (it has %s)", host.String(), strings.Join(seen, ", "))
	case 1:
		return hits[0].img, nil
	}
	return nil, fmt.Errorf("the OCI layout has %d images for %s; import a layout holding one", len(hits), host.String())
}

// checkImagePlatform returns an error when img's config names another
// platform than want.
func checkImagePlatform(img v1.Image, want v1.Platform) error {
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("reading the image config: %w", err)
	}
	got := v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
	if cf.OS != "" && !platformMatches(got, want) {
		return fmt.Errorf("the image is for %s, not %s", got.String(), want.String())
	}
	return nil
}

type candidate struct {
	img      v1.Image
	platform v1.Platform
}

// collectImages gathers the runnable images of ii and its nested indexes.
// Attestation manifests (platform unknown/unknown) are skipped.
func collectImages(ii v1.ImageIndex, out *[]candidate, depth int) error {
	if depth > 4 {
		return errors.New("image indexes nested too deeply")
	}
	m, err := ii.IndexManifest()
	if err != nil {
		return err
	}
	for _, d := range m.Manifests {
		switch d.MediaType {
		case types.OCIImageIndex, types.DockerManifestList:
			child, err := ii.ImageIndex(d.Digest)
			if err != nil {
				return err
			}
			if err := collectImages(child, out, depth+1); err != nil {
				return err
			}
		case types.OCIManifestSchema1, types.DockerManifestSchema2:
			img, err := ii.Image(d.Digest)
			if err != nil {
				return err
			}
			var p v1.Platform
			if d.Platform != nil {
				p = *d.Platform
			} else {
				cf, err := img.ConfigFile()
				if err != nil {
					return fmt.Errorf("reading config of %s: %w", d.Digest, err)
				}
				p = v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
			}
			if p.OS == "unknown" {
				continue
			}
			*out = append(*out, candidate{img, p})
		}
	}
	return nil
}

// rootfsImage turns the root filesystem tar at p into a one-layer image
// for platform host. In one pass it checks the tar, gzips it into scratch
// and hashes both forms, so the layer is compressed once.
func (s *Store) rootfsImage(ctx context.Context, p, scratch string, host v1.Platform) (v1.Image, error) {
	src, err := openDecompressed(p)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	// Check that it is a tar while it streams into the layer file, so it
	// is read and compressed once.
	pr, pw := io.Pipe()
	go func() {
		tee := io.TeeReader(ctxReader{ctx, src}, pw)
		tr := tar.NewReader(tee)
		for {
			_, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				pw.CloseWithError(fmt.Errorf("not a valid tar archive: %w", err))
				return
			}
		}
		// The layer is the whole stream, end-of-archive padding included.
		if _, err := io.Copy(io.Discard, tee); err != nil {
			pw.CloseWithError(fmt.Errorf("reading to the end: %w", err))
			return
		}
		pw.Close()
	}()
	l, err := NewFileLayer(pr, scratch)
	pr.Close()
	if err != nil {
		return nil, err
	}

	now := time.Now().UTC().Truncate(time.Second)
	cfg := &v1.ConfigFile{
		Created:      v1.Time{Time: now},
		OS:           host.OS,
		Architecture: host.Architecture,
		Variant:      host.Variant,
		Config: v1.Config{
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
	base, err := mutate.ConfigFile(mutate.MediaType(empty.Image, types.OCIManifestSchema1), cfg)
	if err != nil {
		return nil, err
	}
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	return mutate.Append(base, mutate.Addendum{
		Layer: l,
		History: v1.History{
			Created:   v1.Time{Time: now},
			CreatedBy: "machinetop image import",
			Comment:   "imported from " + filepath.Base(p),
		},
	})
}
