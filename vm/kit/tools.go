package kit

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"pault.ag/go/debian/dependency"

	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/vm/kit/debarchive"
)

// The guest's /init formats and checks the root disk itself, so that the
// host needs no e2fsprogs (a Mac has none). The kit carries e2fsprogs'
// programs for the guest architecture, taken from the same Debian archive
// as the kernel, with the shared libraries they need and the dynamic
// loader, laid out as guest/proto's boot contract says.

// toolsPackage is the Debian package the guest tools come from; its
// Depends and Pre-Depends give the packages holding their libraries.
const toolsPackage = "e2fsprogs"

// guestTools maps each program the initramfs carries (proto.Mke2fs,
// proto.E2fsck, proto.Resize2fs) to its path in toolsPackage's data.tar.
var guestTools = map[string]string{
	proto.Mke2fs:    "sbin/mke2fs",
	proto.E2fsck:    "sbin/e2fsck",
	proto.Resize2fs: "sbin/resize2fs",
}

// toolsConfig is toolsPackage's mke2fs.conf(5), carried as
// proto.Mke2fsConfig so that the guest makes the same filesystem a
// Debian host's mkfs.ext4 would.
const toolsConfig = "etc/mke2fs.conf"

// e2fsckConfig is the e2fsck.conf(5) the initramfs carries as
// proto.E2fsckConfig. The guest's clock is not to be trusted before the
// agent sets it (a VM without an RTC starts in 1970), so e2fsck must not
// "fix" superblock times that look in the future: that would report a
// repaired disk at every boot.
const e2fsckConfig = "[options]\n\tbroken_system_clock = 1\n"

// maxToolDebs bounds the dependency closure of toolsPackage (about ten
// packages in bookworm), so that a broken index cannot make Ensure fetch
// the archive.
const maxToolDebs = 40

// toolDeb is one package of the tools' dependency closure, on disk.
type toolDeb struct {
	name, version string
	path          string
	sha256        string // verified against the archive
}

// fetchTools looks toolsPackage up for the Debian architecture arch with
// clients, follows Pre-Depends and Depends (the first alternative the
// archive has, an exact "= VERSION" honoured; names the archive lacks,
// such as virtual packages, are passed over: the libraries actually needed
// are checked when the kit is built) and downloads every package into
// cacheDir/debs. The result is sorted by name.
func fetchTools(ctx context.Context, clients []*debarchive.Client, cacheDir, arch string) ([]toolDeb, error) {
	var out []toolDeb
	seen := map[string]bool{}
	queue := []debDep{{Name: toolsPackage}}
	for len(queue) > 0 {
		dep := queue[0]
		queue = queue[1:]
		if seen[dep.Name] {
			continue
		}
		seen[dep.Name] = true
		if len(seen) > maxToolDebs {
			return nil, fmt.Errorf("kit tools: %s needs more than %d packages; is the archive's index sane?", toolsPackage, maxToolDebs)
		}
		p, from, err := debarchive.Find(ctx, clients, arch, dep.Name, dep.Version)
		if err != nil {
			if errors.Is(err, debarchive.ErrNotFound) && dep.Name != toolsPackage {
				continue
			}
			return nil, toolsError(dep.Name, arch, err)
		}
		deb, err := from.Download(ctx, p, filepath.Join(cacheDir, "debs"))
		if err != nil {
			return nil, fmt.Errorf("kit tools: %w", err)
		}
		out = append(out, toolDeb{name: p.Name, version: p.Version, path: deb, sha256: p.SHA256})
		for _, field := range []string{p.PreDepends, p.Depends} {
			deps, err := packageDeps(field)
			if err != nil {
				return nil, fmt.Errorf("kit tools: %s %s: %w", p.Name, p.Version, err)
			}
			for _, d := range deps {
				if !seen[d.Name] {
					queue = append(queue, d)
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// toolsError wraps an archive failure for package pkg with what to do.
func toolsError(pkg, arch string, err error) error {
	var ve *debarchive.VerificationError
	if errors.As(err, &ve) || errors.Is(err, debarchive.ErrNotFound) {
		return fmt.Errorf("kit tools: %s for %s: %w", pkg, arch, err)
	}
	return fmt.Errorf("kit tools: cannot get %s for %s from the Debian archive (the guest formats and checks its disk with it): %w (set $%s to a reachable mirror)",
		pkg, arch, err, MirrorEnv)
}

// packageDeps returns, for each relation of a Depends-style field (Debian
// Policy §7.1), its first alternative without architecture qualifier
// ("libc6:any" is libc6), with the version when it is pinned by "=".
func packageDeps(field string) ([]debDep, error) {
	if strings.TrimSpace(field) == "" {
		return nil, nil
	}
	deps, err := dependency.Parse(field)
	if err != nil {
		return nil, err
	}
	var out []debDep
	for _, rel := range deps.Relations {
		if len(rel.Possibilities) == 0 {
			continue
		}
		p := rel.Possibilities[0]
		d := debDep{Name: p.Name}
		if p.Version != nil && p.Version.Operator == "=" {
			d.Version = p.Version.Number
		}
		out = append(out, d)
	}
	return out, nil
}

// toolFile is one file of the tools' packages, staged on disk.
type toolFile struct {
	path string // staged copy
	pkg  string
}

// toolTree is the files of the tools' packages: regular files by their
// path in the package (no leading "/"), and symbolic links by path with
// their targets.
type toolTree struct {
	files    map[string]toolFile
	symlinks map[string]string
}

// stageTools writes the regular files of every package in debs (but their
// documentation under usr/share) below dir, and records their symbolic
// links.
func stageTools(ctx context.Context, debs []toolDeb, dir string) (*toolTree, error) {
	t := &toolTree{files: map[string]toolFile{}, symlinks: map[string]string{}}
	n := 0
	for _, d := range debs {
		err := func() error {
			tr, closeFn, err := openDebMember(d.path, "data.tar")
			if err != nil {
				return err
			}
			defer closeFn()
			for {
				if err := ctx.Err(); err != nil {
					return err
				}
				h, err := tr.Next()
				if err == io.EOF {
					return nil
				}
				if err != nil {
					return fmt.Errorf("%s: data.tar: %w", d.path, err)
				}
				name := path.Clean(cleanTarName(h.Name))
				if name == "." || strings.HasPrefix(name, "usr/share/") {
					continue
				}
				switch h.Typeflag {
				case '2':
					t.symlinks[name] = h.Linkname
				case 0, '0':
					n++
					p := filepath.Join(dir, fmt.Sprintf("%05d-%s", n, path.Base(name)))
					if err := copyToFile(p, tr, 0o644); err != nil {
						return err
					}
					t.files[name] = toolFile{path: p, pkg: d.name}
				}
			}
		}()
		if err != nil {
			return nil, err
		}
	}
	return t, nil
}

// resolve follows symbolic links from the package path name (relative to
// the root, as in the tree) to a regular file, at most 16 deep.
func (t *toolTree) resolve(name string) (string, toolFile, bool) {
	name = path.Clean(strings.TrimPrefix(name, "/"))
	for range 16 {
		if f, ok := t.files[name]; ok {
			return name, f, true
		}
		target, ok := t.symlinks[name]
		if !ok {
			return "", toolFile{}, false
		}
		if path.IsAbs(target) {
			name = path.Clean(strings.TrimPrefix(target, "/"))
		} else {
			name = path.Clean(path.Join(path.Dir(name), target))
		}
	}
	return "", toolFile{}, false
}

// libraryByName finds the shared object a DT_NEEDED entry names: a file
// or link of that base name in a library directory (lib*/, usr/lib*/,
// with any multiarch subdirectory), the first in path order.
func (t *toolTree) libraryByName(soname string) (string, toolFile, bool) {
	var cands []string
	isLibDir := func(p string) bool {
		d := path.Dir(p)
		return strings.HasPrefix(d, "lib") || strings.HasPrefix(d, "usr/lib")
	}
	for p := range t.files {
		if path.Base(p) == soname && isLibDir(p) {
			cands = append(cands, p)
		}
	}
	for p := range t.symlinks {
		if path.Base(p) == soname && isLibDir(p) {
			cands = append(cands, p)
		}
	}
	sort.Strings(cands)
	for _, c := range cands {
		if p, f, ok := t.resolve(c); ok {
			return p, f, true
		}
	}
	return "", toolFile{}, false
}

// toolEntry is a file for the initramfs.
type toolEntry struct {
	name string // path in the initramfs, no leading "/"
	mode uint32 // permission bits
	data []byte
}

// selectTools picks from the staged tree what the initramfs needs: the
// programs of guestTools at their proto paths, every shared library they
// need (DT_NEEDED, transitively) under its soname in proto.ToolsLib, the
// dynamic loader at the path the programs name (PT_INTERP), and the
// configuration files. Every ELF file must be for the GOARCH arch.
// Errors name what is missing and which package set was searched.
func selectTools(t *toolTree, arch string, debs []toolDeb) ([]toolEntry, error) {
	want, ok := elfMachines[arch]
	if !ok {
		return nil, fmt.Errorf("kit tools: unknown architecture %s", arch)
	}
	var pkgNames []string
	for _, d := range debs {
		pkgNames = append(pkgNames, d.name)
	}
	searched := strings.Join(pkgNames, ", ")
	var out []toolEntry
	added := map[string]bool{}
	add := func(name string, mode uint32, data []byte) {
		if !added[name] {
			added[name] = true
			out = append(out, toolEntry{name: name, mode: mode, data: data})
		}
	}
	interp := ""
	type pending struct{ name, from string }
	var queue []pending // libraries to resolve
	readELF := func(what string, f toolFile) ([]byte, error) {
		b, err := os.ReadFile(f.path)
		if err != nil {
			return nil, err
		}
		ef, err := elf.NewFile(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("kit tools: %s (from %s) is not an ELF file: %w", what, f.pkg, err)
		}
		defer ef.Close()
		if ef.Machine != want {
			return nil, fmt.Errorf("kit tools: %s (from %s) is for %s, not %s", what, f.pkg, ef.Machine, arch)
		}
		for _, p := range ef.Progs {
			if p.Type != elf.PT_INTERP {
				continue
			}
			s, err := io.ReadAll(p.Open())
			if err != nil {
				return nil, fmt.Errorf("kit tools: %s: reading its interpreter: %w", what, err)
			}
			ip := string(bytes.TrimRight(s, "\x00"))
			if !path.IsAbs(ip) {
				return nil, fmt.Errorf("kit tools: %s names the relative interpreter %q", what, ip)
			}
			if interp != "" && interp != ip {
				return nil, fmt.Errorf("kit tools: %s names the interpreter %s, others %s", what, ip, interp)
			}
			interp = ip
		}
		needed, err := ef.ImportedLibraries()
		if err != nil {
			return nil, fmt.Errorf("kit tools: %s: %w", what, err)
		}
		for _, n := range needed {
			queue = append(queue, pending{n, what})
		}
		return b, nil
	}
	progs := make([]string, 0, len(guestTools))
	for p := range guestTools {
		progs = append(progs, p)
	}
	sort.Strings(progs)
	for _, p := range progs {
		src := guestTools[p]
		_, f, ok := t.resolve(src)
		if !ok {
			return nil, fmt.Errorf("kit tools: no /%s in %s", src, searched)
		}
		b, err := readELF("/"+src, f)
		if err != nil {
			return nil, err
		}
		add(strings.TrimPrefix(p, "/"), 0o755, b)
	}
	for len(queue) > 0 {
		l := queue[0]
		queue = queue[1:]
		name := path.Join(strings.TrimPrefix(proto.ToolsLib, "/"), l.name)
		if added[name] || l.name == path.Base(interp) {
			// The loader, which libc names, is loaded as the
			// programs' interpreter already.
			continue
		}
		if strings.Contains(l.name, "/") {
			return nil, fmt.Errorf("kit tools: %s needs %q, a path rather than a library name", l.from, l.name)
		}
		_, f, ok := t.libraryByName(l.name)
		if !ok {
			return nil, fmt.Errorf("kit tools: %s needs %s, which none of %s has", l.from, l.name, searched)
		}
		b, err := readELF(l.name, f)
		if err != nil {
			return nil, err
		}
		add(name, 0o755, b)
	}
	if interp == "" {
		return nil, errors.New("kit tools: the programs name no dynamic loader (PT_INTERP)")
	}
	_, f, ok := t.resolve(interp)
	if !ok {
		return nil, fmt.Errorf("kit tools: the dynamic loader %s is in none of %s", interp, searched)
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return nil, err
	}
	add(strings.TrimPrefix(interp, "/"), 0o755, b)
	_, cf, ok := t.resolve(toolsConfig)
	if !ok {
		return nil, fmt.Errorf("kit tools: no /%s in %s", toolsConfig, toolsPackage)
	}
	conf, err := os.ReadFile(cf.path)
	if err != nil {
		return nil, err
	}
	add(strings.TrimPrefix(proto.Mke2fsConfig, "/"), 0o644, conf)
	add(strings.TrimPrefix(proto.E2fsckConfig, "/"), 0o644, []byte(e2fsckConfig))
	return out, nil
}
