package debarchive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/blakesmith/ar"
	"github.com/ulikunitz/xz"
)

// testPkg is a package the test archive serves.
type testPkg struct {
	name, version, depends string
	deb                    []byte
}

// suiteOpts shape a suite's Release.
type suiteOpts struct {
	suite      string // the Suite field; default: the suite's name
	codename   string // default: the suite's name
	date       time.Time
	validUntil time.Time
	byHash     bool
	xzOnly     bool
	signers    []*openpgp.Entity // default: the archive's key
}

// testArchive is a Debian archive served over HTTP from memory, its
// Release files signed with a key made for the test.
type testArchive struct {
	t   *testing.T
	key *openpgp.Entity
	srv *httptest.Server

	mu       sync.Mutex
	files    map[string][]byte // URL path -> content
	requests []string          // "PATH RANGE" for each request
	hosts    []string          // Host of each request
	noRange  bool              // answer every request in full
}

func newTestArchive(t *testing.T) *testArchive {
	a := &testArchive{t: t, key: newKey(t, "Test Archive Signing Key"), files: map[string][]byte{}}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

func newKey(t *testing.T, name string) *openpgp.Entity {
	t.Helper()
	e, err := openpgp.NewEntity(name, "", "archive@example.invalid", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (a *testArchive) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.requests = append(a.requests, strings.TrimSpace(r.URL.Path+" "+r.Header.Get("Range")))
	a.hosts = append(a.hosts, r.Host)
	b, ok := a.files[r.URL.Path]
	noRange := a.noRange
	a.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	if noRange {
		w.Write(b)
		return
	}
	http.ServeContent(w, r, path.Base(r.URL.Path), time.Time{}, bytes.NewReader(b))
}

func (a *testArchive) set(p string, b []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.files[p] = b
}

func (a *testArchive) get(p string) []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.files[p]
}

func (a *testArchive) takeRequests() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.requests
	a.requests = nil
	return r
}

func (a *testArchive) mirror() string { return a.srv.URL + "/debian" }

func (a *testArchive) keyring() openpgp.EntityList { return openpgp.EntityList{a.key} }

// addSuite publishes suite for amd64 with pkgs and returns the pool path
// of each package's .deb.
func (a *testArchive) addSuite(suite string, pkgs []testPkg, o suiteOpts) map[string]string {
	t := a.t
	pool := map[string]string{}
	var idx bytes.Buffer
	for _, p := range pkgs {
		fn := fmt.Sprintf("pool/main/%c/%s/%s_%s_amd64.deb", p.name[0], p.name, p.name, p.version)
		a.set("/debian/"+fn, p.deb)
		pool[p.name+"="+p.version] = fn
		sum := sha256.Sum256(p.deb)
		fmt.Fprintf(&idx, "Package: %s\nVersion: %s\nArchitecture: amd64\n", p.name, p.version)
		if p.depends != "" {
			fmt.Fprintf(&idx, "Depends: %s\n", p.depends)
		}
		fmt.Fprintf(&idx, "Description: test package\n multi-line description\n .\n ends here\nFilename: %s\nSize: %d\nSHA256: %x\n\n", fn, len(p.deb), sum)
	}
	var comp bytes.Buffer
	name := "Packages.gz"
	if o.xzOnly {
		name = "Packages.xz"
		w, _ := xz.NewWriter(&comp)
		w.Write(idx.Bytes())
		w.Close()
	} else {
		w := gzip.NewWriter(&comp)
		w.Write(idx.Bytes())
		w.Close()
	}
	dists := "/debian/dists/" + suite + "/"
	a.set(dists+"main/binary-amd64/"+name, comp.Bytes())
	sum := sha256.Sum256(comp.Bytes())
	if o.byHash {
		a.set(dists+"main/binary-amd64/by-hash/SHA256/"+hex.EncodeToString(sum[:]), comp.Bytes())
	}
	if o.codename == "" {
		o.codename = suite
	}
	if o.suite == "" {
		o.suite = suite
	}
	if o.date.IsZero() {
		o.date = time.Now().Add(-time.Hour)
	}
	var rel bytes.Buffer
	fmt.Fprintf(&rel, "Origin: Test\nSuite: %s\nCodename: %s\nDate: %s\n", o.suite, o.codename, o.date.UTC().Format(time.RFC1123))
	if !o.validUntil.IsZero() {
		fmt.Fprintf(&rel, "Valid-Until: %s\n", o.validUntil.UTC().Format(time.RFC1123))
	}
	if o.byHash {
		rel.WriteString("Acquire-By-Hash: yes\n")
	}
	rawSum := sha256.Sum256(idx.Bytes())
	fmt.Fprintf(&rel, "Architectures: amd64 arm64\nComponents: main\nSHA256:\n %x %d main/binary-amd64/Packages\n %x %d main/binary-amd64/%s\n",
		rawSum, idx.Len(), sum, comp.Len(), name)
	signers := o.signers
	if signers == nil {
		signers = []*openpgp.Entity{a.key}
	}
	a.set(dists+"InRelease", clearsignBytes(t, rel.Bytes(), signers))
	return pool
}

func clearsignBytes(t *testing.T, text []byte, signers []*openpgp.Entity) []byte {
	t.Helper()
	var keys []*packet.PrivateKey
	for _, s := range signers {
		keys = append(keys, s.PrivateKey)
	}
	var out bytes.Buffer
	w, err := clearsign.EncodeMulti(&out, keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(text)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// makeDeb builds a binary package as dpkg-deb lays it out: an ar archive
// of debian-binary, control.tar.gz and data.tar.gz.
func makeDeb(t *testing.T, name, version string, payload []byte) []byte {
	t.Helper()
	tgz := func(files map[string][]byte) []byte {
		var b bytes.Buffer
		gz := gzip.NewWriter(&b)
		tw := tar.NewWriter(gz)
		names := make([]string, 0, len(files))
		for n := range files {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			tw.WriteHeader(&tar.Header{Name: "./" + n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg})
			tw.Write(files[n])
		}
		tw.Close()
		gz.Close()
		return b.Bytes()
	}
	control := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: amd64\nMaintainer: Test <t@example.invalid>\nDescription: test\n", name, version)
	members := []struct {
		name string
		data []byte
	}{
		{"debian-binary", []byte("2.0\n")},
		{"control.tar.gz", tgz(map[string][]byte{"control": []byte(control)})},
		{"data.tar.gz", tgz(map[string][]byte{"usr/share/" + name + "/payload": payload})},
	}
	var b bytes.Buffer
	w := ar.NewWriter(&b)
	w.WriteGlobalHeader()
	for _, m := range members {
		w.WriteHeader(&ar.Header{Name: m.name, Size: int64(len(m.data)), Mode: 0o644, ModTime: time.Unix(1700000000, 0)})
		w.Write(m.data)
	}
	return b.Bytes()
}

// payload is incompressible test data of n bytes.
func payload(n int) []byte {
	b := make([]byte, 0, n+32)
	for i := 0; len(b) < n; i++ {
		s := sha256.Sum256([]byte{byte(i), byte(i >> 8), byte(i >> 16)})
		b = append(b, s[:]...)
	}
	return b[:n]
}

// standardSuite publishes "stable" with hello 1.0-1 and 2.0-1 (a big
// enough .deb to watch a download in parts) and a metapackage on 2.0-1.
func standardSuite(t *testing.T, a *testArchive, o suiteOpts) (hello2 []byte) {
	hello1 := makeDeb(t, "hello", "1.0-1", payload(1000))
	hello2 = makeDeb(t, "hello", "2.0-1", payload(300<<10))
	meta := makeDeb(t, "hello-latest", "2", nil)
	a.addSuite("stable", []testPkg{
		{name: "hello", version: "2.0-1", deb: hello2},
		{name: "hello", version: "1.0-1", deb: hello1},
		{name: "hello-latest", version: "2", depends: "hello (= 2.0-1)", deb: meta},
	}, o)
	return hello2
}

func (a *testArchive) client(t *testing.T, cache string) *Client {
	return &Client{Mirror: a.mirror(), Suite: "stable", CacheDir: cache, Keyring: a.keyring(),
		Log: func(m string) { t.Log(m) }}
}

func wantCheck(t *testing.T, err error, check Check, mention string) {
	t.Helper()
	var ve *VerificationError
	if !errors.As(err, &ve) || ve.Check != check {
		t.Fatalf("err = %v, want a %s verification error", err, check)
	}
	if !strings.Contains(err.Error(), mention) {
		t.Errorf("err = %v, want it to mention %q", err, mention)
	}
}

func TestGoodPath(t *testing.T) {
	a := newTestArchive(t)
	hello2 := standardSuite(t, a, suiteOpts{byHash: true})
	cache := t.TempDir()
	var progress []Progress
	c := a.client(t, cache)
	c.Progress = func(p Progress) { progress = append(progress, p) }
	ctx := context.Background()

	rel, err := c.Release(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rel.Signer, "Test Archive Signing Key") || !rel.AcquireByHash {
		t.Errorf("Release %+v", rel)
	}
	meta, err := c.Lookup(ctx, "amd64", "hello-latest")
	if err != nil {
		t.Fatal(err)
	}
	if meta.Depends != "hello (= 2.0-1)" {
		t.Errorf("meta Depends %q", meta.Depends)
	}
	p, err := c.Lookup(ctx, "amd64", "hello")
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != "2.0-1" || p.Size != int64(len(hello2)) || p.URL != a.mirror()+"/pool/main/h/hello/hello_2.0-1_amd64.deb" {
		t.Errorf("Lookup(hello) = %+v, want the highest version", p)
	}
	debs := t.TempDir()
	got, err := c.Download(ctx, p, debs)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(got); !bytes.Equal(b, hello2) || filepath.Base(got) != "hello_2.0-1_amd64.deb" {
		t.Errorf("downloaded %s differs from the served .deb", got)
	}
	if len(progress) < 2 || progress[len(progress)-1] != (Progress{File: "hello_2.0-1_amd64.deb", Done: int64(len(hello2)), Total: int64(len(hello2))}) {
		t.Errorf("progress reports %v", progress)
	}
	reqs := a.takeRequests()
	if !slices.Contains(reqs, "/debian/dists/stable/main/binary-amd64/by-hash/SHA256/"+hex.EncodeToString(sha256sum(a.get("/debian/dists/stable/main/binary-amd64/Packages.gz")))) {
		t.Errorf("index not fetched by hash: %v", reqs)
	}
	if _, err := c.Lookup(ctx, "amd64", "absent"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lookup(absent) = %v, want ErrNotFound", err)
	}

	// Another Client on the same cache needs no request at all.
	a.takeRequests()
	c2 := a.client(t, cache)
	p2, err := c2.Lookup(ctx, "amd64", "hello")
	if err != nil || *p2 != *p {
		t.Fatalf("cached Lookup = %+v, %v", p2, err)
	}
	if _, err := c2.Download(ctx, p2, debs); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Lookup(ctx, "amd64", "absent"); !errors.Is(err, ErrNotFound) {
		t.Errorf("cached Lookup(absent) = %v, want ErrNotFound", err)
	}
	if reqs := a.takeRequests(); len(reqs) != 0 {
		t.Errorf("cached Lookup and Download made requests: %v", reqs)
	}
	if left, _ := filepath.Glob(filepath.Join(debs, "*.partial-*")); len(left) != 0 {
		t.Errorf("partial files left: %v", left)
	}
}

func sha256sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func TestXZIndexAndByName(t *testing.T) {
	a := newTestArchive(t)
	standardSuite(t, a, suiteOpts{xzOnly: true})
	c := a.client(t, t.TempDir())
	p, err := c.Lookup(context.Background(), "amd64", "hello")
	if err != nil || p.Version != "2.0-1" {
		t.Fatalf("Lookup from Packages.xz: %+v %v", p, err)
	}
	if reqs := a.takeRequests(); !slices.Contains(reqs, "/debian/dists/stable/main/binary-amd64/Packages.xz") {
		t.Errorf("requests %v", reqs)
	}
	if _, err := c.Index(context.Background(), "arm64"); err == nil || !strings.Contains(err.Error(), "no main/binary-arm64/Packages.gz") {
		t.Errorf("arm64 index missing from the Release: %v", err)
	}
	if _, err := c.Index(context.Background(), "s390x"); err == nil || !strings.Contains(err.Error(), "no architecture s390x") {
		t.Errorf("architecture the suite lacks: %v", err)
	}
}

func TestTamperedInRelease(t *testing.T) {
	a := newTestArchive(t)
	standardSuite(t, a, suiteOpts{})
	p := "/debian/dists/stable/InRelease"
	good := a.get(p)
	a.set(p, bytes.Replace(good, []byte("Origin: Test"), []byte("Origin: Evil"), 1))
	c := a.client(t, t.TempDir())
	_, err := c.Lookup(context.Background(), "amd64", "hello")
	wantCheck(t, err, CheckInReleaseSignature, "InRelease")

	// Signed, but by a key that is not in the keyring.
	a.set(p, good)
	standardSuite(t, a, suiteOpts{signers: []*openpgp.Entity{newKey(t, "Someone Else")}})
	_, err = c.Release(context.Background())
	wantCheck(t, err, CheckInReleaseSignature, "unknown")

	// One unknown signature beside a good one is fine, as for apt.
	standardSuite(t, a, suiteOpts{signers: []*openpgp.Entity{newKey(t, "Someone Else"), a.key}})
	if _, err := c.Release(context.Background()); err != nil {
		t.Errorf("a good signature beside an unknown one: %v", err)
	}

	// Not signed at all.
	a.set(p, []byte("Origin: Test\nSuite: stable\n"))
	_, err = a.client(t, t.TempDir()).Release(context.Background())
	wantCheck(t, err, CheckInReleaseSignature, "not an OpenPGP clearsigned message")
}

func TestReleaseChecks(t *testing.T) {
	a := newTestArchive(t)
	ctx := context.Background()
	for _, c := range []struct {
		name    string
		opts    suiteOpts
		mention string
	}{
		{"expired", suiteOpts{validUntil: time.Now().Add(-time.Minute)}, "Valid-Until"},
		{"future", suiteOpts{date: time.Now().Add(3 * MaxFutureSkew)}, "in the future"},
		{"other suite", suiteOpts{suite: "testing", codename: "other"}, `not "stable"`},
	} {
		standardSuite(t, a, c.opts)
		cl := a.client(t, t.TempDir())
		_, err := cl.Release(ctx)
		wantCheck(t, err, CheckRelease, c.mention)
	}
	standardSuite(t, a, suiteOpts{validUntil: time.Now().Add(time.Hour)})
	if _, err := a.client(t, t.TempDir()).Release(ctx); err != nil {
		t.Errorf("a Release valid for another hour: %v", err)
	}
	cl := a.client(t, t.TempDir())
	cl.Suite = "absent"
	if _, err := cl.Release(ctx); err == nil || !strings.Contains(err.Error(), `no suite "absent"`) {
		t.Errorf("absent suite: %v", err)
	}
}

func TestTamperedPackages(t *testing.T) {
	a := newTestArchive(t)
	standardSuite(t, a, suiteOpts{})
	p := "/debian/dists/stable/main/binary-amd64/Packages.gz"
	b := bytes.Clone(a.get(p))
	b[len(b)/2] ^= 1
	a.set(p, b)
	cache := t.TempDir()
	_, err := a.client(t, cache).Lookup(context.Background(), "amd64", "hello")
	wantCheck(t, err, CheckPackagesDigest, "Packages.gz")
	if left, _ := filepath.Glob(filepath.Join(cache, "*", "dists", "stable", "main", "binary-amd64", "*")); len(left) != 0 {
		t.Errorf("a bad index was kept: %v", left)
	}
}

func TestTamperedDeb(t *testing.T) {
	a := newTestArchive(t)
	standardSuite(t, a, suiteOpts{})
	c := a.client(t, t.TempDir())
	p, err := c.Lookup(context.Background(), "amd64", "hello")
	if err != nil {
		t.Fatal(err)
	}
	served := "/debian/" + p.Filename
	good := a.get(served)
	bad := bytes.Clone(good)
	bad[len(bad)-10] ^= 1
	a.set(served, bad)
	debs := t.TempDir()
	_, err = c.Download(context.Background(), p, debs)
	wantCheck(t, err, CheckDebDigest, "SHA-256")
	if left, _ := os.ReadDir(debs); len(left) != 0 {
		t.Errorf("a bad download was kept: %v", left)
	}
	a.set(served, append(bytes.Clone(good), 0))
	_, err = c.Download(context.Background(), p, debs)
	wantCheck(t, err, CheckDebDigest, "more than")

	// A good download damaged later in the cache is an error too.
	a.set(served, good)
	dst, err := c.Download(context.Background(), p, debs)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(dst, bad, 0o644)
	_, err = c.Download(context.Background(), p, debs)
	wantCheck(t, err, CheckDebDigest, "remove it")
}

func TestCachedInReleaseTampered(t *testing.T) {
	a := newTestArchive(t)
	standardSuite(t, a, suiteOpts{})
	cache := t.TempDir()
	if _, err := a.client(t, cache).Lookup(context.Background(), "amd64", "hello"); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(cache, "*", "dists", "stable", "InRelease"))
	if len(files) != 1 {
		t.Fatalf("cached InRelease: %v", files)
	}
	b, _ := os.ReadFile(files[0])
	os.WriteFile(files[0], bytes.Replace(b, []byte("Suite: stable"), []byte("Suite: stab1e"), 1), 0o644)
	_, err := a.client(t, cache).Lookup(context.Background(), "amd64", "hello")
	wantCheck(t, err, CheckInReleaseSignature, "remove "+files[0])
}

func TestResume(t *testing.T) {
	a := newTestArchive(t)
	hello2 := standardSuite(t, a, suiteOpts{})
	ctx := context.Background()
	c := a.client(t, t.TempDir())
	p, err := c.Lookup(ctx, "amd64", "hello")
	if err != nil {
		t.Fatal(err)
	}
	debs := t.TempDir()
	partial := filepath.Join(debs, p.FileName()+".partial-"+p.SHA256[:16])
	half := len(hello2) / 2

	// An interrupted download left the first half: only the rest is asked for.
	os.WriteFile(partial, hello2[:half], 0o644)
	os.WriteFile(filepath.Join(debs, p.FileName()+".partial-0123456789abcdef"), []byte("older"), 0o644)
	a.takeRequests()
	got, err := c.Download(ctx, p, debs)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(got); !bytes.Equal(b, hello2) {
		t.Fatal("resumed download differs")
	}
	if reqs := a.takeRequests(); !slices.Equal(reqs, []string{"/debian/" + p.Filename + fmt.Sprintf(" bytes=%d-", half)}) {
		t.Errorf("requests %v, want one Range request for the second half", reqs)
	}
	if left, _ := filepath.Glob(filepath.Join(debs, "*.partial-*")); len(left) != 0 {
		t.Errorf("partial files left: %v", left)
	}

	// A partial file whose bytes are wrong is downloaded again whole.
	os.Remove(got)
	bad := bytes.Clone(hello2[:half])
	bad[0] ^= 1
	os.WriteFile(partial, bad, 0o644)
	if got, err = c.Download(ctx, p, debs); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(got); !bytes.Equal(b, hello2) {
		t.Fatal("download after a bad partial differs")
	}
	if reqs := a.takeRequests(); len(reqs) != 2 || !strings.HasSuffix(reqs[0], fmt.Sprintf("bytes=%d-", half)) || strings.Contains(reqs[1], "bytes=") {
		t.Errorf("requests %v, want a Range request, then a whole one", reqs)
	}

	// A server that ignores Range sends everything; the partial is replaced.
	os.Remove(got)
	os.WriteFile(partial, hello2[:half], 0o644)
	a.mu.Lock()
	a.noRange = true
	a.mu.Unlock()
	if got, err = c.Download(ctx, p, debs); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(got); !bytes.Equal(b, hello2) {
		t.Fatal("download from a server without Range differs")
	}
}

// TestOfflineUsesCache: with the mirror gone, a cached, verified Release
// is used whatever its age; without a cache the network error is returned.
func TestOfflineUsesCache(t *testing.T) {
	a := newTestArchive(t)
	standardSuite(t, a, suiteOpts{})
	cache := t.TempDir()
	ctx := context.Background()
	if _, err := a.client(t, cache).Lookup(ctx, "amd64", "hello"); err != nil {
		t.Fatal(err)
	}
	a.srv.Close()
	var logs []string
	c := a.client(t, cache)
	c.MaxAge = -1
	c.Log = func(m string) { logs = append(logs, m) }
	if p, err := c.Lookup(ctx, "amd64", "hello"); err != nil || p.Version != "2.0-1" {
		t.Fatalf("offline Lookup: %+v %v", p, err)
	}
	if len(logs) != 2 || !strings.Contains(logs[1], "cannot get a newer InRelease") {
		t.Errorf("log %q", logs)
	}
	_, err := a.client(t, t.TempDir()).Lookup(ctx, "amd64", "hello")
	var ve *VerificationError
	if err == nil || errors.As(err, &ve) {
		t.Errorf("offline without cache: %v", err)
	}
}

// TestExpiredCacheIsRefreshed: a cached Release past its Valid-Until (the
// security suite's lasts a week) is replaced by the mirror's current one,
// and used as it is when the mirror cannot be reached.
func TestExpiredCacheIsRefreshed(t *testing.T) {
	a := newTestArchive(t)
	standardSuite(t, a, suiteOpts{validUntil: time.Now().Add(time.Hour)})
	cache := t.TempDir()
	ctx := context.Background()
	if _, err := a.client(t, cache).Lookup(ctx, "amd64", "hello"); err != nil {
		t.Fatal(err)
	}
	later := func() time.Time { return time.Now().Add(2 * time.Hour) }
	standardSuite(t, a, suiteOpts{validUntil: time.Now().Add(3 * time.Hour)})
	c := a.client(t, cache)
	c.MaxAge = time.Minute
	c.Now = later
	rel, err := c.Release(ctx)
	if err != nil || !rel.ValidUntil.After(later()) {
		t.Fatalf("refresh of an expired cache: %+v %v", rel, err)
	}

	a.srv.Close()
	c = a.client(t, cache)
	c.MaxAge = time.Minute
	c.Now = func() time.Time { return time.Now().Add(5 * time.Hour) }
	if p, err := c.Lookup(ctx, "amd64", "hello"); err != nil || p.Version != "2.0-1" {
		t.Errorf("offline with an expired cache: %+v %v", p, err)
	}
}

// TestOlderReleaseIsNotTaken: a mirror that serves an older Release than
// the one verified before does not roll the cache back.
func TestOlderReleaseIsNotTaken(t *testing.T) {
	a := newTestArchive(t)
	standardSuite(t, a, suiteOpts{})
	cache := t.TempDir()
	ctx := context.Background()
	first, err := a.client(t, cache).Release(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.client(t, cache).Lookup(ctx, "amd64", "hello"); err != nil {
		t.Fatal(err)
	}
	a.addSuite("stable", []testPkg{{name: "hello", version: "0.1-1", deb: makeDeb(t, "hello", "0.1-1", nil)}},
		suiteOpts{date: time.Now().Add(-48 * time.Hour)})
	var logs []string
	c := a.client(t, cache)
	c.MaxAge = -1
	c.Log = func(m string) { logs = append(logs, m) }
	rel, err := c.Release(ctx)
	if err != nil || rel.Digest != first.Digest {
		t.Fatalf("Release after a rollback: %v %v", rel, err)
	}
	if p, err := c.Lookup(ctx, "amd64", "hello"); err != nil || p.Version != "2.0-1" {
		t.Errorf("Lookup after a rollback: %+v %v", p, err)
	}
	if len(logs) < 2 || !strings.Contains(logs[1], "older than the one verified before") {
		t.Errorf("log %q", logs)
	}
}

// TestProxyFromEnvironment points the Client at a mirror whose host does
// not exist, with HTTP_PROXY naming the test server: every request must go
// through the proxy.
func TestProxyFromEnvironment(t *testing.T) {
	a := newTestArchive(t)
	standardSuite(t, a, suiteOpts{})
	t.Setenv("HTTP_PROXY", a.srv.URL)
	t.Setenv("http_proxy", a.srv.URL)
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")
	c := a.client(t, t.TempDir())
	c.Mirror = "http://mirror.debian.invalid/debian"
	p, err := c.Lookup(context.Background(), "amd64", "hello")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Download(context.Background(), p, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.hosts) != 3 {
		t.Errorf("%d requests through the proxy, want 3 (InRelease, Packages, .deb)", len(a.hosts))
	}
	for _, h := range a.hosts {
		if h != "mirror.debian.invalid" {
			t.Errorf("proxied request for host %q", h)
		}
	}
}

// TestFind takes the higher version across suites and passes over
// a mirror that cannot be reached.
func TestFind(t *testing.T) {
	a := newTestArchive(t)
	standardSuite(t, a, suiteOpts{})
	sec := makeDeb(t, "hello", "2.0-1+sec1", payload(100))
	a.addSuite("stable-security", []testPkg{{name: "hello", version: "2.0-1+sec1", deb: sec}}, suiteOpts{})
	cache := t.TempDir()
	main := a.client(t, cache)
	security := a.client(t, cache)
	security.Suite = "stable-security"
	var logs []string
	gone := &Client{Mirror: "http://127.0.0.1:1/debian", Suite: "stable", CacheDir: cache, Keyring: a.keyring(),
		Log: func(m string) { logs = append(logs, m) }}
	ctx := context.Background()
	p, from, err := Find(ctx, []*Client{main, security, gone}, "amd64", "hello", "")
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != "2.0-1+sec1" || from != security {
		t.Errorf("newest = %s from %s, want 2.0-1+sec1 from the security suite", p.Version, from.Suite)
	}
	if _, _, err := Find(ctx, []*Client{main, gone}, "amd64", "hello-latest", ""); err != nil {
		t.Fatal(err)
	}
	fetches := 0
	for _, l := range logs {
		if strings.HasPrefix(l, "fetching ") {
			fetches++
		}
	}
	if fetches != 1 || !strings.Contains(strings.Join(logs, "\n"), "passing over suite stable") {
		t.Errorf("the unreachable mirror's log: %q; want one attempt and a pass-over", logs)
	}
	if p, from, err = Find(ctx, []*Client{main, security}, "amd64", "hello-latest", ""); err != nil || from != main || p.Version != "2" {
		t.Errorf("a package in one suite only: %+v %v", p, err)
	}
	if _, _, err := Find(ctx, []*Client{main, security}, "amd64", "absent", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("absent everywhere: %v", err)
	}
	if p, from, err = Find(ctx, []*Client{main, security}, "amd64", "hello", "2.0-1"); err != nil || from != main || p.Version != "2.0-1" {
		t.Errorf("an exact version: %+v %v", p, err)
	}
	if _, _, err = Find(ctx, []*Client{main, security}, "amd64", "hello", "1.0-1"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "2.0-1 in stable") {
		t.Errorf("a version no index has on top: %v", err)
	}
	// A verification failure in any suite is an error, not a pass-over.
	a.set("/debian/dists/stable-security/InRelease", []byte("junk"))
	security2 := a.client(t, t.TempDir())
	security2.Suite = "stable-security"
	if _, _, err := Find(ctx, []*Client{main, security2}, "amd64", "hello", ""); err == nil {
		t.Error("a bad InRelease in one suite was passed over")
	}
}

func TestCompareVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"6.1.176-1", "6.1.192-3", -1},
		{"2.0-1+sec1", "2.0-1", 1},
		{"1:1.0", "2.0", 1},
		{"1.0~rc1", "1.0", -1},
		{"1.0", "1.0", 0},
	} {
		if got := compareVersions(c.a, c.b); (got > 0) != (c.want > 0) || (got < 0) != (c.want < 0) {
			t.Errorf("compareVersions(%q, %q) = %d, want sign of %d", c.a, c.b, got, c.want)
		}
	}
	if got := (&Package{Name: "p", Version: "1:2.0-3", Architecture: "amd64"}).FileName(); got != "p_1%3a2.0-3_amd64.deb" {
		t.Errorf("FileName = %s", got)
	}
}

func TestEmbeddedKeyring(t *testing.T) {
	kr, err := Keyring()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range kr {
		names = append(names, entityName(e))
	}
	for _, want := range []string{"(12/bookworm)", "(13/trixie)", "Security Archive Automatic Signing Key (12/bookworm)"} {
		if !slices.ContainsFunc(names, func(n string) bool { return strings.Contains(n, want) }) {
			t.Errorf("no key %s among %v", want, names)
		}
	}
}
