package kit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/google/renameio/v2"
)

// Source says where the kernel and its modules come from. Set at most one
// of Deb and Kernel; the zero value means the distribution's cloud kernel
// for the host architecture.
type Source struct {
	// Deb is the path of a Debian kernel image package (.deb), such as
	// linux-image-6.1.0-57-cloud-amd64_6.1.192-3_amd64.deb. The kernel is
	// its boot/vmlinuz-<release> and the modules come from its
	// lib/modules/<release> tree. A kernel metapackage (one that depends on
	// a linux-image-* package, e.g. linux-image-cloud-amd64) is followed:
	// the image package it names is fetched with `apt-get download`.
	Deb string

	// Kernel is the path of a kernel image (vmlinuz, bzImage) to boot as is.
	Kernel string
	// ModulesDir, used only with Kernel, is a /lib/modules/<release> tree
	// holding the kernel's modules (.ko, .ko.xz, .ko.zst or .ko.gz). Empty
	// means no modules: the kernel must have the virtio drivers built in.
	ModulesDir string

	// Package, used only when Deb and Kernel are empty, names the kernel
	// package to fetch with `apt-get download` instead of the default
	// linux-image-cloud-<debarch>; e.g. linux-image-amd64, Debian's
	// generic kernel, which has 9p as modules.
	Package string
}

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

// defaultPackage is the kernel metapackage used for the zero Source.
func defaultPackage() (string, error) {
	a, err := debArch(runtime.GOARCH)
	if err != nil {
		return "", err
	}
	return "linux-image-cloud-" + a, nil
}

// resolvedSource is a Source after resolution: either a kernel image
// package on disk, or a kernel file with an optional modules tree.
type resolvedSource struct {
	deb        string
	kernel     string
	modulesDir string
}

// resolve turns s into files on disk, downloading into debsDir as needed.
func (s Source) resolve(ctx context.Context, debsDir string, log io.Writer) (resolvedSource, error) {
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
		deb, err := followMeta(ctx, s.Deb, debsDir, log)
		return resolvedSource{deb: deb}, err
	}
	pkg := s.Package
	if pkg == "" {
		var err error
		if pkg, err = defaultPackage(); err != nil {
			return resolvedSource{}, fmt.Errorf("kit source: %w; give Source.Deb or Source.Kernel", err)
		}
	}
	deb, err := resolvePackage(ctx, pkg, debsDir, log)
	return resolvedSource{deb: deb}, err
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

// followMeta returns deb itself when it is a kernel image package, or the
// image package it depends on (downloaded into debsDir) when it is a
// metapackage.
func followMeta(ctx context.Context, deb, debsDir string, log io.Writer) (string, error) {
	ctl, err := readDebControl(deb)
	if err != nil {
		return "", err
	}
	dep, ok := kernelImageDep(ctl["Depends"])
	if !ok {
		return deb, nil
	}
	fmt.Fprintf(log, "kit: %s is a metapackage for %s\n", filepath.Base(deb), dep.Name)
	return fetchImage(ctx, dep, ctl["Architecture"], debsDir, log)
}

// fetchImage returns the image package dep names, from debsDir when a
// previous call downloaded it, else by `apt-get download`. When that fails
// for a signed image name it tries the "-unsigned" variant, which some
// architectures and suites ship instead.
func fetchImage(ctx context.Context, dep debDep, arch, debsDir string, log io.Writer) (string, error) {
	if dep.Version != "" && arch != "" {
		p := filepath.Join(debsDir, debFileName(dep.Name, dep.Version, arch))
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	spec := dep.Name
	if dep.Version != "" {
		spec += "=" + dep.Version
	}
	p, err := aptDownload(ctx, debsDir, spec, log)
	if err != nil && !strings.HasSuffix(dep.Name, "-unsigned") {
		spec = dep.Name + "-unsigned"
		if dep.Version != "" {
			spec += "=" + dep.Version
		}
		if p2, err2 := aptDownload(ctx, debsDir, spec, log); err2 == nil {
			return p2, nil
		}
	}
	return p, err
}

// aptListsDir is where apt keeps the package lists `apt-get update` fetches.
// A resolution of a package name to an image package is reused while these
// lists are unchanged, since only they can change the candidate version.
const aptListsDir = "/var/lib/apt/lists"

// aptListsStamp fingerprints the apt package lists (names, sizes, mtimes);
// "" when they cannot be read.
func aptListsStamp() string {
	ents, err := os.ReadDir(aptListsDir)
	if err != nil {
		return ""
	}
	h := sha256.New()
	n := 0
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() || e.Name() == "lock" {
			continue
		}
		fmt.Fprintf(h, "%s %d %d\n", e.Name(), fi.Size(), fi.ModTime().UnixNano())
		n++
	}
	if n == 0 {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}

// resolution records which image package a package name led to.
type resolution struct {
	Package   string `json:"package"`
	ListStamp string `json:"aptListsStamp"`
	Image     string `json:"image"` // file name in debsDir
}

// resolvePackage downloads pkg (a metapackage such as
// linux-image-cloud-amd64, or an image package) and, for a metapackage, the
// image package it depends on; it returns the image package's path.
func resolvePackage(ctx context.Context, pkg, debsDir string, log io.Writer) (string, error) {
	recPath := filepath.Join(debsDir, "resolved-"+pkg+".json")
	stamp := aptListsStamp()
	if stamp != "" {
		if b, err := os.ReadFile(recPath); err == nil {
			var rec resolution
			if json.Unmarshal(b, &rec) == nil && rec.Package == pkg && rec.ListStamp == stamp && rec.Image != "" {
				p := filepath.Join(debsDir, rec.Image)
				if _, err := os.Stat(p); err == nil {
					return p, nil
				}
			}
		}
	}
	meta, err := aptDownload(ctx, debsDir, pkg, log)
	if err != nil {
		return "", err
	}
	image, err := followMeta(ctx, meta, debsDir, log)
	if err != nil {
		return "", err
	}
	if stamp != "" {
		b, _ := json.Marshal(resolution{Package: pkg, ListStamp: stamp, Image: filepath.Base(image)})
		if err := renameio.WriteFile(recPath, b, 0o644); err != nil {
			return "", err
		}
	}
	return image, nil
}

// aptDownload runs `apt-get download spec` in a fresh directory inside dir
// and moves the one .deb it yields into dir, returning its path. An existing
// file of the same name is replaced by rename, so a reader never sees a
// partial package.
func aptDownload(ctx context.Context, dir, spec string, log io.Writer) (string, error) {
	if _, err := exec.LookPath("apt-get"); err != nil {
		return "", fmt.Errorf("apt-get not found: the default kernel comes from Debian packages; on other systems give Source.Deb (a linux-image .deb) or Source.Kernel (a vmlinuz)")
	}
	tmp, err := os.MkdirTemp(dir, ".download-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(log, "kit: apt-get download %s\n", spec)
	cmd := exec.CommandContext(ctx, "apt-get", "download", spec)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("apt-get download %s: %w", spec, ctx.Err())
		}
		msg := strings.TrimSpace(string(out))
		hint := ""
		if strings.Contains(msg, "Unable to locate package") || strings.Contains(msg, "no installation candidate") ||
			strings.Contains(msg, "Can't select") || strings.Contains(msg, "not found") || strings.Contains(msg, "Version '") {
			hint = ": run `sudo apt-get update` first (or give Source.Deb / Source.Kernel)"
		}
		return "", fmt.Errorf("apt-get download %s failed%s\n%s", spec, hint, lastLines(msg, 5))
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("apt-get download %s produced %d .deb files, want 1", spec, len(debs))
	}
	dst := filepath.Join(dir, filepath.Base(debs[0]))
	if err := os.Chmod(debs[0], 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(debs[0], dst); err != nil {
		return "", err
	}
	return dst, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
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
func GenericPackage() (string, error) {
	a, err := debArch(runtime.GOARCH)
	if err != nil {
		return "", err
	}
	return "linux-image-" + a, nil
}
