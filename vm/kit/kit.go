package kit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gofrs/flock"
)

// Kit is a built guest kit in the cache.
type Kit struct {
	// Kernel is the path of the kernel image to boot (QEMU -kernel).
	Kernel string
	// Initramfs is the path of the uncompressed newc cpio archive to pass
	// as the initial ramdisk (QEMU -initrd).
	Initramfs string
	// KernelRelease is the kernel's release (what `uname -r` prints in the
	// guest), also stored in the initramfs as /modules/version. It is empty
	// only for a Source.Kernel whose release could not be told (not an x86
	// bzImage, and no ModulesDir).
	KernelRelease string
	// Digest is the hex SHA-256 naming the kit's directory in the cache; it
	// covers the kernel package or file, the modules selected, the guest
	// binary and the kit format.
	Digest string
	// Modules are the module file names in /modules, in load order
	// (dependencies first), as /modules/order lists them.
	Modules []string
	// ToolPackages are the Debian packages the guest's disk tools (in
	// /tools) were taken from, as NAME=VERSION, sorted.
	ToolPackages []string
}

// kitFormat changes whenever the layout or content rules of a kit change,
// so that kits built by older code are not reused.
const kitFormat = "machinetop guest kit 2"

// File names inside cacheDir/<digest>/.
const (
	kernelFile    = "vmlinuz"
	initramfsFile = "initramfs.cpio"
	metaFile      = "kit.json"
)

type kitMeta struct {
	KernelRelease string   `json:"kernelRelease"`
	Modules       []string `json:"modules"`
	Tools         []string `json:"tools"`
	Source        string   `json:"source"`
}

// Ensure returns the kit for src and the guest binary at guestBinary,
// building it into cacheDir/<digest>/ unless it is there already.
// Packages fetched from the Debian archive are kept in cacheDir/debs/ and
// the archive's verified indices in cacheDir/archive/. Progress goes to
// log (nil for none). Whatever the kernel's source, the guest's disk
// tools (e2fsprogs and the packages holding its libraries, ~5 MB for
// bookworm) come from the archive for the guest architecture.
//
// A first build of the default kit fetches bookworm's InRelease and
// Packages index, the cloud kernel package (~27 MB) and the tools'
// packages, and decompresses them in Go: a few seconds on a fast link. A cached kit costs
// verifying the cached InRelease signatures and hashing the inputs (tens
// of milliseconds) and needs no network: the archive is asked again only
// when its Release was last checked a day ago (debarchive.DefaultMaxAge),
// and if the mirror cannot be reached then, the last verified answer is
// used.
//
// Ensure holds an exclusive lock on cacheDir/lock while it works, so any
// number of processes may share cacheDir; kits and packages appear in it
// only by rename, complete. ctx bounds waiting for the lock, the
// downloads and the build.
//
// Errors name the input at fault: a guest binary that is missing, not a
// static ELF executable, or not for Source.Arch; a Source with
// conflicting fields; an archive that cannot be reached (with a hint to
// set the mirror); a *debarchive.VerificationError naming the file whose
// signature or digest is wrong (InRelease signature, Packages digest, .deb
// digest); a package without a kernel, or modules that do not belong to
// the kernel; tool packages that lack a program or a library the
// programs need (named).
func Ensure(ctx context.Context, cacheDir string, src Source, guestBinary string, log io.Writer) (*Kit, error) {
	if log == nil {
		log = io.Discard
	}
	if cacheDir == "" {
		return nil, errors.New("kit: no cache directory given")
	}
	guest, err := readGuest(guestBinary, src.Arch)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("kit cache: %w", err)
	}
	lock := flock.New(filepath.Join(cacheDir, "lock"))
	locked, err := lock.TryLockContext(ctx, 50*time.Millisecond)
	if err != nil || !locked {
		return nil, fmt.Errorf("kit cache: locking %s: %v", lock.Path(), errors.Join(err, ctx.Err()))
	}
	defer lock.Unlock()
	// Under the lock no other Ensure runs, so build directories left here
	// belong to processes that died. (Partial downloads are kept: they are
	// resumed.)
	old, _ := filepath.Glob(filepath.Join(cacheDir, ".build-*"))
	for _, o := range old {
		os.RemoveAll(o)
	}

	clients := src.archiveClients(cacheDir, log)
	res, err := src.resolveWith(ctx, cacheDir, clients, log)
	if err != nil {
		return nil, err
	}
	toolsArch, err := debArch(src.arch())
	if err != nil {
		return nil, fmt.Errorf("kit tools: %w", err)
	}
	tools, err := fetchTools(ctx, clients, cacheDir, toolsArch)
	if err != nil {
		return nil, err
	}

	// The digest is known before any build: for a package it is the
	// package's bytes (the module selection is a function of them and of
	// wantedModules, both hashed); for a modules tree, the selection is made
	// first, which reads only the few modules it reaches.
	h := sha256.New()
	fmt.Fprintf(h, "%s\nwanted %s\nguest %x\n", kitFormat, strings.Join(wantedModules, ","), sha256.Sum256(guest))
	var (
		release  string
		mods     []*module
		skipped  []string
		describe string
	)
	if res.deb != "" {
		sum := res.debSHA256 // verified while fetching
		if sum == "" {
			if sum, err = hashFile(res.deb); err != nil {
				return nil, err
			}
		}
		fmt.Fprintf(h, "deb %s\n", sum)
		describe = "package " + filepath.Base(res.deb)
	} else {
		sum, err := hashFile(res.kernel)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(h, "kernel %s\n", sum)
		describe = "kernel " + res.kernel
		release, mods, skipped, err = selectFromDir(res, log)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(h, "release %s\n", release)
		for _, m := range mods {
			fmt.Fprintf(h, "module %s %s %x\n", m.name, m.ko, sha256.Sum256(m.data))
		}
	}
	for _, t := range tools {
		fmt.Fprintf(h, "tool %s %s\n", t.name, t.sha256)
	}
	digest := hex.EncodeToString(h.Sum(nil))
	dir := filepath.Join(cacheDir, digest)
	if k, err := loadKit(dir, digest); err == nil {
		return k, nil
	}

	start := time.Now()
	tmp, err := os.MkdirTemp(cacheDir, ".build-")
	if err != nil {
		return nil, fmt.Errorf("kit cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "kit")
	if err := os.Mkdir(out, 0o755); err != nil {
		return nil, err
	}
	if res.deb != "" {
		fmt.Fprintf(log, "kit: reading %s\n", filepath.Base(res.deb))
		tree, err := extractDeb(ctx, res.deb, filepath.Join(tmp, "stage"))
		if err != nil {
			return nil, err
		}
		release = tree.release
		mods, skipped, err = selectModules(wantedModules, indexLoader(tree.modules, release))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Base(res.deb), err)
		}
		if err := os.Rename(tree.kernel, filepath.Join(out, kernelFile)); err != nil {
			return nil, err
		}
	} else {
		f, err := os.Open(res.kernel)
		if err != nil {
			return nil, err
		}
		err = copyToFile(filepath.Join(out, kernelFile), f, 0o644)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	if err := checkUniqueFiles(mods); err != nil {
		return nil, err
	}
	if len(skipped) > 0 {
		fmt.Fprintf(log, "kit: not modules in this kernel (built in or absent): %s\n", strings.Join(skipped, " "))
	}
	fmt.Fprintf(log, "kit: kernel %s, modules in load order: %s\n", release, strings.Join(moduleNames(mods), " "))
	toolDir := filepath.Join(tmp, "tools")
	if err := os.Mkdir(toolDir, 0o755); err != nil {
		return nil, err
	}
	tree, err := stageTools(ctx, tools, toolDir)
	if err != nil {
		return nil, err
	}
	entries, err := selectTools(tree, src.arch(), tools)
	if err != nil {
		return nil, err
	}
	var toolNames []string
	for _, t := range tools {
		toolNames = append(toolNames, t.name+"="+t.version)
	}
	fmt.Fprintf(log, "kit: disk tools from %s\n", strings.Join(toolNames, " "))

	f, err := os.Create(filepath.Join(out, initramfsFile))
	if err != nil {
		return nil, err
	}
	if err := writeInitramfs(f, guest, release, mods, entries); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing initramfs: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	meta := kitMeta{KernelRelease: release, Source: describe, Tools: toolNames}
	for _, m := range mods {
		meta.Modules = append(meta.Modules, m.ko)
	}
	mb, _ := json.MarshalIndent(meta, "", "  ")
	if err := os.WriteFile(filepath.Join(out, metaFile), append(mb, '\n'), 0o644); err != nil {
		return nil, err
	}
	// The kit directory appears complete or not at all.
	if err := os.Rename(out, dir); err != nil {
		if k, err2 := loadKit(dir, digest); err2 == nil {
			return k, nil
		}
		return nil, fmt.Errorf("kit cache: %w", err)
	}
	fmt.Fprintf(log, "kit: built %s in %s\n", digest[:12], time.Since(start).Round(time.Millisecond))
	return loadKit(dir, digest)
}

// selectFromDir selects the modules of a Source.Kernel's ModulesDir and
// tells the kernel release: the modules' vermagic, else the bzImage's
// version string, else the directory's name.
func selectFromDir(res resolvedSource, log io.Writer) (string, []*module, []string, error) {
	release := kernelRelease(res.kernel)
	if res.modulesDir == "" {
		return release, nil, nil, nil
	}
	idx, err := indexModulesDir(res.modulesDir)
	if err != nil {
		return "", nil, nil, err
	}
	if len(idx) == 0 {
		return "", nil, nil, fmt.Errorf("kit source: no modules (*.ko*) under %s", res.modulesDir)
	}
	mods, skipped, err := selectModules(wantedModules, indexLoader(idx, release))
	if err != nil {
		return "", nil, nil, fmt.Errorf("%s: %w", res.modulesDir, err)
	}
	for _, m := range mods {
		if m.release == "" {
			continue
		}
		if release == "" {
			release = m.release
		} else if m.release != release {
			return "", nil, nil, fmt.Errorf("%s: module %s is for kernel %s, others for %s", res.modulesDir, m.fromPath, m.release, release)
		}
	}
	if release == "" {
		release = filepath.Base(filepath.Clean(res.modulesDir))
	}
	return release, mods, skipped, nil
}

// loadKit returns the kit in dir if it is complete.
func loadKit(dir, digest string) (*Kit, error) {
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return nil, err
	}
	var meta kitMeta
	if err := json.Unmarshal(b, &meta); err != nil {
		return nil, fmt.Errorf("kit %s: %w", dir, err)
	}
	k := &Kit{
		Kernel:        filepath.Join(dir, kernelFile),
		Initramfs:     filepath.Join(dir, initramfsFile),
		KernelRelease: meta.KernelRelease,
		Digest:        digest,
		Modules:       meta.Modules,
		ToolPackages:  meta.Tools,
	}
	for _, p := range []string{k.Kernel, k.Initramfs} {
		if _, err := os.Stat(p); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// readGuest reads the guest binary and checks that it can be /init: an ELF
// executable without a program interpreter (statically linked), since the
// initramfs has no dynamic loader or libraries, and for the GOARCH arch
// when arch is not empty.
func readGuest(p, arch string) ([]byte, error) {
	if p == "" {
		return nil, errors.New("kit: no guest binary given (build it with `make`)")
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("guest binary: %w (build it with `make`)", err)
	}
	if err := checkStaticELF(bytes.NewReader(b), arch); err != nil {
		return nil, fmt.Errorf("guest binary %s: %w (build it with `make`)", p, err)
	}
	return b, nil
}

// elfMachines maps GOARCH to the ELF machine a binary for it has.
var elfMachines = map[string]elf.Machine{
	"amd64":   elf.EM_X86_64,
	"arm64":   elf.EM_AARCH64,
	"386":     elf.EM_386,
	"arm":     elf.EM_ARM,
	"riscv64": elf.EM_RISCV,
	"ppc64le": elf.EM_PPC64,
	"s390x":   elf.EM_S390,
}

// checkStaticELF checks that b is a statically linked ELF executable, for
// GOARCH arch when arch is not empty.
func checkStaticELF(r io.ReaderAt, arch string) error {
	f, err := elf.NewFile(r)
	if err != nil {
		return fmt.Errorf("not an ELF executable (want a static linux binary): %w", err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("ELF type %s is not an executable", f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked; /init must be static (build with CGO_ENABLED=0)")
		}
	}
	if arch != "" {
		want, ok := elfMachines[arch]
		if !ok {
			return fmt.Errorf("unknown architecture %s", arch)
		}
		if f.Machine != want {
			return fmt.Errorf("built for %s, not %s", f.Machine, arch)
		}
	}
	return nil
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// CachedKit is one built kit in a cache directory.
type CachedKit struct {
	// Dir is the kit's directory; Source describes what it was built
	// from (a kernel package or file); ModTime is when it was built.
	Dir     string
	Source  string
	ModTime time.Time
}

// ListCache returns the kits built in cacheDir (see Ensure), in no
// particular order. Build directories and downloads are not kits.
func ListCache(cacheDir string) ([]CachedKit, error) {
	ents, err := os.ReadDir(cacheDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []CachedKit
	for _, e := range ents {
		dir := filepath.Join(cacheDir, e.Name())
		b, err := os.ReadFile(filepath.Join(dir, metaFile))
		if err != nil || !e.IsDir() {
			continue
		}
		var m kitMeta
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, CachedKit{Dir: dir, Source: m.Source, ModTime: fi.ModTime()})
	}
	return out, nil
}

// LockCache takes cacheDir's lock (the one Ensure holds while it works)
// if it is free, and returns its release; ok is false when a build is
// under way.
func LockCache(cacheDir string) (unlock func(), ok bool) {
	l := flock.New(filepath.Join(cacheDir, "lock"))
	if got, err := l.TryLock(); err != nil || !got {
		return nil, false
	}
	return func() { l.Unlock() }, true
}

// LeftoverGlobs are the patterns (relative to a cache directory) of what
// an interrupted Ensure leaves: build directories, and partial downloads
// of packages (resumed by the next download of the same package).
var LeftoverGlobs = []string{".build-*", "debs/*.partial-*"}
