package images

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/machinetop/machinetop/images/progress"
)

// PullOptions are the parameters of Store.Pull. The zero value pulls the
// HostPlatform image over HTTPS with credentials from the Docker config.
type PullOptions struct {
	// Platform selects the image of a multi-platform index; nil means
	// HostPlatform. An image that is not an index must match it too.
	Platform *v1.Platform
	// Insecure allows plain HTTP and unverified TLS certificates for the
	// registry named in the reference, and for no other. Loopback
	// registries (localhost, 127.0.0.0/8, ::1) speak plain HTTP anyway.
	Insecure bool
	// Keychain supplies registry credentials; nil means
	// authn.DefaultKeychain (the Docker config file and its credential
	// helpers).
	Keychain authn.Keychain
	// Emit, if set, receives progress events: KindBytes for every layer as
	// it downloads (Done/Size in bytes; Done == Size once stored, also for
	// layers skipped because the store has them) and KindLog lines. It is
	// called from several goroutines, one at a time.
	Emit func(progress.Event)
	// Jobs is how many layers download at once; 0 means 3.
	Jobs int
}

// PullResult describes a finished pull.
type PullResult struct {
	// Image is the stored image, tagged as the reference's NAME:TAG (a
	// digest reference gets the tag "sha256-HEX").
	Image Image
	// Fetched and Skipped count layers downloaded and layers the store
	// already held; FetchedBytes is the compressed size downloaded.
	Fetched, Skipped int
	FetchedBytes     int64
}

// NormalizeRemote parses an image reference the way Docker does for pulls
// (Docker Hub short names: "ubuntu:24.04" is
// "index.docker.io/library/ubuntu:24.04"; the tag defaults to latest;
// "NAME@sha256:…" pins a manifest digest). insecure marks the reference's
// registry as one that may use plain HTTP. Errors describe an invalid
// reference.
func NormalizeRemote(ref string, insecure bool) (name.Reference, error) {
	opts := []name.Option{name.WithDefaultRegistry(name.DefaultRegistry)}
	if insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("invalid image reference %q: %w", ref, err)
	}
	return r, nil
}

// LocalName returns the store's NAME:TAG for remote reference r: the
// repository in Docker's short spelling (ParseRef) and the tag, or
// "sha256-HEX" for a digest reference.
func LocalName(r name.Reference) (string, error) {
	repo := r.Context().Name()
	tag := DefaultTag
	switch t := r.(type) {
	case name.Tag:
		tag = t.TagStr()
	case name.Digest:
		tag = strings.ReplaceAll(t.DigestStr(), ":", "-")
	}
	n, tg, err := ParseRef(repo + ":" + tag)
	if err != nil {
		return "", err
	}
	return n + ":" + tg, nil
}

// LooksPullable reports whether ref is an image reference that Pull could
// fetch: a valid NAME[:TAG] or NAME@DIGEST, and not a bare digest prefix,
// which can only mean a local image.
func LooksPullable(ref string) bool {
	if _, ok := digestPrefix(ref); ok {
		return false
	}
	_, err := NormalizeRemote(ref, false)
	return err == nil
}

// Pull fetches the image ref names from its registry (OCI
// distribution-spec) into the store and tags it with LocalName(ref). A
// multi-platform index (OCI image index or Docker manifest list) is
// resolved to opts.Platform. Layers whose blobs the store already holds
// are not downloaded; each downloaded blob is verified against its digest
// and renamed into place when complete, so an interrupted pull leaves the
// store consistent and the next pull skips the finished layers. The tag is
// written last. Errors: an invalid reference, registry and authentication
// errors (wrapped as returned by go-containerregistry), no image for the
// platform, digest mismatches, ctx's error.
func (s *Store) Pull(ctx context.Context, ref string, opts PullOptions) (PullResult, error) {
	r, err := NormalizeRemote(ref, opts.Insecure)
	if err != nil {
		return PullResult{}, err
	}
	local, err := LocalName(r)
	if err != nil {
		return PullResult{}, err
	}
	plat := HostPlatform()
	if opts.Platform != nil {
		plat = *opts.Platform
	}
	emit := func(progress.Event) {}
	if opts.Emit != nil {
		var mu sync.Mutex
		emit = func(e progress.Event) { mu.Lock(); defer mu.Unlock(); opts.Emit(e) }
	}
	kc := opts.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc), remote.WithPlatform(plat)}
	if opts.Insecure {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
		ropts = append(ropts, remote.WithTransport(onlyHost(r.Context().RegistryStr(), tr)))
	}
	desc, err := remote.Get(r, ropts...)
	if err != nil {
		return PullResult{}, fmt.Errorf("pulling %s: %w", r, ctxOr(ctx, err))
	}
	img, err := desc.Image() // resolves an index to plat
	if err != nil {
		return PullResult{}, fmt.Errorf("pulling %s for %s: %w", r, plat.String(), ctxOr(ctx, err))
	}
	if !desc.MediaType.IsIndex() {
		cf, err := img.ConfigFile()
		if err != nil {
			return PullResult{}, fmt.Errorf("pulling %s: reading config: %w", r, ctxOr(ctx, err))
		}
		got := v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
		if cf.OS != "" && !platformMatches(got, plat) {
			return PullResult{}, fmt.Errorf("pulling %s: the image is for %s, not %s (use --platform)", r, got.String(), plat.String())
		}
	}
	mt, err := img.MediaType()
	if err != nil {
		return PullResult{}, err
	}
	if mt != types.OCIManifestSchema1 && mt != types.DockerManifestSchema2 {
		return PullResult{}, fmt.Errorf("pulling %s: unsupported manifest media type %q", r, mt)
	}

	unlock, err := s.lock(ctx, gcLockFile, true)
	if err != nil {
		return PullResult{}, err
	}
	res, err := s.fetchLayers(ctx, img, opts.Jobs, emit)
	var displaced bool
	if err == nil {
		// Tag a view of the image read from the store, so that writing it
		// does not open the remote layers again.
		var stored v1.Image
		if stored, err = s.storeView(ctx, img); err == nil {
			n, t, _ := ParseRef(local)
			res.Image, displaced, err = s.put(ctx, stored, n, t)
		}
	}
	unlock()
	if displaced {
		s.tryGC()
	}
	if err != nil {
		return PullResult{}, fmt.Errorf("pulling %s: %w", r, ctxOr(ctx, err))
	}
	return res, nil
}

// fetchLayers downloads the layers of img the store lacks, jobs at a time.
// The caller holds the shared gc lock.
func (s *Store) fetchLayers(ctx context.Context, img v1.Image, jobs int, emit func(progress.Event)) (PullResult, error) {
	var res PullResult
	layers, err := img.Layers()
	if err != nil {
		return res, err
	}
	if jobs <= 0 {
		jobs = 3
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
		sem   = make(chan struct{}, jobs)
	)
	fail := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
			cancel()
		}
		mu.Unlock()
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return res, err
		}
		size, _ := l.Size()
		if s.hasBlob(d) {
			res.Skipped++
			emit(progress.Event{Kind: progress.KindBytes, Layer: d.String(), Done: size, Size: size, Title: "already exists"})
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				fail(ctx.Err())
				return
			}
			defer func() { <-sem }()
			emit(progress.Event{Kind: progress.KindBytes, Layer: d.String(), Size: size, Title: "downloading"})
			rc, err := l.Compressed()
			if err != nil {
				fail(fmt.Errorf("layer %s: %w", d, err))
				return
			}
			defer rc.Close()
			cr := &countingReader{r: rc, every: 256 << 10, report: func(n int64) {
				emit(progress.Event{Kind: progress.KindBytes, Layer: d.String(), Done: n, Size: size, Title: "downloading"})
			}}
			if _, err := s.writeBlob(ctx, d, cr); err != nil {
				fail(fmt.Errorf("layer %s: %w", d, err))
				return
			}
			emit(progress.Event{Kind: progress.KindBytes, Layer: d.String(), Done: size, Size: size, Title: "done"})
			mu.Lock()
			res.Fetched++
			res.FetchedBytes += cr.n
			mu.Unlock()
		}()
	}
	wg.Wait()
	return res, first
}

// storeView writes img's config and manifest blobs (its layers must be
// stored already) and returns the image as read from the store. The
// caller holds the shared gc lock.
func (s *Store) storeView(ctx context.Context, img v1.Image) (v1.Image, error) {
	cfgName, err := img.ConfigName()
	if err != nil {
		return nil, err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return nil, err
	}
	if _, err := s.writeBlob(ctx, cfgName, bytes.NewReader(cfg)); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	raw, err := img.RawManifest()
	if err != nil {
		return nil, err
	}
	d, err := img.Digest()
	if err != nil {
		return nil, err
	}
	if _, err := s.writeBlob(ctx, d, bytes.NewReader(raw)); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	mt, err := img.MediaType()
	if err != nil {
		return nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	return partial.CompressedToImage(&blobImage{s: s, raw: raw, cfg: cfg, mt: mt, m: m})
}

// blobImage is an image whose blobs are all in the store, whether or not
// index.json lists it yet.
type blobImage struct {
	s   *Store
	raw []byte
	cfg []byte
	mt  types.MediaType
	m   *v1.Manifest
}

func (b *blobImage) RawConfigFile() ([]byte, error)      { return b.cfg, nil }
func (b *blobImage) MediaType() (types.MediaType, error) { return b.mt, nil }
func (b *blobImage) RawManifest() ([]byte, error)        { return b.raw, nil }
func (b *blobImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if h == b.m.Config.Digest {
		return &blobLayer{b.s, b.m.Config}, nil
	}
	for _, l := range b.m.Layers {
		if l.Digest == h {
			return &blobLayer{b.s, l}, nil
		}
	}
	return nil, fmt.Errorf("blob %s is not in the manifest", h)
}

// blobLayer is a stored blob described by its descriptor.
type blobLayer struct {
	s *Store
	d v1.Descriptor
}

func (l *blobLayer) Digest() (v1.Hash, error)            { return l.d.Digest, nil }
func (l *blobLayer) Size() (int64, error)                { return l.d.Size, nil }
func (l *blobLayer) MediaType() (types.MediaType, error) { return l.d.MediaType, nil }
func (l *blobLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.s.blobPath(l.d.Digest)) }

// hasBlob reports whether the store holds blob d.
func (s *Store) hasBlob(d v1.Hash) bool {
	_, err := os.Stat(s.blobPath(d))
	return err == nil
}

// platformMatches reports whether image platform got satisfies want: same
// OS and architecture, and variants equal when both name one.
func platformMatches(got, want v1.Platform) bool {
	return got.OS == want.OS && got.Architecture == want.Architecture &&
		(got.Variant == "" || want.Variant == "" || got.Variant == want.Variant)
}

// ParsePlatform parses "os/arch[/variant]", e.g. "linux/arm64/v8".
func ParsePlatform(s string) (v1.Platform, error) {
	p, err := v1.ParsePlatform(s)
	if err != nil || p.OS == "" || p.Architecture == "" {
		return v1.Platform{}, fmt.Errorf("invalid platform %q: use os/arch[/variant], e.g. linux/amd64", s)
	}
	return *p, nil
}

// ctxOr prefers ctx's error when the context caused err.
func ctxOr(ctx context.Context, err error) error {
	if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// onlyHost is a RoundTripper that uses insecure for requests to host and
// http.DefaultTransport for all others, so --insecure applies to the named
// registry only.
func onlyHost(host string, insecure http.RoundTripper) http.RoundTripper {
	return rtFunc(func(req *http.Request) (*http.Response, error) {
		if req.URL.Host == host {
			return insecure.RoundTrip(req)
		}
		return http.DefaultTransport.RoundTrip(req)
	})
}

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// countingReader counts bytes read and calls report every `every` bytes.
type countingReader struct {
	r      io.Reader
	n      int64
	every  int64
	last   int64
	lastT  time.Time
	report func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n-c.last >= c.every && time.Since(c.lastT) > 100*time.Millisecond {
		c.last, c.lastT = c.n, time.Now()
		c.report(c.n)
	}
	return n, err
}
