package debarchive

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"pault.ag/go/debian/dependency"
)

// imageDep returns the first package a metapackage's Depends names.
func imageDep(t *testing.T, p *Package) string {
	t.Helper()
	d, err := dependency.Parse(p.Depends)
	if err != nil || len(d.Relations) == 0 || len(d.Relations[0].Possibilities) == 0 {
		t.Fatalf("%s Depends %q: %v", p.Name, p.Depends, err)
	}
	return d.Relations[0].Possibilities[0].Name
}

// TestRealDebianArchive verifies bookworm's InRelease from Debian's own
// mirror with the built-in keys, follows the cloud kernel metapackage to
// its image package and downloads and verifies that .deb for amd64, looks
// the arm64 one up, and checks the security suite's InRelease.
func TestRealDebianArchive(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cache := t.TempDir()
	var fetched []string
	c := &Client{Suite: "bookworm", CacheDir: cache,
		Log:      func(m string) { t.Log(m); fetched = append(fetched, m) },
		Progress: func(p Progress) { t.Logf("%s: %d of %d bytes", p.File, p.Done, p.Total) }}
	start := time.Now()
	rel, err := c.Release(ctx)
	var ve *VerificationError
	if err != nil && !errors.As(err, &ve) {
		t.Skipf("the Debian archive (%s) cannot be reached from here: %v", DefaultMirror, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bookworm InRelease (%s, Date %s) verified in %s, signed by %s", rel.Suite, rel.Date, time.Since(start), rel.Signer)
	if rel.Codename != "bookworm" || !strings.Contains(rel.Signer, "Debian") || !rel.hasArch("arm64") {
		t.Errorf("Release %+v", rel)
	}

	start = time.Now()
	meta, err := c.Lookup(ctx, "amd64", "linux-image-cloud-amd64")
	if err != nil {
		t.Fatal(err)
	}
	image, err := c.Lookup(ctx, "amd64", imageDep(t, meta))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s %s -> %s %s (%d bytes) in %s", meta.Name, meta.Version, image.Name, image.Version, image.Size, time.Since(start))
	if !strings.HasPrefix(image.Name, "linux-image-6.") || !strings.HasSuffix(image.Name, "-cloud-amd64") || image.Size < 10<<20 {
		t.Errorf("image package %+v", image)
	}
	start = time.Now()
	deb, err := c.Download(ctx, image, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("downloaded and verified %s in %s", deb, time.Since(start))
	b, err := os.ReadFile(deb)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != image.Size || !bytes.HasPrefix(b, []byte("!<arch>\ndebian-binary")) {
		t.Errorf("%s: %d bytes, want %d, starting with a deb's ar header", deb, len(b), image.Size)
	}

	armMeta, err := c.Lookup(ctx, "arm64", "linux-image-cloud-arm64")
	if err != nil {
		t.Fatal(err)
	}
	armImage, err := c.Lookup(ctx, "arm64", imageDep(t, armMeta))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("arm64: %s -> %s %s %s", armMeta.Name, armImage.Name, armImage.Version, armImage.URL)
	if armImage.Architecture != "arm64" || !strings.Contains(armImage.Filename, "arm64") || armImage.Size < 10<<20 || len(armImage.SHA256) != 64 {
		t.Errorf("arm64 image package %+v", armImage)
	}

	// A second Client on the same cache answers without the network.
	fetched = nil
	c2 := &Client{Suite: "bookworm", CacheDir: cache, Log: c.Log}
	start = time.Now()
	again, err := c2.Lookup(ctx, "amd64", image.Name)
	if err != nil || *again != *image || len(fetched) != 0 {
		t.Errorf("cached lookup: %+v %v, fetched %v", again, err, fetched)
	}
	t.Logf("cached Lookup took %s", time.Since(start))

	sec := &Client{Mirror: DefaultSecurityMirror, Suite: "bookworm-security", CacheDir: cache}
	srel, err := sec.Release(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if srel.ValidUntil.IsZero() || srel.Codename != "bookworm-security" {
		t.Errorf("security Release %+v: want a Valid-Until", srel)
	}
}
