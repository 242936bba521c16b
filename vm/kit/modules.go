package kit

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// wantedModules are the modules the guest may need, by module name. Each is
// taken only if the kernel has it as a loadable module; one that is built in
// (ext4 in Debian's cloud kernel) or absent (9p in the cloud kernel) is
// skipped. The guest binary loads whatever /modules/order lists.
var wantedModules = []string{
	"virtio_pci",
	"virtio_blk",
	"virtio_net",
	"virtio_console",
	"virtio_balloon",
	"virtio_rng",
	"virtiofs",
	"9p",
	"9pnet_virtio",
	"overlay",
	// The guest's DHCP client sends and receives on a packet socket.
	"af_packet",
	"vsock",
	"vmw_vsock_virtio_transport",
	"ext4",
	// ext4 asks the crypto API for crc32c at mount time, not through a
	// module dependency; where it is a module (the generic kernel) it
	// must be loaded first.
	"crc32c_generic",
}

// WantedModules returns the names of the modules a kit carries when the
// kernel has them as loadable modules (their dependencies come along). Names
// use "_" as the kernel does ("virtio-rng.ko" is module virtio_rng).
func WantedModules() []string {
	return append([]string(nil), wantedModules...)
}

// moduleSuffixes are the module file endings understood, with the
// compression each implies.
var moduleSuffixes = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

// moduleFileName splits a module file name into its name as installed
// uncompressed ("virtio-rng.ko") and its compression suffix (".xz", ".zst",
// ".gz" or ""); ok is false for a file that is not a module.
func moduleFileName(base string) (ko, comp string, ok bool) {
	for _, s := range moduleSuffixes {
		if strings.HasSuffix(base, s) {
			return strings.TrimSuffix(base, s) + ".ko", strings.TrimPrefix(s, ".ko"), true
		}
	}
	return "", "", false
}

// modName is the module name kbuild derives from a file name: the base name
// without ".ko" and with "-" turned into "_".
func modName(ko string) string {
	return strings.ReplaceAll(strings.TrimSuffix(ko, ".ko"), "-", "_")
}

// moduleFile is one module found in a kernel's module tree, not yet read.
type moduleFile struct {
	ko   string // file name once uncompressed, e.g. "virtio-rng.ko"
	path string // where its (possibly compressed) bytes are on disk
	comp string // compression of the bytes at path: "", ".xz", ".zst", ".gz"
	rel  string // path inside the module tree, for messages and precedence
}

// moduleIndex maps module names to their files.
type moduleIndex map[string]*moduleFile

// add records f under its module name. When two files give the same name
// (a driver in updates/ overriding the one in kernel/, as depmod's default
// search order has it), the one under updates/ wins, then the first.
func (idx moduleIndex) add(f *moduleFile) {
	name := modName(f.ko)
	if old, ok := idx[name]; ok {
		if strings.HasPrefix(f.rel, "updates/") && !strings.HasPrefix(old.rel, "updates/") {
			idx[name] = f
		}
		return
	}
	idx[name] = f
}

// indexModulesDir indexes the modules under a /lib/modules/<release> tree.
func indexModulesDir(dir string) (moduleIndex, error) {
	idx := moduleIndex{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		ko, comp, ok := moduleFileName(d.Name())
		if !ok {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		idx.add(&moduleFile{ko: ko, path: p, comp: comp, rel: filepath.ToSlash(rel)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading modules directory: %w", err)
	}
	return idx, nil
}

// module is a module read and parsed.
type module struct {
	name     string   // from .modinfo name=, else from the file name
	ko       string   // file name in /modules, e.g. "virtio-rng.ko"
	depends  []string // .modinfo depends=, in the order given
	softPre  []string // .modinfo softdep= "pre:" names
	release  string   // first word of .modinfo vermagic=
	data     []byte   // the uncompressed ELF object
	fromPath string   // for messages
}

// modinfo is the content of a module's ".modinfo" ELF section: a sequence
// of NUL-terminated "key=value" strings (written by the MODULE_INFO macros in
// include/linux/module.h; depends= and vermagic= are added by modpost).
// A key may repeat (alias=, softdep=), so values are kept in order.
type modinfo map[string][]string

// first returns the first value of key, or "".
func (m modinfo) first(key string) string {
	if v := m[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// parseModinfo reads the .modinfo section of an uncompressed module.
func parseModinfo(data []byte) (modinfo, error) {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("not an ELF object: %w", err)
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, errors.New("no .modinfo section: not a kernel module")
	}
	b, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf(".modinfo: %w", err)
	}
	mi := modinfo{}
	for _, kv := range bytes.Split(b, []byte{0}) {
		k, v, ok := bytes.Cut(kv, []byte("="))
		if !ok {
			continue // padding between entries
		}
		mi[string(k)] = append(mi[string(k)], string(v))
	}
	return mi, nil
}

// splitList splits a comma list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// softdepPre returns the module names listed after "pre:" in softdep=
// values such as "pre: crc32c post: foo".
func softdepPre(values []string) []string {
	var out []string
	for _, v := range values {
		pre := false
		for _, w := range strings.Fields(v) {
			switch w {
			case "pre:":
				pre = true
			case "post:":
				pre = false
			default:
				if pre {
					out = append(out, strings.ReplaceAll(w, "-", "_"))
				}
			}
		}
	}
	return out
}

// decompress returns the uncompressed bytes of a module file.
func decompress(raw []byte, comp string) ([]byte, error) {
	var r io.Reader
	switch comp {
	case "":
		return raw, nil
	case ".xz":
		xr, err := xz.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, err
		}
		r = xr
	case ".zst":
		zr, err := zstd.NewReader(bytes.NewReader(raw), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		r = zr
	case ".gz":
		gr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, err
		}
		r = gr
	default:
		return nil, fmt.Errorf("unknown compression %q", comp)
	}
	return io.ReadAll(r)
}

// load reads, decompresses and parses one module.
func (f *moduleFile) load() (*module, error) {
	raw, err := os.ReadFile(f.path)
	if err != nil {
		return nil, err
	}
	data, err := decompress(raw, f.comp)
	if err != nil {
		return nil, fmt.Errorf("module %s: decompressing: %w", f.rel, err)
	}
	mi, err := parseModinfo(data)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", f.rel, err)
	}
	m := &module{
		name:     mi.first("name"),
		ko:       f.ko,
		depends:  splitList(mi.first("depends")),
		softPre:  softdepPre(mi["softdep"]),
		data:     data,
		fromPath: f.rel,
	}
	if m.name == "" {
		m.name = modName(f.ko)
	}
	if fs := strings.Fields(mi.first("vermagic")); len(fs) > 0 {
		m.release = fs[0]
	}
	return m, nil
}

// moduleLoader gives a module by name; selectModules uses it so that only
// the modules reached from the wanted set are ever read.
type moduleLoader func(name string) (*module, bool, error)

// indexLoader loads modules from idx, checking that each was built for
// release (when release is not empty).
func indexLoader(idx moduleIndex, release string) moduleLoader {
	return func(name string) (*module, bool, error) {
		f, ok := idx[name]
		if !ok {
			return nil, false, nil
		}
		m, err := f.load()
		if err != nil {
			return nil, true, err
		}
		if release != "" && m.release != "" && m.release != release {
			return nil, true, fmt.Errorf("module %s was built for kernel %s, not %s: the modules do not belong to this kernel", f.rel, m.release, release)
		}
		return m, true, nil
	}
}

// selectModules returns the wanted modules the loader has, plus their
// dependencies (depends=, and softdep pre: modules that exist), ordered so
// that every module comes after the modules it depends on. The order is
// stable: wanted modules in the order given, each preceded by its
// dependencies in their depends= order. skipped lists wanted names the
// loader does not have (built into the kernel or not part of it).
func selectModules(wanted []string, load moduleLoader) (order []*module, skipped []string, err error) {
	const (
		visiting = 1
		done     = 2
	)
	load = cachedLoader(load)
	state := map[string]int{}
	var visit func(name, from string, required bool) error
	visit = func(name, from string, required bool) error {
		switch state[name] {
		case done:
			return nil
		case visiting:
			if !required {
				return nil // a soft dependency may point back; it orders nothing
			}
			return fmt.Errorf("module dependency cycle through %s (reached from %s)", name, from)
		}
		m, ok, err := load(name)
		if err != nil {
			return err
		}
		if !ok {
			if required {
				return fmt.Errorf("module %s depends on %s, which is not in the module tree", from, name)
			}
			return nil
		}
		state[name] = visiting
		for _, d := range m.depends {
			if err := visit(d, name, true); err != nil {
				return err
			}
		}
		for _, d := range m.softPre {
			if err := visit(d, name, false); err != nil {
				return err
			}
		}
		state[name] = done
		order = append(order, m)
		return nil
	}
	for _, name := range wanted {
		name = strings.ReplaceAll(name, "-", "_")
		if state[name] == done {
			continue
		}
		_, ok, err := load(name)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			skipped = append(skipped, name)
			continue
		}
		if err := visit(name, "the wanted set", true); err != nil {
			return nil, nil, err
		}
	}
	return order, skipped, nil
}

// cachedLoader wraps a loader so each module is read once.
func cachedLoader(load moduleLoader) moduleLoader {
	type result struct {
		m   *module
		ok  bool
		err error
	}
	seen := map[string]result{}
	return func(name string) (*module, bool, error) {
		if r, ok := seen[name]; ok {
			return r.m, r.ok, r.err
		}
		m, ok, err := load(name)
		seen[name] = result{m, ok, err}
		return m, ok, err
	}
}

// moduleNames lists the names of mods, for messages.
func moduleNames(mods []*module) []string {
	out := make([]string, len(mods))
	for i, m := range mods {
		out[i] = m.name
	}
	return out
}

// checkUniqueFiles makes sure no two selected modules share a file name,
// since /modules is flat.
func checkUniqueFiles(mods []*module) error {
	seen := map[string]string{}
	for _, m := range mods {
		if other, ok := seen[m.ko]; ok {
			return fmt.Errorf("modules %s and %s both have file name %s", other, m.fromPath, m.ko)
		}
		seen[m.ko] = m.fromPath
	}
	return nil
}
