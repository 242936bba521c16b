package kit

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/blakesmith/ar"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"pault.ag/go/debian/control"
	"pault.ag/go/debian/dependency"
)

// A .deb (deb(5)) is an ar(5) archive whose members are, in this order,
// "debian-binary" ("2.0\n"), "control.tar[.xz|.zst|.gz]" and
// "data.tar[.xz|.zst|.gz]".

// openDebMember opens the deb at path and returns a tar reader over its
// member whose name, without compression suffix, is want ("control.tar" or
// "data.tar"). The caller must call the returned close function.
func openDebMember(path, want string) (*tar.Reader, func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	closers := []func(){func() { f.Close() }}
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	var magic [8]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil || string(magic[:]) != "!<arch>\n" {
		closeAll()
		return nil, nil, fmt.Errorf("%s is not a Debian package (no ar archive signature)", path)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		closeAll()
		return nil, nil, err
	}
	r := ar.NewReader(bufio.NewReaderSize(f, 1<<20))
	first := true
	for {
		h, err := r.Next()
		if err == io.EOF {
			closeAll()
			return nil, nil, fmt.Errorf("%s has no %s member: not a binary Debian package", path, want)
		}
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("reading %s: %w", path, err)
		}
		// GNU ar ends member names with "/"; dpkg-deb does not.
		name := strings.TrimSuffix(strings.TrimSpace(h.Name), "/")
		if first {
			first = false
			if name != "debian-binary" {
				closeAll()
				return nil, nil, fmt.Errorf("%s: first ar member is %q, not debian-binary: not a Debian package", path, name)
			}
			continue
		}
		if !strings.HasPrefix(name, want) {
			continue
		}
		var dec io.Reader
		switch suffix := strings.TrimPrefix(name, want); suffix {
		case "":
			dec = r
		case ".xz":
			xr, err := xz.NewReader(r)
			if err != nil {
				closeAll()
				return nil, nil, fmt.Errorf("%s: %s: %w", path, name, err)
			}
			dec = xr
		case ".zst":
			zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
			if err != nil {
				closeAll()
				return nil, nil, fmt.Errorf("%s: %s: %w", path, name, err)
			}
			closers = append(closers, zr.Close)
			dec = zr
		case ".gz":
			gr, err := gzip.NewReader(r)
			if err != nil {
				closeAll()
				return nil, nil, fmt.Errorf("%s: %s: %w", path, name, err)
			}
			dec = gr
		default:
			closeAll()
			return nil, nil, fmt.Errorf("%s: member %s has an unsupported compression %q (want .xz, .zst or .gz)", path, name, suffix)
		}
		return tar.NewReader(bufio.NewReaderSize(dec, 1<<20)), closeAll, nil
	}
}

// debControl holds the fields of a package's control file (deb-control(5)).
type debControl map[string]string

// readDebControl reads the control file out of the deb at path.
func readDebControl(path string) (debControl, error) {
	tr, closeFn, err := openDebMember(path, "control.tar")
	if err != nil {
		return nil, err
	}
	defer closeFn()
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("%s: control.tar has no control file", path)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: control.tar: %w", path, err)
		}
		if cleanTarName(h.Name) != "control" {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(tr, 1<<20))
		if err != nil {
			return nil, fmt.Errorf("%s: control: %w", path, err)
		}
		c, err := parseControl(b)
		if err != nil {
			return nil, fmt.Errorf("%s: control: %w", path, err)
		}
		return c, nil
	}
}

// parseControl parses the first paragraph of a control file; a field
// that spans lines keeps its continuation lines, joined by newlines.
func parseControl(b []byte) (debControl, error) {
	pr, err := control.NewParagraphReader(bytes.NewReader(b), nil)
	if err != nil {
		return nil, err
	}
	p, err := pr.Next()
	if err != nil {
		return nil, err
	}
	return debControl(p.Values), nil
}

// debDep is one alternative of a Depends field: a package name and an
// optional exact version ("= VERSION").
type debDep struct {
	Name    string
	Version string // set only for an "(= VERSION)" constraint
}

// kernelImageDep returns the first dependency in a Depends field
// (Debian Policy §7.1) that names a linux-image-* package: what a kernel
// metapackage points at. ok is false for a package that depends on no
// kernel image (a real image package).
func kernelImageDep(depends string) (d debDep, ok bool) {
	if strings.TrimSpace(depends) == "" {
		return debDep{}, false
	}
	deps, err := dependency.Parse(depends)
	if err != nil {
		return debDep{}, false
	}
	for _, rel := range deps.Relations {
		for _, p := range rel.Possibilities {
			if !strings.HasPrefix(p.Name, "linux-image-") || strings.HasSuffix(p.Name, "-dbg") {
				continue
			}
			d = debDep{Name: p.Name}
			if p.Version != nil && p.Version.Operator == "=" {
				d.Version = p.Version.Number
			}
			return d, true
		}
	}
	return debDep{}, false
}

// cleanTarName strips the "./" that dpkg-deb puts before member paths.
func cleanTarName(name string) string {
	name = strings.TrimPrefix(name, "./")
	return strings.TrimPrefix(name, "/")
}

var errNotKernelDeb = errors.New("no boot/vmlinuz-* in the package")
