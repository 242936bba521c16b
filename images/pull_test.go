package images

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/machinetop/machinetop/images/progress"
)

// testRegistry is a real OCI registry (go-containerregistry's
// pkg/registry) on loopback that counts blob downloads and can be told
// to break them.
type testRegistry struct {
	srv  *httptest.Server
	host string
	// blobGets counts GET requests for blobs.
	blobGets atomic.Int64
	// hook, if set, may take over a blob GET; it returns true if it did.
	mu   sync.Mutex
	hook func(w http.ResponseWriter, r *http.Request, next http.Handler) bool
}

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	tr := &testRegistry{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	tr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			tr.blobGets.Add(1)
			tr.mu.Lock()
			h := tr.hook
			tr.mu.Unlock()
			if h != nil && h(w, r, reg) {
				return
			}
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(tr.srv.Close)
	tr.host = strings.TrimPrefix(tr.srv.URL, "http://")
	return tr
}

func (tr *testRegistry) setHook(h func(w http.ResponseWriter, r *http.Request, next http.Handler) bool) {
	tr.mu.Lock()
	tr.hook = h
	tr.mu.Unlock()
}

// randomLayer is a one-file layer of n random (incompressible) bytes.
func randomLayer(t *testing.T, name string, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return tarBytes(t, file(name, string(b), 0o644))
}

// pushIndex pushes a two-platform index (linux/amd64 and linux/arm64,
// three layers each) as ref and returns the per-platform images.
func pushIndex(t *testing.T, ref string) map[string]v1.Image {
	t.Helper()
	imgs := map[string]v1.Image{}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"}} {
		img := imageOf(t, p,
			randomLayer(t, "a-"+p.Architecture, 64<<10),
			randomLayer(t, "b-"+p.Architecture, 2<<20),
			tarBytes(t, file("etc/arch", p.Architecture+"\n", 0o644)))
		imgs[p.Architecture] = img
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatalf("pushing index: %v", err)
	}
	return imgs
}

func digestOf(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestPullMultiPlatformAndSkip(t *testing.T) {
	reg := newTestRegistry(t)
	imgs := pushIndex(t, reg.host+"/team/app:1.0")
	s := openStore(t)
	ctx := context.Background()

	var evs []progress.Event
	res, err := s.Pull(ctx, reg.host+"/team/app:1.0", PullOptions{Emit: func(e progress.Event) { evs = append(evs, e) }})
	if err != nil {
		t.Fatal(err)
	}
	host := HostPlatform().Architecture
	if want := digestOf(t, imgs[host]); res.Image.Digest != want {
		t.Fatalf("pulled %s, want the %s image %s", res.Image.Digest, host, want)
	}
	if res.Fetched != 3 || res.Skipped != 0 || res.Image.Ref() != reg.host+"/team/app:1.0" {
		t.Fatalf("first pull: %+v", res)
	}
	var finished int
	for _, e := range evs {
		if e.Kind == progress.KindBytes && e.Title == "done" && e.Done == e.Size && e.Size > 0 {
			finished++
		}
	}
	if finished != 3 {
		t.Errorf("want 3 finished-layer events, got %d: %+v", finished, evs)
	}
	if _, _, err := s.Resolve(reg.host + "/team/app:1.0"); err != nil {
		t.Fatal(err)
	}

	// A second pull transfers no layer.
	before := reg.blobGets.Load()
	res, err = s.Pull(ctx, reg.host+"/team/app:1.0", PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Fetched != 0 || res.Skipped != 3 {
		t.Fatalf("second pull: %+v", res)
	}
	// The config blob is read again (it is small); no layer is.
	if n := reg.blobGets.Load() - before; n > 1 {
		t.Fatalf("second pull made %d blob requests, want at most 1 (the config)", n)
	}

	// --platform picks the other image.
	res, err = s.Pull(ctx, reg.host+"/team/app:1.0", PullOptions{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := digestOf(t, imgs["arm64"]); res.Image.Digest != want {
		t.Fatalf("--platform linux/arm64 pulled %s, want %s", res.Image.Digest, want)
	}

	// By digest, under a sha256-HEX tag.
	d := digestOf(t, imgs[host])
	res, err = s.Pull(ctx, reg.host+"/team/app@"+d.String(), PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Image.Digest != d || res.Image.Tag != "sha256-"+d.Hex {
		t.Fatalf("digest pull: %+v", res.Image)
	}

	// No such platform.
	_, err = s.Pull(ctx, reg.host+"/team/app:1.0", PullOptions{Platform: &v1.Platform{OS: "linux", Architecture: "s390x"}})
	if err == nil || !strings.Contains(err.Error(), "s390x") {
		t.Fatalf("pull for a missing platform: %v", err)
	}
	// No such tag.
	if _, err := s.Pull(ctx, reg.host+"/team/app:nope", PullOptions{}); err == nil || !strings.Contains(err.Error(), "MANIFEST_UNKNOWN") {
		t.Fatalf("pull of a missing tag: %v", err)
	}
}

func TestPullInterruptedResumes(t *testing.T) {
	reg := newTestRegistry(t)
	imgs := pushIndex(t, reg.host+"/app:v1")
	host := HostPlatform().Architecture
	layers, err := imgs[host].Layers()
	if err != nil {
		t.Fatal(err)
	}
	big, _ := layers[1].Digest()
	s := openStore(t)

	// Serve half of the big layer, then stall until the pull is cancelled.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg.setHook(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if !strings.HasSuffix(r.URL.Path, big.String()) {
			return false
		}
		rc, _ := layers[1].Compressed()
		defer rc.Close()
		size, _ := layers[1].Size()
		w.Header().Set("Content-Length", itoa(size))
		w.WriteHeader(http.StatusOK)
		buf := make([]byte, size/2)
		n, _ := io.ReadFull(rc, buf)
		w.Write(buf[:n])
		w.(http.Flusher).Flush()
		cancel() // "Ctrl-C" mid-transfer
		<-r.Context().Done()
		return true
	})
	_, err = s.Pull(ctx, reg.host+"/app:v1", PullOptions{Jobs: 1})
	if err == nil {
		t.Fatal("interrupted pull succeeded")
	}
	if _, _, err := s.Resolve(reg.host + "/app:v1"); err == nil {
		t.Fatal("an interrupted pull tagged the image")
	}
	if s.hasBlob(big) {
		t.Fatal("a half-downloaded blob is in the store")
	}
	kept := 0
	for _, l := range layers {
		if d, _ := l.Digest(); s.hasBlob(d) {
			kept++
		}
	}

	// The next pull completes, fetching only what is missing, and verifies.
	reg.setHook(nil)
	res, err := s.Pull(context.Background(), reg.host+"/app:v1", PullOptions{Jobs: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped != kept || res.Fetched != 3-kept || kept == 0 {
		t.Fatalf("resumed pull: %+v, %d layers were kept", res, kept)
	}
	if res.Image.Digest != digestOf(t, imgs[host]) {
		t.Fatal("resumed pull stored another image")
	}
	if err := verifyStored(s, res.Image.Ref()); err != nil {
		t.Fatal(err)
	}
}

func TestPullRejectsCorruptBlob(t *testing.T) {
	reg := newTestRegistry(t)
	imgs := pushIndex(t, reg.host+"/app:v1")
	layers, _ := imgs[HostPlatform().Architecture].Layers()
	d, _ := layers[0].Digest()
	reg.setHook(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if !strings.HasSuffix(r.URL.Path, d.String()) {
			return false
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		b := rec.Body.Bytes()
		b[len(b)/2] ^= 0xff
		w.Header().Set("Content-Length", itoa(int64(len(b))))
		w.Write(b)
		return true
	})
	s := openStore(t)
	_, err := s.Pull(context.Background(), reg.host+"/app:v1", PullOptions{})
	if err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("pull of a corrupt layer: %v", err)
	}
	if s.hasBlob(d) {
		t.Fatal("a corrupt blob is in the store")
	}
}

func TestNormalizeRemote(t *testing.T) {
	for in, want := range map[string]string{
		"ubuntu:24.04":               "index.docker.io/library/ubuntu:24.04",
		"debian":                     "index.docker.io/library/debian:latest",
		"team/app":                   "index.docker.io/team/app:latest",
		"127.0.0.1:5000/app:v1":      "127.0.0.1:5000/app:v1",
		"docker.io/library/alpine:3": "index.docker.io/library/alpine:3",
		"example.com/a/b@sha256:" + strings.Repeat("a", 64): "example.com/a/b@sha256:" + strings.Repeat("a", 64),
	} {
		r, err := NormalizeRemote(in, false)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if r.Name() != want {
			t.Errorf("%s: got %s, want %s", in, r.Name(), want)
		}
	}
	r, _ := NormalizeRemote("ubuntu:24.04", false)
	if n, _ := LocalName(r); n != "ubuntu:24.04" {
		t.Errorf("LocalName: %s", n)
	}
	if LooksPullable("abcdef12") || !LooksPullable("ubuntu") {
		t.Error("LooksPullable")
	}
}

// verifyStored re-hashes every layer blob of the image ref names.
func verifyStored(s *Store, ref string) error {
	_, img, err := s.Resolve(ref)
	if err != nil {
		return err
	}
	ls, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range ls {
		d, _ := l.Digest()
		f, err := os.Open(s.blobPath(d))
		if err != nil {
			return err
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return err
		}
		if got := sum(h); got != d {
			return fmt.Errorf("blob %s hashes to %s", d, got)
		}
	}
	return nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
