package images

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gofrs/flock"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestParseRef(t *testing.T) {
	for _, tc := range []struct{ in, name, tag, err string }{
		{in: "debian", name: "debian", tag: "latest"},
		{in: "debian:bookworm", name: "debian", tag: "bookworm"},
		{in: "example.com/team/app:v1", name: "example.com/team/app", tag: "v1"},
		{in: "localhost:5000/app", name: "localhost:5000/app", tag: "latest"},
		{in: "Registry.Example.com:5000/a/b:1.0", name: "registry.example.com:5000/a/b", tag: "1.0"},
		{in: "docker.io/library/debian:12", name: "debian", tag: "12"},
		{in: "docker.io/someone/tool", name: "someone/tool", tag: "latest"},
		{in: "Docker.IO/library/debian", name: "debian", tag: "latest"},
		{in: "my_app__x-y.z", name: "my_app__x-y.z", tag: "latest"},
		{in: "Debian", err: "lowercase"},
		{in: "team/App:v1", err: "lowercase"},
		{in: "", err: "empty"},
		{in: "debian:", err: "invalid reference format"},
		{in: "debian:-x", err: "invalid reference format"},
		{in: "a//b", err: "invalid reference format"},
		{in: "-debian", err: "invalid reference format"},
		{in: "debian@sha256:abcd", err: "digest"},
	} {
		n, tag, err := ParseRef(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseRef(%q) err = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || n != tc.name || tag != tc.tag {
			t.Errorf("ParseRef(%q) = %q, %q, %v; want %q, %q", tc.in, n, tag, err, tc.name, tc.tag)
		}
	}
}

func randomImage(t testing.TB) v1.Image {
	t.Helper()
	img, err := random.Image(256, 2)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestPutListResolve(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	a, b := randomImage(t), randomImage(t)
	ia, err := s.Put(ctx, a, "app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, a, "app:stable"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, b, "other"); err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	if ia.Digest != da {
		t.Errorf("Put digest %s, want the image's own %s", ia.Digest, da)
	}
	m, _ := a.Manifest()
	want := m.Config.Size
	for _, l := range m.Layers {
		want += l.Size
	}
	if ia.Size != want {
		t.Errorf("size = %d, want %d", ia.Size, want)
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, im := range list {
		refs = append(refs, im.Ref())
	}
	if got := strings.Join(refs, " "); got != "app:stable app:v1 other:latest" {
		t.Errorf("List = %s", got)
	}

	// The index is a plain OCI layout other tools can read.
	idx, err := layout.ImageIndexFromPath(s.Root())
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	if len(im.Manifests) != 3 || im.Manifests[0].Annotations[AnnotationRefName] != "v1" ||
		im.Manifests[0].Annotations[AnnotationName] != "app:v1" {
		t.Errorf("index = %+v", im.Manifests)
	}

	// Resolve by name, by full and short digest, with and without sha256:.
	for _, ref := range []string{"app:v1", da.String(), da.Hex, "sha256:" + da.Hex[:6], da.Hex[:4]} {
		got, img, err := s.Resolve(ref)
		if err != nil {
			t.Errorf("Resolve(%q): %v", ref, err)
			continue
		}
		if got.Digest != da || got.Ref() != "app:stable" && ref != "app:v1" {
			t.Errorf("Resolve(%q) = %+v", ref, got)
		}
		if d, _ := img.Digest(); d != da {
			t.Errorf("Resolve(%q) image digest %s", ref, d)
		}
	}
	for _, ref := range []string{"app:v2", "nothing", da.Hex[:3], "sha256:ffff0000"} {
		_, _, err := s.Resolve(ref)
		var nf *NotFoundError
		if !errors.Is(err, ErrNotFound) || !errors.As(err, &nf) || nf.Ref != ref {
			t.Errorf("Resolve(%q) err = %v, want NotFoundError", ref, err)
		}
	}
	_, _, err = s.Resolve("app:v2")
	if msg := err.Error(); !strings.Contains(msg, `"app:v2"`) || !strings.Contains(msg, "machinetop image import FILE app:v2") {
		t.Errorf("not-found message %q does not say how to get the image", msg)
	}

	// Moving a tag: app:v1 now names b; a keeps app:stable.
	if _, err := s.Put(ctx, b, "app:v1"); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.Resolve("app:v1"); got.Digest == da {
		t.Error("tag did not move")
	}
	if got, _, _ := s.Resolve("app:stable"); got.Digest != da {
		t.Error("other tag of the old image lost")
	}
}

func TestDigestPrefixAmbiguity(t *testing.T) {
	// Find two images whose digests share 4 hex digits; only digests are
	// computed until then, so this is cheap.
	seen := map[string]v1.Image{}
	var x, y v1.Image
	for x == nil {
		img, err := random.Image(8, 1)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		if other, ok := seen[d.Hex[:4]]; ok {
			x, y = other, img
		}
		seen[d.Hex[:4]] = img
	}
	s := openStore(t)
	ctx := context.Background()
	if _, err := s.Put(ctx, x, "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, y, "y"); err != nil {
		t.Fatal(err)
	}
	dx, _ := x.Digest()
	_, _, err := s.Resolve(dx.Hex[:4])
	var amb *AmbiguousError
	if !errors.As(err, &amb) || len(amb.Digests) != 2 || !strings.Contains(err.Error(), "ambiguous") {
		t.Fatalf("Resolve(%s) err = %v, want AmbiguousError", dx.Hex[:4], err)
	}
	if err := s.Remove(dx.Hex[:4]); !errors.As(err, &amb) {
		t.Errorf("Remove of an ambiguous prefix = %v", err)
	}
	if got, _, err := s.Resolve(dx.Hex[:20]); err != nil || got.Digest != dx {
		t.Errorf("longer prefix: %v, %v", got, err)
	}
}

func TestConcurrentPuts(t *testing.T) {
	s := openStore(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		img := randomImage(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each goroutine opens its own Store, like separate processes.
			st, err := Open(s.Root())
			if err == nil {
				_, err = st.Put(context.Background(), img, fmt.Sprintf("img%d", i))
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != n {
		t.Errorf("List has %d images, want %d", len(list), n)
	}
}

func TestRemoveCollectsGarbage(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	shared := layerOf(t, tarBytes(t, file("shared", "both images have me", 0o644)))
	a, err := mutate.AppendLayers(imageOf(t, HostPlatform(), tarBytes(t, file("a", "only a", 0o644))), shared)
	if err != nil {
		t.Fatal(err)
	}
	b, err := mutate.AppendLayers(imageOf(t, HostPlatform(), tarBytes(t, file("b", "only b", 0o644))), shared)
	if err != nil {
		t.Fatal(err)
	}
	empty := blobCount(t, s)
	for _, ref := range []string{"a:1", "a:2"} {
		if _, err := s.Put(ctx, a, ref); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Put(ctx, b, "b"); err != nil {
		t.Fatal(err)
	}
	full := blobCount(t, s)
	if full != empty+7 { // a: manifest, config, 2 layers; b: manifest, config, 1 own layer
		t.Fatalf("%d blobs after puts, want %d", full, empty+7)
	}
	pa, err := s.RootfsTar(ctx, "a:1")
	if err != nil {
		t.Fatal(err)
	}

	if err := s.Remove("a:1"); err != nil {
		t.Fatal(err)
	}
	if got := blobCount(t, s); got != full {
		t.Errorf("removing one of two tags deleted blobs: %d, want %d", got, full)
	}
	if _, err := os.Stat(pa); err != nil {
		t.Errorf("rootfs tar of a still-tagged image deleted: %v", err)
	}
	if err := s.Remove("a:2"); err != nil {
		t.Fatal(err)
	}
	if got := blobCount(t, s); got != full-3 {
		t.Errorf("%d blobs after removing a, want %d (shared layer kept)", got, full-3)
	}
	if _, err := os.Stat(pa); !os.IsNotExist(err) {
		t.Errorf("rootfs tar of removed image still there: %v", err)
	}
	if _, _, err := s.Resolve("b"); err != nil {
		t.Errorf("b damaged: %v", err)
	}
	// b's rootfs still flattens: its shared layer survived.
	if _, err := s.RootfsTar(ctx, "b"); err != nil {
		t.Error(err)
	}
	if err := s.Remove("a:1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove = %v, want ErrNotFound", err)
	}

	// Moving b's only tag to another image collects b.
	if _, err := s.Put(ctx, a, "b"); err != nil {
		t.Fatal(err)
	}
	if got := blobCount(t, s); got != empty+4 {
		t.Errorf("%d blobs after moving b's tag, want %d", got, empty+4)
	}
	if err := s.Remove("b"); err != nil {
		t.Fatal(err)
	}
	if got := blobCount(t, s); got != empty {
		t.Errorf("%d blobs left in an empty store", got)
	}
}

func TestOpenRejectsForeignDirectory(t *testing.T) {
	d := t.TempDir()
	writeFile(t, filepath.Join(d, "oci-layout"), []byte(`{"imageLayoutVersion":"9.0"}`))
	if _, err := Open(d); err == nil {
		t.Error("opened a layout of an unknown version")
	}
}

func TestImportDockerSave(t *testing.T) {
	ctx := context.Background()
	layer1 := tarBytes(t, dir("etc/", 0o755), file("etc/os-release", "ID=test", 0o644))
	layer2 := tarBytes(t, file("etc/.wh.os-release", "", 0o644), file("hello", "hi", 0o755))

	t.Run("go-containerregistry", func(t *testing.T) {
		img := imageOf(t, HostPlatform(), layer1, layer2)
		p := filepath.Join(t.TempDir(), "saved.tar")
		tag, _ := name.NewTag("example.com/saved:v1")
		if err := tarball.WriteToFile(p, tag, img); err != nil {
			t.Fatal(err)
		}
		s := openStore(t)
		im, err := s.Import(ctx, p, "saved:v1", ImportOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, got, _ := s.Resolve(im.Ref())
		wantCfg, _ := img.ConfigName()
		if gotCfg, _ := got.ConfigName(); gotCfg != wantCfg {
			t.Errorf("config digest %s, want %s", gotCfg, wantCfg)
		}
		checkSavedRootfs(t, s, im.Ref())
	})

	// What `docker save` (before Docker 25) writes: uncompressed layer tars
	// in per-layer directories, named by manifest.json; here also gzipped.
	t.Run("docker-classic-gzip", func(t *testing.T) {
		img := imageOf(t, HostPlatform(), layer1, layer2)
		cfg, _ := img.RawConfigFile()
		manifest, _ := json.Marshal([]map[string]any{{
			"Config":   "abc.json",
			"RepoTags": []string{"saved:v1"},
			"Layers":   []string{"l1/layer.tar", "l2/layer.tar"},
		}})
		raw := tarBytes(t,
			dir("l1/", 0o755), file("l1/layer.tar", string(layer1), 0o644),
			dir("l2/", 0o755), file("l2/layer.tar", string(layer2), 0o644),
			file("abc.json", string(cfg), 0o644),
			file("manifest.json", string(manifest), 0o644),
		)
		p := writeFile(t, filepath.Join(t.TempDir(), "saved.tar.gz"), gzipped(t, raw))
		s := openStore(t)
		im, err := s.Import(ctx, p, "saved:v1", ImportOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkSavedRootfs(t, s, im.Ref())
	})
}

func checkSavedRootfs(t *testing.T, s *Store, ref string) {
	t.Helper()
	p, err := s.RootfsTar(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	m := byName(readTar(t, p))
	if _, ok := m["etc/os-release"]; ok {
		t.Error("whited-out etc/os-release survived")
	}
	if h := m["hello"]; h.body != "hi" {
		t.Errorf("hello = %+v", h.h)
	}
}

// writeMultiPlatformLayout writes an OCI layout whose index.json points at
// an index of images for three platforms and an attestation manifest, as
// multi-platform builds produce; it returns the host image.
func writeMultiPlatformLayout(t testing.TB, dir string) v1.Image {
	t.Helper()
	var adds []mutate.IndexAddendum
	var host v1.Image
	for _, p := range []v1.Platform{
		{OS: "linux", Architecture: "amd64"},
		{OS: "linux", Architecture: "arm64", Variant: "v8"},
		{OS: "linux", Architecture: "riscv64"},
		{OS: "unknown", Architecture: "unknown"},
	} {
		img := imageOf(t, p, tarBytes(t, file("platform", p.String(), 0o644)))
		if p.Architecture == HostPlatform().Architecture {
			host = img
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendIndex(mutate.AppendManifests(empty.Index, adds...)); err != nil {
		t.Fatal(err)
	}
	if host == nil {
		t.Skip("no test image for this host's architecture")
	}
	return host
}

// tarDir tars up dir the way `tar -C dir -cf - .` would.
func tarDir(t testing.TB, dir, dst string) {
	t.Helper()
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = "./" + filepath.ToSlash(rel)
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			defer src.Close()
			_, err = io.Copy(tw, src)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestImportOCILayout(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "layout")
	host := writeMultiPlatformLayout(t, dir)
	want, _ := host.Digest()
	tarPath := filepath.Join(t.TempDir(), "layout.tar")
	tarDir(t, dir, tarPath)

	s := openStore(t)
	for tag, src := range map[string]string{"dir": dir, "tar": tarPath} {
		im, err := s.Import(ctx, src, "multi:"+tag, ImportOptions{})
		if err != nil {
			t.Fatalf("import %s: %v", src, err)
		}
		if im.Digest != want {
			t.Errorf("import %s chose %s (%s), want the host image %s", src, im.Digest, im.Platform, want)
		}
		p, err := s.RootfsTar(ctx, im.Ref())
		if err != nil {
			t.Fatal(err)
		}
		if got := byName(readTar(t, p))["platform"].body; !strings.HasPrefix(got, "linux/"+HostPlatform().Architecture) {
			t.Errorf("rootfs is from %q", got)
		}
	}

	// A layout with only foreign images is refused with the choices named.
	foreign := filepath.Join(t.TempDir(), "foreign")
	lp, err := layout.Write(foreign, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	for _, arch := range []string{"s390x", "ppc64le"} {
		p := v1.Platform{OS: "linux", Architecture: arch}
		if err := lp.AppendImage(imageOf(t, p, tarBytes(t, file("x", "x", 0o644))), layout.WithPlatform(p)); err != nil {
			t.Fatal(err)
		}
	}
	before := snapshot(t, s)
	_, err = s.Import(ctx, foreign, "foreign", ImportOptions{})
	if err == nil || !strings.Contains(err.Error(), "s390x") || !strings.Contains(err.Error(), foreign) {
		t.Errorf("foreign import err = %v", err)
	}
	if after := snapshot(t, s); !slices.Equal(before, after) {
		t.Errorf("failed import changed the store:\n%v\n%v", before, after)
	}
}

func TestImportBadInputLeavesStoreUnchanged(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	if _, err := s.Put(ctx, randomImage(t), "existing"); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	good := gzipped(t, tarBytes(t, dir("etc/", 0o755), file("etc/big", strings.Repeat("data ", 20000), 0o644)))
	badSave := tarBytes(t, file("manifest.json", "[{not json", 0o644))
	missingLayer := tarBytes(t, file("manifest.json", `[{"Config":"c.json","Layers":["l.tar"]}]`, 0o644), file("c.json", `{"rootfs":{"type":"layers","diff_ids":[]}}`, 0o644))
	inputs := map[string][]byte{
		"truncated.tar.gz": good[:len(good)/2],
		"garbage.bin":      []byte(strings.Repeat("this is not a tar archive\n", 100)),
		"empty.tar":        {},
		"short.tar":        []byte("tiny"),
		"badsave.tar":      badSave,
		"missinglayer.tar": missingLayer,
	}
	for name, data := range inputs {
		writeFile(t, filepath.Join(tmp, name), data)
	}
	// An OCI layout whose second layer blob does not match its digest:
	// the first layer is written before the mismatch shows.
	corrupt := filepath.Join(tmp, "corrupt-layout")
	lp, err := layout.Write(corrupt, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	img := imageOf(t, HostPlatform(), tarBytes(t, file("one", "1", 0o644)), tarBytes(t, file("two", "2", 0o644)))
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	ls, _ := img.Layers()
	d, _ := ls[1].Digest()
	blob := filepath.Join(corrupt, "blobs", "sha256", d.Hex)
	b, _ := os.ReadFile(blob)
	b[len(b)/2] ^= 0xff
	writeFile(t, blob, b)

	noLayout := filepath.Join(tmp, "plain-dir")
	os.Mkdir(noLayout, 0o755)

	before := snapshot(t, s)
	for _, p := range []string{
		filepath.Join(tmp, "truncated.tar.gz"), filepath.Join(tmp, "garbage.bin"),
		filepath.Join(tmp, "empty.tar"), filepath.Join(tmp, "short.tar"),
		filepath.Join(tmp, "badsave.tar"), filepath.Join(tmp, "missinglayer.tar"), noLayout, corrupt,
	} {
		_, err := s.Import(ctx, p, "broken", ImportOptions{})
		if err == nil {
			t.Errorf("import %s succeeded", p)
			continue
		}
		t.Logf("%s", err)
		if msg := err.Error(); !strings.Contains(msg, p) || !strings.Contains(msg, "docker save") || !strings.Contains(msg, "OCI image layout") {
			t.Errorf("import %s: error %q does not name the file and the accepted formats", p, msg)
		}
		if after := snapshot(t, s); !slices.Equal(before, after) {
			t.Errorf("import %s changed the store:\n%v\n%v", p, before, after)
		}
	}
	if _, err := s.Import(ctx, filepath.Join(tmp, "absent.tar"), "x", ImportOptions{}); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := s.Import(ctx, filepath.Join(tmp, "truncated.tar.gz"), "Bad Name", ImportOptions{}); err == nil || !strings.Contains(err.Error(), "invalid image reference") {
		t.Errorf("bad name: %v", err)
	}
}

func TestImportCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := openStore(t)
	p := writeFile(t, filepath.Join(t.TempDir(), "r.tar"), tarBytes(t, file("a", "a", 0o644)))
	if _, err := s.Import(ctx, p, "x", ImportOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func TestRemoveDoesNotWaitForBusyStore(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	for _, ref := range []string{"a", "b"} {
		if _, err := s.Put(ctx, randomImage(t), ref); err != nil {
			t.Fatal(err)
		}
	}
	before := blobCount(t, s)
	// Another process importing holds the collection lock shared.
	busy := flock.New(filepath.Join(s.Root(), gcLockFile))
	if err := busy.RLock(); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("a"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Resolve("a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a still resolves: %v", err)
	}
	if got := blobCount(t, s); got != before {
		t.Errorf("blobs deleted under a busy store: %d, want %d", got, before)
	}
	busy.Close()
	// The next collection takes a's leftovers along with b.
	if err := s.Remove("b"); err != nil {
		t.Fatal(err)
	}
	if got := blobCount(t, s); got != 0 {
		t.Errorf("%d blobs left", got)
	}
}

// ImportOptions.Platform labels a root filesystem tar, picks among the
// images of a layout, and refuses an image that names another platform.
func TestImportPlatform(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	arm := LinuxPlatform("arm64")
	other := LinuxPlatform("riscv64")

	rootfs := writeFile(t, filepath.Join(t.TempDir(), "rootfs.tar"), tarBytes(t, file("etc/hostname", "x", 0o644)))
	im, err := s.Import(ctx, rootfs, "rootfs:arm", ImportOptions{Platform: &arm})
	if err != nil {
		t.Fatal(err)
	}
	if im.Platform != "linux/arm64/v8" {
		t.Errorf("rootfs imported for linux/arm64 is labelled %q", im.Platform)
	}
	if im, err := s.Import(ctx, rootfs, "rootfs:host", ImportOptions{}); err != nil || im.Platform != HostPlatform().String() {
		t.Errorf("rootfs imported without a platform: %q, %v; want %s", im.Platform, err, HostPlatform().String())
	}

	dir := filepath.Join(t.TempDir(), "layout")
	writeMultiPlatformLayout(t, dir)
	for _, p := range []v1.Platform{arm, {OS: "linux", Architecture: "riscv64"}} {
		im, err := s.Import(ctx, dir, "multi:"+p.Architecture, ImportOptions{Platform: &p})
		if err != nil {
			t.Fatalf("import for %s: %v", p.String(), err)
		}
		rt, err := s.RootfsTar(ctx, im.Ref())
		if err != nil {
			t.Fatal(err)
		}
		if got := byName(readTar(t, rt))["platform"].body; !strings.HasPrefix(got, p.OS+"/"+p.Architecture) {
			t.Errorf("import for %s took the image for %q", p.String(), got)
		}
	}

	saved := filepath.Join(t.TempDir(), "saved.tar")
	tag, _ := name.NewTag("example.com/saved:v1")
	if err := tarball.WriteToFile(saved, tag, imageOf(t, arm, tarBytes(t, file("a", "a", 0o644)))); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, s)
	_, err = s.Import(ctx, saved, "saved:wrong", ImportOptions{Platform: &other})
	if err == nil || !strings.Contains(err.Error(), "linux/arm64") || !strings.Contains(err.Error(), "not linux/riscv64") {
		t.Errorf("importing a linux/arm64 image for riscv64: %v", err)
	}
	if after := snapshot(t, s); !slices.Equal(before, after) {
		t.Errorf("a refused import changed the store")
	}
	if _, err := s.Import(ctx, saved, "saved:any", ImportOptions{}); err != nil {
		t.Errorf("importing a foreign image without a platform: %v", err)
	}
}
