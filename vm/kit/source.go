package kit

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/machinetop/machinetop/vm/kit/debarchive"
)

// Source says where the kernel and its modules come from. Set at most one
// of Deb and Kernel; the zero value means Debian's cloud kernel for the
// host architecture, fetched from the Debian archive and verified.
type Source struct {
	// Deb is the path of a Debian kernel image package (.deb), such as
	// linux-image-6.1.0-50-cloud-amd64_6.1.176-1_amd64.deb. The kernel is
	// its boot/vmlinuz-<release> and the modules come from its
	// lib/modules/<release> tree. A kernel metapackage (one that depends on
	// a linux-image-* package, e.g. linux-image-cloud-amd64) is followed:
	// the image package it names is fetched from the archive.
	Deb string

	// Kernel is the path of a kernel image (vmlinuz, bzImage) to boot as is.
	Kernel string
	// ModulesDir, used only with Kernel, is a /lib/modules/<release> tree
	// holding the kernel's modules (.ko, .ko.xz, .ko.zst or .ko.gz). Empty
	// means no modules: the kernel must have the virtio drivers built in.
	ModulesDir string

	// Package, used only when Deb and Kernel are empty, names the kernel
	// package to fetch from the archive instead of the default
	// linux-image-cloud-<debarch>; e.g. linux-image-amd64, Debian's
	// generic kernel, which has 9p as modules.
	Package string

	// Arch is the guest architecture as a GOARCH ("amd64", "arm64"); empty
	// means the host's. It picks the Debian architecture of the default
	// package (and of Package), and when set the guest binary must be a
	// linux/<Arch> executable.
	Arch string

	// Mirror is the base URL of the Debian archive packages come from;
	// empty means $MACHINETOP_DEBIAN_MIRROR, else
	// debarchive.DefaultMirror.
	Mirror string
	// SecurityMirror is the base URL of the archive of Debian's security
	// suite (<Suite>-security), which is consulted too, since kernel
	// security fixes appear there first; empty means
	// $MACHINETOP_DEBIAN_SECURITY_MIRROR, else
	// debarchive.DefaultSecurityMirror. "none" consults only Mirror.
	SecurityMirror string
	// Suite is the Debian release to take packages from; empty means
	// $MACHINETOP_DEBIAN_SUITE, else DefaultSuite.
	Suite string
}

// DefaultSuite is the Debian release the kernel comes from by default
// (Debian 12, kernel 6.1 LTS), the one the guest's boot path is tested with.
const DefaultSuite = "bookworm"

// Environment variables that configure the archive when the Source's own
// fields are empty.
const (
	MirrorEnv         = "MACHINETOP_DEBIAN_MIRROR"
	SecurityMirrorEnv = "MACHINETOP_DEBIAN_SECURITY_MIRROR"
	SuiteEnv          = "MACHINETOP_DEBIAN_SUITE"
)

// debArch is the Debian architecture name for a Go GOARCH.
func debArch(goarch string) (string, error) {
	switch goarch {
	case "amd64", "arm64", "riscv64", "ppc64le", "s390x":
		return goarch, nil
	case "386":
		return "i386", nil
	case "arm":
		return "armhf", nil
	}
	return "", fmt.Errorf("no Debian kernel package for architecture %s", goarch)
}

// arch is the GOARCH the Source is for.
func (s Source) arch() string {
	if s.Arch != "" {
		return s.Arch
	}
	return runtime.GOARCH
}

// resolvedSource is a Source after resolution: either a kernel image
// package on disk, or a kernel file with an optional modules tree.
type resolvedSource struct {
	deb string
	// debSHA256 is the hex SHA-256 of deb when it came from the archive
	// and was verified against it; "" for a package the caller gave.
	debSHA256  string
	kernel     string
	modulesDir string
}

// resolve turns s into files on disk, downloading from the archive as
// needed: packages go to cacheDir/debs, the archive's indices to
// cacheDir/archive.
func (s Source) resolve(ctx context.Context, cacheDir string, log io.Writer) (resolvedSource, error) {
	return s.resolveWith(ctx, cacheDir, s.archiveClients(cacheDir, log), log)
}

// resolveWith is resolve with the archive's clients given (archiveClients).
func (s Source) resolveWith(ctx context.Context, cacheDir string, clients []*debarchive.Client, log io.Writer) (resolvedSource, error) {
	switch {
	case s.Deb != "" && s.Kernel != "":
		return resolvedSource{}, errors.New("kit source: set either Deb or Kernel, not both")
	case s.ModulesDir != "" && s.Kernel == "":
		return resolvedSource{}, errors.New("kit source: ModulesDir needs Kernel (a .deb carries its own modules)")
	case s.Package != "" && (s.Deb != "" || s.Kernel != ""):
		return resolvedSource{}, errors.New("kit source: Package is used only when Deb and Kernel are empty")
	case s.Kernel != "":
		if err := checkFile(s.Kernel, "kernel"); err != nil {
			return resolvedSource{}, err
		}
		if s.Arch != "" {
			if got := kernelArch(s.Kernel); got != "" && got != s.Arch {
				return resolvedSource{}, fmt.Errorf("kit source: kernel %s is an %s kernel, not %s", s.Kernel, got, s.Arch)
			}
		}
		if s.ModulesDir != "" {
			fi, err := os.Stat(s.ModulesDir)
			if err != nil {
				return resolvedSource{}, fmt.Errorf("kit source: modules directory: %w", err)
			}
			if !fi.IsDir() {
				return resolvedSource{}, fmt.Errorf("kit source: modules directory %s is not a directory (want a /lib/modules/<release> tree)", s.ModulesDir)
			}
		}
		return resolvedSource{kernel: s.Kernel, modulesDir: s.ModulesDir}, nil
	case s.Deb != "":
		if err := checkFile(s.Deb, "kernel package"); err != nil {
			return resolvedSource{}, err
		}
		ctl, err := readDebControl(s.Deb)
		if err != nil {
			return resolvedSource{}, err
		}
		if s.Arch != "" {
			want, err := debArch(s.Arch)
			if err != nil {
				return resolvedSource{}, fmt.Errorf("kit source: %w", err)
			}
			if got := ctl["Architecture"]; got != "" && got != "all" && got != want {
				return resolvedSource{}, fmt.Errorf("kit source: kernel package %s is for %s, not %s", s.Deb, got, want)
			}
		}
		dep, ok := kernelImageDep(ctl["Depends"])
		if !ok {
			return resolvedSource{deb: s.Deb}, nil
		}
		fmt.Fprintf(log, "kit: %s is a metapackage for %s\n", filepath.Base(s.Deb), dep.Name)
		return fetchImage(ctx, clients, cacheDir, ctl["Architecture"], dep)
	}
	arch, err := debArch(s.arch())
	if err != nil {
		return resolvedSource{}, fmt.Errorf("kit source: %w; give Source.Deb or Source.Kernel", err)
	}
	pkg := s.Package
	if pkg == "" {
		pkg = "linux-image-cloud-" + arch
	}
	p, from, err := debarchive.Find(ctx, clients, arch, pkg, "")
	if err != nil {
		return resolvedSource{}, archiveError(pkg, arch, err)
	}
	if dep, ok := kernelImageDep(p.Depends); ok {
		return fetchImage(ctx, clients, cacheDir, arch, dep)
	}
	return download(ctx, from, p, cacheDir)
}

// fetchImage fetches the kernel image package dep names for the Debian
// architecture arch, from the suite that has the version dep pins (the
// newest of all suites when dep pins none). When a signed image name is not in the archive it
// tries the "-unsigned" variant, which some architectures and suites ship
// instead.
func fetchImage(ctx context.Context, clients []*debarchive.Client, cacheDir, arch string, dep debDep) (resolvedSource, error) {
	p, from, err := debarchive.Find(ctx, clients, arch, dep.Name, dep.Version)
	if errors.Is(err, debarchive.ErrNotFound) && !strings.HasSuffix(dep.Name, "-unsigned") {
		if p2, from2, err2 := debarchive.Find(ctx, clients, arch, dep.Name+"-unsigned", dep.Version); err2 == nil {
			p, from, err = p2, from2, nil
		}
	}
	if err != nil {
		err = archiveError(dep.Name, arch, err)
		if dep.Version != "" && errors.Is(err, debarchive.ErrNotFound) {
			err = fmt.Errorf("%w; the metapackage wants exactly %s: give the image package (.deb) itself, or a newer metapackage", err, dep.Version)
		}
		return resolvedSource{}, err
	}
	return download(ctx, from, p, cacheDir)
}

// download fetches p into cacheDir/debs with c, the client that found it.
func download(ctx context.Context, c *debarchive.Client, p *debarchive.Package, cacheDir string) (resolvedSource, error) {
	deb, err := c.Download(ctx, p, filepath.Join(cacheDir, "debs"))
	if err != nil {
		return resolvedSource{}, fmt.Errorf("kit source: %w", err)
	}
	return resolvedSource{deb: deb, debSHA256: p.SHA256}, nil
}

// archiveError wraps an archive failure for package pkg with what to do.
func archiveError(pkg, arch string, err error) error {
	var ve *debarchive.VerificationError
	switch {
	case errors.As(err, &ve):
		return fmt.Errorf("kit source: %s: %w", pkg, err)
	case errors.Is(err, debarchive.ErrNotFound):
		return fmt.Errorf("kit source: kernel package %s for %s: %w", pkg, arch, err)
	}
	return fmt.Errorf("kit source: cannot get kernel package %s for %s from the Debian archive: %w (set $%s to a reachable mirror, or use a kernel file: Source.Deb or Source.Kernel, --kernel on the command line)",
		pkg, arch, err, MirrorEnv)
}

// archiveClients are the archive suites packages are looked up in: the
// Source's suite on its mirror and, unless turned off, the security suite.
// Their caches live in cacheDir/archive; their messages go to log.
func (s Source) archiveClients(cacheDir string, log io.Writer) []*debarchive.Client {
	pick := func(field, env, def string) string {
		if field != "" {
			return field
		}
		if v := os.Getenv(env); v != "" {
			return v
		}
		return def
	}
	suite := pick(s.Suite, SuiteEnv, DefaultSuite)
	logf := func(m string) { fmt.Fprintf(log, "kit: %s\n", m) }
	progress := func(p debarchive.Progress) {
		if p.Done > 0 {
			fmt.Fprintf(log, "kit: %s: %.1f of %.1f MB\n", p.File, float64(p.Done)/1e6, float64(p.Total)/1e6)
		}
	}
	archive := filepath.Join(cacheDir, "archive")
	clients := []*debarchive.Client{{
		Mirror: pick(s.Mirror, MirrorEnv, debarchive.DefaultMirror), Suite: suite,
		CacheDir: archive, Log: logf, Progress: progress,
	}}
	if sec := pick(s.SecurityMirror, SecurityMirrorEnv, debarchive.DefaultSecurityMirror); sec != "none" {
		clients = append(clients, &debarchive.Client{
			Mirror: sec, Suite: suite + "-security",
			CacheDir: archive, Log: logf, Progress: progress,
		})
	}
	return clients
}

func checkFile(p, what string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("kit source: %s: %w", what, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("kit source: %s %s is not a regular file", what, p)
	}
	return nil
}

// debTree is what extractDeb takes out of a kernel image package.
type debTree struct {
	release string
	kernel  string // extracted vmlinuz
	modules moduleIndex
}

// extractDeb reads the data.tar of the image package deb once, writing its
// boot/vmlinuz-<release> to dir/vmlinuz and every module file, as stored, to
// dir/modules/. Modules are staged on disk rather than kept in memory
// because the closure of the wanted set is known only once all .modinfo
// sections can be read, and a generic kernel's modules take hundreds of MB.
func extractDeb(ctx context.Context, deb, dir string) (*debTree, error) {
	tr, closeFn, err := openDebMember(deb, "data.tar")
	if err != nil {
		return nil, err
	}
	defer closeFn()
	modDir := filepath.Join(dir, "modules")
	if err := os.MkdirAll(modDir, 0o755); err != nil {
		return nil, err
	}
	t := &debTree{modules: moduleIndex{}}
	releases := map[string]bool{}
	n := 0
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: data.tar: %w", deb, err)
		}
		if h.Typeflag != 0 && h.Typeflag != '0' { // regular files only
			continue
		}
		name := cleanTarName(h.Name)
		if rel, ok := strings.CutPrefix(name, "boot/vmlinuz-"); ok && !strings.Contains(rel, "/") {
			if t.kernel != "" {
				return nil, fmt.Errorf("%s holds more than one boot/vmlinuz-*", deb)
			}
			t.kernel = filepath.Join(dir, "vmlinuz")
			t.release = rel
			if err := copyToFile(t.kernel, tr, 0o644); err != nil {
				return nil, err
			}
			continue
		}
		rest, ok := strings.CutPrefix(name, "lib/modules/")
		if !ok {
			rest, ok = strings.CutPrefix(name, "usr/lib/modules/")
		}
		if !ok {
			continue
		}
		release, relPath, _ := strings.Cut(rest, "/")
		ko, comp, isMod := moduleFileName(path.Base(relPath))
		if !isMod {
			continue
		}
		releases[release] = true
		n++
		p := filepath.Join(modDir, fmt.Sprintf("%05d-%s%s", n, ko, comp))
		if err := copyToFile(p, tr, 0o644); err != nil {
			return nil, err
		}
		t.modules.add(&moduleFile{ko: ko, path: p, comp: comp, rel: relPath})
	}
	if t.kernel == "" {
		return nil, fmt.Errorf("%s: %w: is it a kernel image package (linux-image-<release>-<flavour>)?", deb, errNotKernelDeb)
	}
	for r := range releases {
		if r != t.release {
			return nil, fmt.Errorf("%s: modules for release %s next to kernel %s", deb, r, t.release)
		}
	}
	return t, nil
}

func copyToFile(p string, r io.Reader, mode os.FileMode) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// kernelArch tells the GOARCH of a kernel image from its header: "amd64"
// for an x86 bzImage (the boot protocol's "HdrS" at 0x202,
// Documentation/arch/x86/boot.rst), "arm64" for an arm64 Image ("ARM\x64"
// at 0x38, Documentation/arch/arm64/booting.rst), "" for anything else (a
// compressed Image among them), which is not checked.
func kernelArch(kernel string) string {
	f, err := os.Open(kernel)
	if err != nil {
		return ""
	}
	defer f.Close()
	var hdr [0x206]byte
	n, _ := io.ReadFull(f, hdr[:])
	switch {
	case n >= 0x3c && string(hdr[0x38:0x3c]) == "ARM\x64":
		return "arm64"
	case n == len(hdr) && string(hdr[0x202:0x206]) == "HdrS":
		return "amd64"
	}
	return ""
}

// kernelRelease reads the release string an x86 bzImage carries: the boot
// protocol header ("HdrS" at 0x202, Documentation/arch/x86/boot.rst) has at
// 0x20E the offset, less 0x200, of a NUL-terminated version string whose
// first word is the release. "" for other images.
func kernelRelease(kernel string) string {
	f, err := os.Open(kernel)
	if err != nil {
		return ""
	}
	defer f.Close()
	var hdr [0x210]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil || string(hdr[0x202:0x206]) != "HdrS" {
		return ""
	}
	off := int64(binary.LittleEndian.Uint16(hdr[0x20E:])) + 0x200
	if off <= 0x200 {
		return ""
	}
	var buf [256]byte
	n, _ := f.ReadAt(buf[:], off)
	s := buf[:n]
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	if fs := strings.Fields(string(s)); len(fs) > 0 {
		return fs[0]
	}
	return ""
}

// GenericPackage is the name of Debian's generic kernel metapackage for
// the host architecture (linux-image-amd64, linux-image-arm64), which has
// 9p and virtiofs as modules; the default cloud kernel lacks 9p.
func GenericPackage() (string, error) { return GenericPackageFor(runtime.GOARCH) }

// GenericPackageFor is GenericPackage for the GOARCH goarch.
func GenericPackageFor(goarch string) (string, error) {
	a, err := debArch(goarch)
	if err != nil {
		return "", err
	}
	return "linux-image-" + a, nil
}
