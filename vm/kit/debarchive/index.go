package debarchive

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/ulikunitz/xz"
	"pault.ag/go/debian/control"
	"pault.ag/go/debian/version"
)

// ErrNotFound is returned (wrapped) by Lookup for a package name that the
// suite's index does not have.
var ErrNotFound = errors.New("package not found")

// Package is one binary package as an index lists it (deb-control(5)
// fields of a Packages paragraph).
type Package struct {
	Name         string `json:"name"`
	Version      string `json:"version"`
	Architecture string `json:"architecture"`
	// Filename is the .deb's path relative to the mirror's root, e.g.
	// "pool/main/l/linux-signed-amd64/linux-image-cloud-amd64_6.1.176-1_amd64.deb".
	Filename string `json:"filename"`
	Size     int64  `json:"size"`   // bytes
	SHA256   string `json:"sha256"` // hex
	// Depends, PreDepends and Provides are the raw relationship fields
	// (Debian Policy §7.1), e.g. "linux-image-6.1.0-50-cloud-amd64 (= 6.1.176-1)".
	Depends    string `json:"depends,omitempty"`
	PreDepends string `json:"preDepends,omitempty"`
	Provides   string `json:"provides,omitempty"`
	// URL is where the .deb is downloaded from: the mirror of the Client
	// that looked the package up, joined with Filename. It is set by
	// Lookup, not stored in an index.
	URL string `json:"-"`
}

// FileName is the name the package gets in a download directory:
// NAME_VERSION_ARCH.deb with an epoch's ":" written "%3a", as apt names
// downloads.
func (p *Package) FileName() string {
	return p.Name + "_" + strings.ReplaceAll(p.Version, ":", "%3a") + "_" + p.Architecture + ".deb"
}

// Index is a parsed Packages index of one suite, component and
// architecture.
type Index struct {
	Arch     string
	Release  *Release
	packages map[string][]*Package
}

// Package returns the highest version (by Debian version ordering, Debian
// Policy §5.6.12) of the package called name.
func (ix *Index) Package(name string) (*Package, bool) {
	ps := ix.packages[name]
	if len(ps) == 0 {
		return nil, false
	}
	best := ps[0]
	for _, p := range ps[1:] {
		if compareVersions(p.Version, best.Version) > 0 {
			best = p
		}
	}
	return best, true
}

// compareVersions orders two Debian version strings as dpkg does (Debian
// Policy §5.6.12): negative when a < b, 0 when equal, positive when a > b.
// A version that does not parse sorts before any that does.
func compareVersions(a, b string) int {
	va, errA := version.Parse(a)
	vb, errB := version.Parse(b)
	switch {
	case errA != nil && errB != nil:
		return strings.Compare(a, b)
	case errA != nil:
		return -1
	case errB != nil:
		return 1
	}
	return version.Compare(va, vb)
}

// Len is the number of package names in the index.
func (ix *Index) Len() int { return len(ix.packages) }

// readIndex parses the Packages file at path, compressed as its name's
// suffix says (.gz, .xz, or none).
func readIndex(path string) (map[string][]*Package, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = bufio.NewReaderSize(f, 1<<20)
	switch {
	case strings.HasSuffix(path, ".gz"):
		gr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		r = gr
	case strings.HasSuffix(path, ".xz"):
		xr, err := xz.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		r = xr
	}
	pkgs, err := parseIndex(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pkgs, nil
}

// parseIndex reads the paragraphs of a Packages file.
func parseIndex(r io.Reader) (map[string][]*Package, error) {
	pr, err := control.NewParagraphReader(r, nil)
	if err != nil {
		return nil, err
	}
	out := map[string][]*Package{}
	for {
		para, err := pr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		v := para.Values
		p := &Package{
			Name:         v["Package"],
			Version:      v["Version"],
			Architecture: v["Architecture"],
			Filename:     v["Filename"],
			SHA256:       strings.ToLower(v["SHA256"]),
			Depends:      v["Depends"],
			PreDepends:   v["Pre-Depends"],
			Provides:     v["Provides"],
		}
		if p.Name == "" {
			continue
		}
		if p.Size, err = strconv.ParseInt(v["Size"], 10, 64); err != nil || p.Filename == "" || len(p.SHA256) != 64 {
			return nil, fmt.Errorf("package %s %s: needs Filename, Size and SHA256", p.Name, p.Version)
		}
		out[p.Name] = append(out[p.Name], p)
	}
}
