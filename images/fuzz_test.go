package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"github.com/machinetop/machinetop/internal/testfs"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// maxFuzzInput bounds the files the import fuzz targets hand to Import, so
// each input's work stays small.
const maxFuzzInput = 1 << 20

// fuzzRef is the reference fuzzed imports are stored under; existingRef
// names the image already in the store before each import.
const (
	fuzzRef     = "fuzz:1"
	existingRef = "existing:1"
)

// copyTree copies the directory tree src to dst (testfs.CopyTree).
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	if err := testfs.CopyTree(src, dst); err != nil {
		t.Fatal(err)
	}
}

// storeTree lists every entry under the store's directory with its size,
// and index.json's content: what a failed import must leave as it was.
// It is a stricter form of snapshot, which looks at the layout's
// directories only.
func storeTree(t testing.TB, s *Store) []string {
	t.Helper()
	out := snapshot(t, s)
	err := filepath.WalkDir(s.Root(), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.Root(), p)
		out = append(out, rel+" "+fi.Mode().String()+" "+strconv.FormatInt(fi.Size(), 10))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// templateStore makes a store holding one image, existingRef, to be
// copied for each fuzz input.
func templateStore(f *testing.F) string {
	f.Helper()
	s := openStore(f)
	img := imageOf(f, HostPlatform(), tarBytes(f, dir("etc/", 0o755), file("etc/existing", "yes", 0o644)))
	if _, err := s.Put(context.Background(), img, existingRef); err != nil {
		f.Fatal(err)
	}
	return s.Root()
}

// storeFrom opens a fresh copy of the template store for one input.
func storeFrom(t *testing.T, template string) *Store {
	t.Helper()
	root := filepath.Join(t.TempDir(), "images")
	copyTree(t, template, root)
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkImport asserts what Import promises of one call: on error the
// message is non-empty and names the file, and the store is exactly as
// before (nothing of the failed import is left, not even scratch files);
// on success the image is listed under fuzzRef with the digest Import
// returned, every stored layer hashes to its digest, the image that was
// there before is untouched and no scratch file is left.
func checkImport(t *testing.T, s *Store, p string, before []string, im Image, err error) {
	t.Helper()
	if err != nil {
		msg := err.Error()
		if msg == "" {
			t.Fatal("import failed with an empty error message")
		}
		if !strings.Contains(msg, p) {
			t.Fatalf("import error %q does not name the file %s", msg, p)
		}
		if after := storeTree(t, s); !slices.Equal(before, after) {
			t.Fatalf("failed import (%v) changed the store:\nbefore %q\nafter  %q", err, before, after)
		}
		return
	}
	if im.Ref() != fuzzRef {
		t.Fatalf("imported as %q, want %q", im.Ref(), fuzzRef)
	}
	list, lerr := s.List()
	if lerr != nil {
		t.Fatalf("imported %s, then List: %v", im.Digest, lerr)
	}
	var found, kept bool
	for _, x := range list {
		switch x.Ref() {
		case fuzzRef:
			found = x.Digest == im.Digest
		case existingRef:
			kept = true
		}
	}
	if !found || !kept {
		t.Fatalf("after importing %s as %s the store lists %+v", im.Digest, fuzzRef, list)
	}
	if r, _, rerr := s.Resolve(fuzzRef); rerr != nil || r.Digest != im.Digest {
		t.Fatalf("%s resolves to %s, %v; imported %s", fuzzRef, r.Digest, rerr, im.Digest)
	}
	for _, ref := range []string{fuzzRef, existingRef} {
		if verr := verifyStored(s, ref); verr != nil {
			t.Fatalf("%s after the import: %v", ref, verr)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Root(), tmpDir)); len(ents) > 0 {
		t.Fatalf("a successful import left %s/%s", tmpDir, ents[0].Name())
	}
}

// FuzzImportTar fuzzes the content of the file given to Store.Import: a
// root filesystem tar (plain or compressed), a "docker save" tar or a tar
// of an OCI layout, seeded with valid, truncated and garbage ones. It
// asserts that Import never panics; that a failed import returns a
// non-empty error naming the file and leaves the store (which holds
// another image) exactly as it was; and that a successful one lists the
// image under the reference given, with intact blobs and no scratch files.
func FuzzImportTar(f *testing.F) {
	template := templateStore(f)
	tmp := f.TempDir()
	readBack := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}

	rootfs := tarBytes(f, rootfsEntries()...)
	layer1 := tarBytes(f, dir("etc/", 0o755), file("etc/os-release", "ID=test", 0o644))
	layer2 := tarBytes(f, file("etc/.wh.os-release", "", 0o644), file("hello", "hi", 0o755))
	img := imageOf(f, HostPlatform(), layer1, layer2)

	// "docker save" as go-containerregistry writes it.
	savePath := filepath.Join(tmp, "saved.tar")
	tag, _ := name.NewTag("example.com/saved:v1")
	if err := tarball.WriteToFile(savePath, tag, img); err != nil {
		f.Fatal(err)
	}
	save := readBack(savePath)

	// "docker save" before Docker 25: layer tars in per-layer directories.
	cfg, _ := img.RawConfigFile()
	manifest, _ := json.Marshal([]map[string]any{{
		"Config": "abc.json", "RepoTags": []string{"saved:v1"}, "Layers": []string{"l1/layer.tar", "l2/layer.tar"},
	}})
	classic := tarBytes(f,
		dir("l1/", 0o755), file("l1/layer.tar", string(layer1), 0o644),
		dir("l2/", 0o755), file("l2/layer.tar", string(layer2), 0o644),
		file("abc.json", string(cfg), 0o644),
		file("manifest.json", string(manifest), 0o644),
	)

	// An OCI layout of one image, and the multi-platform one, as tars.
	single := filepath.Join(tmp, "single")
	lp, err := layout.Write(single, empty.Index)
	if err != nil {
		f.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		f.Fatal(err)
	}
	tarDir(f, single, filepath.Join(tmp, "single.tar"))
	singleTar := readBack(filepath.Join(tmp, "single.tar"))
	multi := filepath.Join(tmp, "multi")
	writeMultiPlatformLayout(f, multi)
	tarDir(f, multi, filepath.Join(tmp, "multi.tar"))
	multiTar := readBack(filepath.Join(tmp, "multi.tar"))

	for _, b := range [][]byte{
		rootfs,
		gzipped(f, rootfs),
		zstded(f, rootfs),
		save,
		gzipped(f, save),
		classic,
		singleTar,
		gzipped(f, singleTar),
		multiTar,
		// Truncated and broken ones.
		gzipped(f, rootfs)[:len(gzipped(f, rootfs))/2],
		save[:len(save)/2],
		singleTar[:len(singleTar)-1024],
		tarBytes(f, file("manifest.json", "[{not json", 0o644)),
		tarBytes(f, file("manifest.json", `[{"Config":"c.json","Layers":["l.tar"]}]`, 0o644), file("c.json", `{"rootfs":{"type":"layers","diff_ids":[]}}`, 0o644)),
		tarBytes(f, file("oci-layout", `{"imageLayoutVersion":"1.0.0"}`, 0o644), file("index.json", `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:`+strings.Repeat("0", 64)+`","size":2}]}`, 0o644)),
		[]byte(strings.Repeat("this is not a tar archive\n", 20)),
		[]byte("tiny"),
		{},
	} {
		f.Add(b)
	}

	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > maxFuzzInput {
			t.Skip("input too large")
		}
		s := storeFrom(t, template)
		p := filepath.Join(t.TempDir(), "input")
		if err := os.WriteFile(p, in, 0o644); err != nil {
			t.Fatal(err)
		}
		before := storeTree(t, s)
		im, err := s.Import(context.Background(), p, fuzzRef, ImportOptions{})
		checkImport(t, s, p, before, im, err)
	})
}

// Placeholders of FuzzImportLayout's inputs, replaced by the digests
// ("sha256:…") and sizes of the blobs the test writes: the fuzzed config
// and manifest, and a fixed gzipped layer (@DIFFID is its uncompressed
// digest). Longer names come first so the replacer prefers them.
var layoutPlaceholders = []string{"@MANIFEST_SIZE", "@MANIFEST", "@CONFIG_SIZE", "@CONFIG", "@LAYER_SIZE", "@LAYER", "@DIFFID"}

// Seeds of FuzzImportLayout: an OCI image with one layer, for the host.
const (
	seedIndex = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` +
		`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"@MANIFEST","size":@MANIFEST_SIZE}]}`
	seedManifest = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"@CONFIG","size":@CONFIG_SIZE},` +
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"@LAYER","size":@LAYER_SIZE}]}`
	seedConfig = `{"architecture":"@ARCH","os":"linux","created":"2024-01-02T03:04:05Z",` +
		`"config":{"Env":["PATH=/usr/bin:/bin"]},"rootfs":{"type":"layers","diff_ids":["@DIFFID"]},` +
		`"history":[{"created_by":"seed"}]}`
)

func digestOfBytes(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

// FuzzImportLayout fuzzes the JSON of an OCI image layout directory given
// to Store.Import: its index.json, one manifest blob and one config blob.
// The layout also holds a fixed layer and the blobs of the multi-platform
// layout writeMultiPlatformLayout makes; the placeholders
// (layoutPlaceholders) in the fuzzed text are replaced by the real digests
// and sizes before writing, so the fuzzer gets past digest checks. It
// asserts what FuzzImportTar does: no panic; a failed import returns a
// non-empty error naming the layout and leaves the store as it was; a
// successful one lists the image, with intact blobs.
func FuzzImportLayout(f *testing.F) {
	template := templateStore(f)
	multi := filepath.Join(f.TempDir(), "multi")
	host := writeMultiPlatformLayout(f, multi)
	layer := gzipped(f, tarBytes(f, dir("etc/", 0o755), file("etc/hostname", "fuzz\n", 0o644)))
	diffID := digestOfBytes(tarBytes(f, dir("etc/", 0o755), file("etc/hostname", "fuzz\n", 0o644)))
	layerDigest := digestOfBytes(layer)

	arch := func(s string) []byte { return []byte(strings.ReplaceAll(s, "@ARCH", HostPlatform().Architecture)) }
	f.Add([]byte(seedIndex), []byte(seedManifest), arch(seedConfig))
	// Docker schema 2 media types.
	docker := strings.NewReplacer(
		"application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json",
		"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json",
		"application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.docker.image.rootfs.diff.tar.gzip",
	)
	f.Add([]byte(docker.Replace(seedIndex)), []byte(docker.Replace(seedManifest)), arch(seedConfig))
	// The multi-platform layout as it is; the fuzzed blobs are the host
	// image's manifest and config, present but not referenced.
	multiIndex, err := os.ReadFile(filepath.Join(multi, "index.json"))
	if err != nil {
		f.Fatal(err)
	}
	hostManifest, _ := host.RawManifest()
	hostConfig, _ := host.RawConfigFile()
	f.Add(multiIndex, hostManifest, hostConfig)
	// Platforms in the index: one foreign image (taken: it is the only
	// one), two for the host (ambiguous), an attestation only (no image).
	withPlatform := func(ps ...string) []byte {
		var ds []string
		for _, p := range ps {
			ds = append(ds, `{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"@MANIFEST","size":@MANIFEST_SIZE,"platform":`+p+`}`)
		}
		return []byte(`{"schemaVersion":2,"manifests":[` + strings.Join(ds, ",") + `]}`)
	}
	hostPlat := `{"os":"linux","architecture":"` + HostPlatform().Architecture + `"}`
	f.Add(withPlatform(`{"os":"linux","architecture":"s390x"}`), []byte(seedManifest), arch(seedConfig))
	f.Add(withPlatform(hostPlat, hostPlat), []byte(seedManifest), arch(seedConfig))
	f.Add(withPlatform(`{"os":"unknown","architecture":"unknown"}`), []byte(seedManifest), arch(seedConfig))
	// A nested index: index.json names the fuzzed "manifest" as an index.
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"@MANIFEST","size":@MANIFEST_SIZE}]}`),
		[]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"`+digestOfBytes(hostManifest)+`","size":`+strconv.Itoa(len(hostManifest))+`}]}`),
		arch(seedConfig))
	// Broken ones: sizes and digests that do not match, a config that is
	// not JSON, layers and diff_ids that disagree, JSON that is not an
	// index, an empty index.
	f.Add([]byte(seedIndex), []byte(strings.Replace(seedManifest, "@CONFIG_SIZE", "1", 1)), arch(seedConfig))
	f.Add([]byte(seedIndex), []byte(strings.Replace(seedManifest, "@LAYER\"", "sha256:"+strings.Repeat("0", 64)+"\"", 1)), arch(seedConfig))
	f.Add([]byte(seedIndex), []byte(seedManifest), []byte(`{"architecture":`))
	f.Add([]byte(seedIndex), []byte(seedManifest), arch(strings.Replace(seedConfig, `["@DIFFID"]`, `["@DIFFID","@DIFFID"]`, 1)))
	f.Add([]byte(seedIndex), []byte(strings.Replace(seedManifest, `"layers":[`, `"layers":[{"digest":"@CONFIG","size":@CONFIG_SIZE},`, 1)), arch(seedConfig))
	f.Add([]byte(`[]`), []byte(seedManifest), arch(seedConfig))
	f.Add([]byte(`{"schemaVersion":2,"manifests":[]}`), []byte(`null`), []byte(`null`))
	f.Add([]byte{}, []byte{}, []byte{})

	f.Fuzz(func(t *testing.T, index, manifest, config []byte) {
		if len(index)+len(manifest)+len(config) > maxFuzzInput {
			t.Skip("input too large")
		}
		s := storeFrom(t, template)
		dir := filepath.Join(t.TempDir(), "layout")
		copyTree(t, multi, dir)
		blobs := filepath.Join(dir, "blobs", "sha256")
		write := func(p string, b []byte) {
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		blob := func(b []byte) {
			write(filepath.Join(blobs, strings.TrimPrefix(digestOfBytes(b), "sha256:")), b)
		}
		vals := map[string]string{
			"@LAYER": layerDigest, "@LAYER_SIZE": strconv.Itoa(len(layer)), "@DIFFID": diffID,
		}
		replace := func(b []byte) []byte {
			var args []string
			for _, k := range layoutPlaceholders {
				if v, ok := vals[k]; ok {
					args = append(args, k, v)
				}
			}
			return []byte(strings.NewReplacer(args...).Replace(string(b)))
		}
		blob(layer)
		config = replace(config)
		blob(config)
		vals["@CONFIG"], vals["@CONFIG_SIZE"] = digestOfBytes(config), strconv.Itoa(len(config))
		manifest = replace(manifest)
		blob(manifest)
		vals["@MANIFEST"], vals["@MANIFEST_SIZE"] = digestOfBytes(manifest), strconv.Itoa(len(manifest))
		write(filepath.Join(dir, "index.json"), replace(index))

		before := storeTree(t, s)
		im, err := s.Import(context.Background(), dir, fuzzRef, ImportOptions{})
		checkImport(t, s, dir, before, im, err)
	})
}

// FuzzParseRef fuzzes ParseRef. It asserts what its doc promises: no
// panic; a digest reference ("@") is rejected; an error has a message;
// an accepted reference has a non-empty lowercase name and a non-empty
// tag, DefaultTag when ref names none; and the result is the one
// spelling of the image: "NAME:TAG" parses back to the same name and
// tag, and NAME alone to the same name with DefaultTag.
func FuzzParseRef(f *testing.F) {
	for _, s := range []string{
		"debian", "debian:bookworm", "example.com/team/app:v1", "localhost:5000/app",
		"Registry.Example.com:5000/a/b:1.0", "docker.io/library/debian:12", "docker.io/someone/tool",
		"index.docker.io/library/debian", "my_app__x-y.z", "Debian", "team/App:v1", "", "debian:",
		"debian:-x", "a//b", "-debian", "debian@sha256:abcd", "[::1]:5000/app:v1", "LOCALHOST/app",
		"localhost", "a:b:c", "example.com:99999/a", strings.Repeat("a", 256), "a/" + strings.Repeat("b", 250),
		"x:" + strings.Repeat("t", 129),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		name, tag, err := ParseRef(ref)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("ParseRef(%q) failed with an empty message", ref)
			}
			return
		}
		if strings.Contains(ref, "@") {
			t.Fatalf("ParseRef(%q) accepted a digest reference as %q, %q", ref, name, tag)
		}
		if name == "" || tag == "" || name != strings.ToLower(name) {
			t.Fatalf("ParseRef(%q) = %q, %q", ref, name, tag)
		}
		if !strings.Contains(ref, ":") && tag != DefaultTag {
			t.Fatalf("ParseRef(%q) names no tag but got tag %q", ref, tag)
		}
		if n, tg, err := ParseRef(name + ":" + tag); err != nil || n != name || tg != tag {
			t.Fatalf("ParseRef(%q) = %q, %q, but ParseRef(%q) = %q, %q, %v", ref, name, tag, name+":"+tag, n, tg, err)
		}
		if n, tg, err := ParseRef(name); err != nil || n != name || tg != DefaultTag {
			t.Fatalf("ParseRef(%q) = %q, %q, but ParseRef(%q) = %q, %q, %v", ref, name, tag, name, n, tg, err)
		}
	})
}
