package debarchive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/google/renameio/v2"
	"golang.org/x/net/http/httpproxy"
)

// Defaults for a Client.
const (
	// DefaultMirror is Debian's own mirror network (a CDN in front of the
	// official mirrors), the archive apt uses by default.
	DefaultMirror = "https://deb.debian.org/debian"
	// DefaultSecurityMirror serves Debian's security suites
	// (SUITE-security), where kernel security updates appear first.
	DefaultSecurityMirror = "https://deb.debian.org/debian-security"
	// DefaultComponent is the archive area holding Debian's free packages.
	DefaultComponent = "main"
	// DefaultMaxAge is how long a verified InRelease is used before the
	// mirror is asked for a newer one.
	DefaultMaxAge = 24 * time.Hour
)

// Client fetches verified packages of one suite of one archive mirror.
// Set the fields before the first call and do not change them after. A
// Client is not safe for concurrent use, and processes sharing a CacheDir
// must take turns (package kit holds a file lock around its use).
type Client struct {
	// Mirror is the archive's base URL, under which dists/ and pool/ lie,
	// e.g. DefaultMirror (used when empty) or DefaultSecurityMirror.
	Mirror string
	// Suite is the suite's codename or name, e.g. "bookworm" or
	// "bookworm-security". Required.
	Suite string
	// Component is the archive area; DefaultComponent when empty.
	Component string
	// CacheDir keeps what the Client fetched, per mirror and suite.
	// Required.
	CacheDir string
	// Keyring holds the keys a Release must be signed with; nil means
	// Debian's archive keys (Keyring()).
	Keyring openpgp.KeyRing
	// HTTPClient makes the requests; nil means a client that takes proxies
	// from the environment (HTTP_PROXY, HTTPS_PROXY, NO_PROXY, read when
	// the Client first fetches) and gives up on a response whose headers
	// take over a minute.
	HTTPClient *http.Client
	// MaxAge is how long a cached InRelease is used without asking the
	// mirror; 0 means DefaultMaxAge, a negative value asks every time.
	// When the mirror cannot be reached a cached InRelease that still
	// verifies is used whatever its age, so cached packages work offline.
	MaxAge time.Duration
	// Log, if set, is told of network fetches and of fallbacks to cached
	// files, one sentence per call.
	Log func(msg string)
	// Progress, if set, is told how a download goes (see Progress).
	Progress func(Progress)
	// Now is the clock (time.Now when nil), for the Release's date checks
	// and key expiry.
	Now func() time.Time

	release     *Release
	releaseSeen time.Time // when release was last confirmed current
	unreachable error     // why the mirror could not be asked, once it could not
	indices     map[string]*Index
	http        *http.Client
}

// Progress reports a download: Done of Total bytes of File (a base name)
// are on disk. It is sent when a download starts (Done is more than zero
// when it resumes), at most every two seconds while it runs, and when it
// ends.
type Progress struct {
	File        string
	Done, Total int64
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Client) log(format string, args ...any) {
	if c.Log != nil {
		c.Log(fmt.Sprintf(format, args...))
	}
}

func (c *Client) mirror() string {
	if c.Mirror == "" {
		return DefaultMirror
	}
	return strings.TrimRight(c.Mirror, "/")
}

func (c *Client) component() string {
	if c.Component == "" {
		return DefaultComponent
	}
	return c.Component
}

func (c *Client) maxAge() time.Duration {
	if c.MaxAge == 0 {
		return DefaultMaxAge
	}
	return c.MaxAge
}

func (c *Client) keyring() (openpgp.KeyRing, error) {
	if c.Keyring != nil {
		return c.Keyring, nil
	}
	return Keyring()
}

func (c *Client) httpClient() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	if c.http == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// httpproxy is what http.ProxyFromEnvironment uses; this reads the
		// environment now rather than once per process.
		proxy := httpproxy.FromEnvironment().ProxyFunc()
		t.Proxy = func(r *http.Request) (*url.URL, error) { return proxy(r.URL) }
		t.ResponseHeaderTimeout = time.Minute
		c.http = &http.Client{Transport: t}
	}
	return c.http
}

// validName matches what Debian Policy §5.6.1 allows in a package name
// and what an architecture or suite name may hold, so that none of them
// can reach outside the cache directory.
var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]*$`)

func (c *Client) validate() error {
	switch {
	case c.CacheDir == "":
		return errors.New("debarchive: Client needs a CacheDir")
	case !validName.MatchString(c.Suite):
		return fmt.Errorf("debarchive: bad suite name %q (want e.g. bookworm)", c.Suite)
	case !validName.MatchString(c.component()):
		return fmt.Errorf("debarchive: bad component name %q (want e.g. main)", c.Component)
	}
	u, err := url.Parse(c.mirror())
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("debarchive: mirror %q is not an http(s) URL (want e.g. %s)", c.Mirror, DefaultMirror)
	}
	return nil
}

// suiteDir is where the Client caches the files of its mirror and suite:
// CacheDir/<mirror host and path>/dists/<suite>.
func (c *Client) suiteDir() string {
	u, _ := url.Parse(c.mirror())
	key := strings.Trim(strings.NewReplacer("/", "_", ":", "_", "\\", "_").Replace(u.Host+u.Path), "_.")
	return filepath.Join(c.CacheDir, key, "dists", c.Suite)
}

// distURL is the URL of a file relative to dists/SUITE/.
func (c *Client) distURL(rel string) string {
	return c.mirror() + "/dists/" + c.Suite + "/" + rel
}

// Release returns the suite's verified Release. A cached InRelease is
// re-verified and used while younger than MaxAge; otherwise the mirror's
// InRelease is fetched, verified and date-checked, and replaces the
// cached one unless it is older (a mirror lagging behind, or replaying an
// old Release). If the mirror cannot be reached or fails to answer, a
// cached InRelease that verifies is used whatever its age or Valid-Until,
// with a log line: it was current when fetched, and nothing newer can be
// had.
//
// Errors are a *VerificationError for an InRelease that fails its
// signature or is for another suite (fetched or cached), or, fetched, is
// dated in the future or expired; an error naming the URL and HTTP status
// when the mirror has no such suite; or the network error when nothing is
// cached. A Client that found its mirror unreachable returns that error
// again without asking, so one slow failure is not waited for twice.
func (c *Client) Release(ctx context.Context) (*Release, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	now := c.now()
	if c.release != nil && now.Sub(c.releaseSeen) < c.maxAge() {
		return c.release, nil
	}
	if c.unreachable != nil {
		return nil, c.unreachable
	}
	kr, err := c.keyring()
	if err != nil {
		return nil, err
	}
	cachedPath := filepath.Join(c.suiteDir(), "InRelease")
	var cached *Release
	var cachedAge time.Duration
	if b, err := os.ReadFile(cachedPath); err == nil {
		r, err := verifyInRelease(b, kr, now, cachedPath)
		if err == nil {
			err = r.checkSuite(c.Suite, cachedPath)
		}
		if err != nil {
			var ve *VerificationError
			if errors.As(err, &ve) {
				ve.Hint = "the cached copy is damaged or was altered: remove " + cachedPath + " to fetch it again"
			}
			return nil, err
		}
		cached = r
		if fi, err := os.Stat(cachedPath); err == nil {
			cachedAge = now.Sub(fi.ModTime())
		}
		if cachedAge < c.maxAge() {
			return c.useRelease(cached, now), nil
		}
	}

	u := c.distURL("InRelease")
	c.log("fetching %s", u)
	b, err := c.getSmall(ctx, u, 64<<20)
	if err != nil {
		if cached != nil && ctx.Err() == nil {
			c.log("cannot get a newer InRelease (%v); using the one verified %s ago", err, cachedAge.Round(time.Minute))
			return c.useRelease(cached, now), nil
		}
		var se *statusError
		if errors.As(err, &se) && se.code == http.StatusNotFound {
			err = fmt.Errorf("the mirror has no suite %q: %s answered %s; check the mirror URL and suite", c.Suite, u, se.status)
		} else {
			err = fmt.Errorf("fetching the suite's InRelease: %w", err)
		}
		if ctx.Err() == nil {
			c.unreachable = err // not asked again by this Client
		}
		return nil, err
	}
	fresh, err := verifyInRelease(b, kr, now, u)
	if err != nil {
		return nil, err
	}
	if err := fresh.checkSuite(c.Suite, u); err != nil {
		return nil, err
	}
	if err := fresh.checkDates(now, u); err != nil {
		return nil, err
	}
	if cached != nil && fresh.Date.Before(cached.Date) {
		c.log("the mirror's InRelease (%s) is older than the one verified before (%s); keeping the newer one",
			fresh.Date.UTC().Format(time.RFC1123), cached.Date.UTC().Format(time.RFC1123))
		os.Chtimes(cachedPath, now, now)
		return c.useRelease(cached, now), nil
	}
	if cached != nil && fresh.Digest == cached.Digest {
		os.Chtimes(cachedPath, now, now)
		return c.useRelease(cached, now), nil
	}
	if err := os.MkdirAll(c.suiteDir(), 0o755); err != nil {
		return nil, err
	}
	if err := renameio.WriteFile(cachedPath, b, 0o644); err != nil {
		return nil, err
	}
	return c.useRelease(fresh, now), nil
}

func (c *Client) useRelease(r *Release, now time.Time) *Release {
	if c.release == nil || c.release.Digest != r.Digest {
		c.indices = nil
	}
	c.release, c.releaseSeen = r, now
	return r
}

// Index returns the suite's verified Packages index for the Debian
// architecture arch (e.g. "amd64", "arm64"). The compressed index is kept
// in the cache and reused while the Release lists the same digest for it.
// Parsing takes about half a second for Debian's main component.
//
// Errors: those of Release; a *VerificationError (CheckRelease) when the
// Release has no index for arch, or (CheckPackagesDigest) when the
// downloaded index does not match the Release; network errors.
func (c *Client) Index(ctx context.Context, arch string) (*Index, error) {
	if !validName.MatchString(arch) {
		return nil, fmt.Errorf("debarchive: bad architecture name %q (want a Debian architecture such as amd64 or arm64)", arch)
	}
	rel, err := c.Release(ctx)
	if err != nil {
		return nil, err
	}
	return c.index(ctx, rel, arch)
}

// index is Index for the Release rel.
func (c *Client) index(ctx context.Context, rel *Release, arch string) (*Index, error) {
	if ix := c.indices[arch]; ix != nil && ix.Release.Digest == rel.Digest {
		return ix, nil
	}
	if len(rel.Architectures) > 0 && !rel.hasArch(arch) {
		return nil, &VerificationError{Check: CheckRelease, File: c.distURL("InRelease"),
			Err:  fmt.Errorf("suite %s has no architecture %s (it has %s)", c.Suite, arch, strings.Join(rel.Architectures, " ")),
			Hint: "pick an architecture the suite has"}
	}
	dir := path.Join(c.component(), "binary-"+arch)
	var rel1 string
	var want FileDigest
	// gzip decompresses about five times faster than xz here, which
	// outweighs its ~40% larger download on any link faster than ~20 Mbit/s.
	for _, name := range []string{"Packages.gz", "Packages.xz"} {
		if d, ok := rel.Files[dir+"/"+name]; ok {
			rel1, want = dir+"/"+name, d
			break
		}
	}
	if rel1 == "" {
		return nil, &VerificationError{Check: CheckRelease, File: c.distURL("InRelease"),
			Err:  fmt.Errorf("the Release lists no %s/Packages.gz or Packages.xz", dir),
			Hint: "the suite has no " + c.component() + " packages for " + arch}
	}
	local := filepath.Join(c.suiteDir(), filepath.FromSlash(rel1))
	if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
		return nil, err
	}
	if ok, _ := fileMatches(local, want); !ok {
		u := c.distURL(rel1)
		if rel.AcquireByHash {
			u = c.distURL(dir + "/by-hash/SHA256/" + want.SHA256)
		}
		err := c.download(ctx, u, local, want, CheckPackagesDigest)
		var se *statusError
		if rel.AcquireByHash && errors.As(err, &se) && se.code == http.StatusNotFound {
			err = c.download(ctx, c.distURL(rel1), local, want, CheckPackagesDigest)
		}
		if err != nil {
			return nil, err
		}
	}
	pkgs, err := readIndex(local)
	if err != nil {
		return nil, err
	}
	ix := &Index{Arch: arch, Release: rel, packages: pkgs}
	if c.indices == nil {
		c.indices = map[string]*Index{}
	}
	c.indices[arch] = ix
	return ix, nil
}

// lookupRecord is a Lookup's result kept in the cache, valid for the
// Release whose digest it names. Package is nil for a name the index
// does not have.
type lookupRecord struct {
	Release string   `json:"release"`
	Name    string   `json:"name"`
	Package *Package `json:"package"`
}

// Lookup returns the highest version of package name for the Debian
// architecture arch, with its URL set. The answer is kept in the cache for
// as long as the Release stays the same, so a repeated Lookup does not
// read the index; so is the absence of a package, an error wrapping
// ErrNotFound.
func (c *Client) Lookup(ctx context.Context, arch, name string) (*Package, error) {
	if !validName.MatchString(name) {
		return nil, fmt.Errorf("debarchive: bad package name %q", name)
	}
	if !validName.MatchString(arch) {
		return nil, fmt.Errorf("debarchive: bad architecture name %q (want a Debian architecture such as amd64 or arm64)", arch)
	}
	rel, err := c.Release(ctx)
	if err != nil {
		return nil, err
	}
	answer := func(p *Package) (*Package, error) {
		if p == nil {
			return nil, fmt.Errorf("%w: %s has no %s for %s in %s", ErrNotFound, c.mirror(), name, arch, c.Suite)
		}
		out := *p
		out.URL = c.mirror() + "/" + p.Filename
		return &out, nil
	}
	recPath := filepath.Join(c.suiteDir(), "lookups", arch, name+".json")
	if b, err := os.ReadFile(recPath); err == nil {
		var rec lookupRecord
		if json.Unmarshal(b, &rec) == nil && rec.Release == rel.Digest && rec.Name == name &&
			(rec.Package == nil || rec.Package.Name == name) {
			return answer(rec.Package)
		}
	}
	ix, err := c.index(ctx, rel, arch)
	if err != nil {
		return nil, err
	}
	p, _ := ix.Package(name)
	b, _ := json.Marshal(lookupRecord{Release: rel.Digest, Name: name, Package: p})
	if err := os.MkdirAll(filepath.Dir(recPath), 0o755); err != nil {
		return nil, err
	}
	if err := renameio.WriteFile(recPath, b, 0o644); err != nil {
		return nil, err
	}
	return answer(p)
}

// Download puts the .deb of p (as Lookup returned it) into dir as
// p.FileName() and returns its path. A file already there is checked
// against p's size and SHA-256 and kept; otherwise the .deb is downloaded
// into a partial file beside it (an earlier attempt's partial file is
// resumed) and renamed into place only once it verifies.
//
// Errors: a *VerificationError (CheckDebDigest) when the download, or the
// file already in dir, does not match p; HTTP and network errors naming
// the URL.
func (c *Client) Download(ctx context.Context, p *Package, dir string) (string, error) {
	if !validName.MatchString(p.Name) || !validName.MatchString(p.Architecture) || strings.ContainsAny(p.Version, "/\\") || p.Version == "" {
		return "", fmt.Errorf("debarchive: package %q %q %q has an unusable name, version or architecture", p.Name, p.Version, p.Architecture)
	}
	if p.URL == "" {
		return "", fmt.Errorf("debarchive: package %s has no URL (get it from Lookup)", p.Name)
	}
	dst := filepath.Join(dir, p.FileName())
	want := FileDigest{Size: p.Size, SHA256: p.SHA256}
	if _, err := os.Stat(dst); err == nil {
		ok, err := fileMatches(dst, want)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", &VerificationError{Check: CheckDebDigest, File: dst,
				Err:  fmt.Errorf("it does not have the size %d and SHA-256 %s that %s's Packages index lists", p.Size, p.SHA256, c.Suite),
				Hint: "the cached copy is damaged or was altered: remove it to download it again"}
		}
		return dst, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := c.download(ctx, p.URL, dst, want, CheckDebDigest); err != nil {
		return "", err
	}
	return dst, nil
}

// Find looks name up for arch with each client and returns, with the
// client that has it (whose Download fetches it), the highest version
// found, or when version is not empty the client whose index has exactly
// that version. A client that cannot reach its mirror, and has nothing
// cached, is passed over with a log line when another client finds the
// package; verification errors and bad Client settings are always
// returned. When no client has the package (or that version) the error
// wraps ErrNotFound.
func Find(ctx context.Context, clients []*Client, arch, name, version string) (*Package, *Client, error) {
	var (
		best     *Package
		bestFrom *Client
		errs     []error
		failed   []*Client // the client of each of errs
		others   []string
	)
	for _, c := range clients {
		if err := c.validate(); err != nil {
			return nil, nil, err // a mistake in the settings is never passed over
		}
	}
	for _, c := range clients {
		p, err := c.Lookup(ctx, arch, name)
		if err != nil {
			var ve *VerificationError
			if errors.As(err, &ve) || ctx.Err() != nil {
				return nil, nil, err
			}
			errs, failed = append(errs, err), append(failed, c)
			continue
		}
		if version != "" && p.Version != version {
			others = append(others, p.Version+" in "+c.Suite)
			continue
		}
		if best == nil || compareVersions(p.Version, best.Version) > 0 {
			best, bestFrom = p, c
		}
	}
	if best == nil {
		if len(others) > 0 {
			errs = append(errs, fmt.Errorf("%w: %s %s is not in the archive (it has %s)", ErrNotFound, name, version, strings.Join(others, ", ")))
		}
		return nil, nil, errors.Join(errs...)
	}
	for i, err := range errs {
		if !errors.Is(err, ErrNotFound) {
			failed[i].log("passing over suite %s: %v", failed[i].Suite, err)
		}
	}
	return best, bestFrom, nil
}

// fileMatches tells whether the file at p has the size and SHA-256 of
// want; false without error when it is absent.
func fileMatches(p string, want FileDigest) (bool, error) {
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() != want.Size {
		return false, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, fmt.Errorf("hashing %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)) == want.SHA256, nil
}
