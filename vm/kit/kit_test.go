package kit

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
	"github.com/klauspost/compress/zstd"
	"github.com/machinetop/machinetop/vm/kit/debarchive"
	"github.com/ulikunitz/xz"
)

// readArchive returns the entries of the initramfs, read with the cpio
// package, and their data.
func readArchive(t *testing.T, p string) (map[string]*cpio.Header, map[string][]byte, []string) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := cpio.NewReader(f)
	hdrs := map[string]*cpio.Header{}
	data := map[string][]byte{}
	var names []string
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading initramfs back: %v", err)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		hdrs[h.Name] = h
		data[h.Name] = b
		names = append(names, h.Name)
	}
	return hdrs, data, names
}

// newcDevices scans a newc archive's headers on its own (independently of
// the cpio package, which has no device-number fields) and returns each
// entry's rdevmajor:rdevminor and mode by name.
func newcDevices(t *testing.T, b []byte) map[string][3]int64 {
	t.Helper()
	out := map[string][3]int64{}
	field := func(h []byte, i int) int64 {
		v, err := strconv.ParseInt(string(h[6+8*i:6+8*i+8]), 16, 64)
		if err != nil {
			t.Fatalf("bad newc header field %d: %v", i, err)
		}
		return v
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for off := 0; off+110 <= len(b); {
		h := b[off : off+110]
		if string(h[:6]) != "070701" {
			t.Fatalf("no newc magic at offset %d", off)
		}
		mode, size, rmaj, rmin, namesize := field(h, 1), field(h, 6), field(h, 9), field(h, 10), field(h, 11)
		name := string(b[off+110 : off+110+int(namesize)-1])
		if name == "TRAILER!!!" {
			return out
		}
		out[name] = [3]int64{mode, rmaj, rmin}
		off = align(off+110+int(namesize)) + align(int(size))
	}
	t.Fatal("archive has no trailer")
	return nil
}

func TestEnsureBuildsKit(t *testing.T) {
	k, _ := testKit(t)
	probe, err := os.ReadFile(bootProbe(t))
	if err != nil {
		t.Fatal(err)
	}
	if k.KernelRelease == "" || len(k.Digest) != 64 {
		t.Fatalf("kit %+v: want a release and a sha256 digest", k)
	}
	if got := kernelRelease(k.Kernel); got != k.KernelRelease {
		t.Errorf("bzImage header says release %q, kit says %q", got, k.KernelRelease)
	}
	hdrs, data, names := readArchive(t, k.Initramfs)

	for _, d := range []string{"dev", "proc", "sys", "newroot", "etc", "tmp", "modules"} {
		h, ok := hdrs[d]
		if !ok || !h.Mode.IsDir() {
			t.Errorf("initramfs lacks directory %s", d)
		}
	}
	if i, j := slices.Index(names, "dev"), slices.Index(names, "init"); i < 0 || j < i {
		t.Errorf("directories must precede files: order %v", names[:min(len(names), 12)])
	}
	init := hdrs["init"]
	if init == nil || !init.Mode.IsRegular() || init.Mode.Perm() != 0o755 || !bytes.Equal(data["init"], probe) {
		t.Fatalf("init entry wrong: %+v", init)
	}
	if got := strings.TrimSpace(string(data["modules/version"])); got != k.KernelRelease {
		t.Errorf("modules/version = %q, want %q", got, k.KernelRelease)
	}
	order := strings.Fields(string(data["modules/order"]))
	if !slices.Equal(order, k.Modules) {
		t.Errorf("modules/order %v != Kit.Modules %v", order, k.Modules)
	}

	raw, err := os.ReadFile(k.Initramfs)
	if err != nil {
		t.Fatal(err)
	}
	devs := newcDevices(t, raw)
	if c, ok := devs["dev/console"]; !ok || c[0]&cpio.ModeType != cpio.TypeChar || c[1] != 5 || c[2] != 1 {
		t.Errorf("dev/console = %v, want a char node 5,1", c)
	}
	if c, ok := devs["dev/null"]; !ok || c[0]&cpio.ModeType != cpio.TypeChar || c[1] != 1 || c[2] != 3 || c[0]&0o777 != 0o666 {
		t.Errorf("dev/null = %v, want a char node 1,3 mode 0666", c)
	}
	if i, j := slices.Index(names, "dev"), slices.Index(names, "init"); len(names) != len(devs) || i < 0 || j < 0 {
		t.Errorf("the cpio package and the raw scan disagree: %d vs %d entries", len(names), len(devs))
	}

	// Each module is a real module of this kernel, and everything it
	// depends on was loaded before it.
	loaded := map[string]bool{}
	var mods []string
	for _, ko := range order {
		b, ok := data["modules/"+ko]
		if !ok {
			t.Fatalf("modules/order lists %s, not in the archive", ko)
		}
		mi, err := parseModinfo(b)
		if err != nil {
			t.Fatalf("%s: %v", ko, err)
		}
		if v := strings.Fields(mi.first("vermagic")); len(v) == 0 || v[0] != k.KernelRelease {
			t.Errorf("%s vermagic %q is not for %s", ko, mi.first("vermagic"), k.KernelRelease)
		}
		for _, d := range splitList(mi.first("depends")) {
			if !loaded[d] {
				t.Errorf("%s depends on %s, which is not loaded before it", ko, d)
			}
		}
		loaded[mi.first("name")] = true
		mods = append(mods, mi.first("name"))
	}
	if strings.Contains(k.KernelRelease, "-cloud-") {
		// Debian's cloud kernel, as measured in the engineering guide.
		for _, want := range []string{"virtio_pci", "virtio_blk", "virtio_net", "virtio_console", "virtio_balloon",
			"virtio_rng", "virtiofs", "fuse", "overlay", "vsock", "vmw_vsock_virtio_transport", "virtio", "virtio_ring"} {
			if !loaded[want] {
				t.Errorf("cloud kit lacks module %s", want)
			}
		}
		for _, absent := range []string{"9p", "ext4"} {
			if loaded[absent] {
				t.Errorf("cloud kit has %s, which that kernel does not have as a module", absent)
			}
		}
	}
	checkTools(t, k, hdrs, data)
	t.Logf("kernel %s, %d modules: %s; initramfs %d bytes", k.KernelRelease, len(mods), strings.Join(mods, " "), len(raw))
}

// checkTools checks the disk tools of an initramfs: mke2fs and e2fsck for
// the kit's architecture, every library they need (transitively) in
// /tools/lib, and the loader they name at its path.
func checkTools(t *testing.T, k *Kit, hdrs map[string]*cpio.Header, data map[string][]byte) {
	t.Helper()
	if !slices.ContainsFunc(k.ToolPackages, func(s string) bool { return strings.HasPrefix(s, "e2fsprogs=") }) {
		t.Errorf("kit tool packages %v lack e2fsprogs", k.ToolPackages)
	}
	queue := []string{"tools/bin/mke2fs", "tools/bin/e2fsck"}
	seen := map[string]bool{}
	interp := ""
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		if seen[name] {
			continue
		}
		seen[name] = true
		h, ok := hdrs[name]
		if !ok || !h.Mode.IsRegular() || h.Mode.Perm() != 0o755 {
			t.Errorf("initramfs lacks the executable %s (%+v)", name, h)
			continue
		}
		ef, err := elf.NewFile(bytes.NewReader(data[name]))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if ef.Machine != elfMachines[runtime.GOARCH] {
			t.Errorf("%s is for %s", name, ef.Machine)
		}
		for _, p := range ef.Progs {
			if p.Type == elf.PT_INTERP {
				b, _ := io.ReadAll(p.Open())
				interp = strings.TrimRight(string(b), "\x00")
			}
		}
		libs, _ := ef.ImportedLibraries()
		for _, l := range libs {
			if l != path.Base(interp) {
				queue = append(queue, "tools/lib/"+l)
			}
		}
	}
	if interp == "" {
		t.Errorf("the tools name no interpreter")
	} else if h, ok := hdrs[strings.TrimPrefix(interp, "/")]; !ok || !h.Mode.IsRegular() {
		t.Errorf("initramfs lacks the loader %s", interp)
	}
	for _, c := range []string{"etc/mke2fs.conf", "etc/e2fsck.conf"} {
		if len(data[c]) == 0 {
			t.Errorf("initramfs lacks %s", c)
		}
	}
	if !strings.Contains(string(data["etc/mke2fs.conf"]), "ext4 = {") {
		t.Errorf("etc/mke2fs.conf has no ext4 stanza:\n%s", data["etc/mke2fs.conf"])
	}
	t.Logf("tools: %d files from %v, loader %s", len(seen)+1, k.ToolPackages, interp)
}

func TestEnsureSecondCallIsCached(t *testing.T) {
	k, cache := testKit(t)
	fi1, err := os.Stat(k.Initramfs)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	start := time.Now()
	k2, err := Ensure(context.Background(), cache, Source{Deb: testDeb(t)}, bootProbe(t), &log)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	fi2, err := os.Stat(k2.Initramfs)
	if err != nil {
		t.Fatal(err)
	}
	if k2.Digest != k.Digest || !os.SameFile(fi1, fi2) || !fi1.ModTime().Equal(fi2.ModTime()) {
		t.Errorf("second Ensure rebuilt or moved the kit: %+v vs %+v", k, k2)
	}
	if log.Len() != 0 {
		t.Errorf("second Ensure did work: %s", log.String())
	}
	t.Logf("cached Ensure (given .deb) took %s", took)
	if took > 2*time.Second {
		t.Errorf("cached Ensure took %s; it should only hash its inputs", took)
	}
	if ents, _ := filepath.Glob(filepath.Join(cache, ".build-*")); len(ents) != 0 {
		t.Errorf("build directories left behind: %v", ents)
	}
}

// TestEnsureDefaultSource runs the zero Source against a cache kept across
// test runs: the first run on a machine builds, later ones hit the cache.
// The second call in a run must not use the network nor build.
func TestEnsureDefaultSource(t *testing.T) {
	testDeb(t) // skips when the archive cannot be reached
	cache := filepath.Join(os.TempDir(), "machinetop-kit-test-default")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	k, err := Ensure(ctx, cache, Source{}, bootProbe(t), tlogWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first Ensure(Source{}) took %s", time.Since(start))
	var log bytes.Buffer
	start = time.Now()
	k2, err := Ensure(ctx, cache, Source{}, bootProbe(t), &log)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if k2.Digest != k.Digest || log.Len() != 0 {
		t.Errorf("second Ensure(Source{}) was not a cache hit: digest %s vs %s, log %q", k.Digest, k2.Digest, log.String())
	}
	t.Logf("cached Ensure(Source{}) took %s (release %s)", took, k2.KernelRelease)
	if took > 2*time.Second {
		t.Errorf("cached Ensure(Source{}) took %s", took)
	}
}

// TestEnsureFromKernelAndModulesDir lays the kit's modules out as an
// installed /lib/modules/<release> tree (compressed three ways, with
// modules that are not wanted beside them) and builds from it.
func TestEnsureFromKernelAndModulesDir(t *testing.T) {
	k, _ := testKit(t)
	_, data, _ := readArchive(t, k.Initramfs)
	root := filepath.Join(t.TempDir(), k.KernelRelease)
	for i, ko := range k.Modules {
		b := data["modules/"+ko]
		dir := filepath.Join(root, "kernel", "drivers", strconv.Itoa(i%3))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		name := ko
		switch i % 3 {
		case 0:
			out.Write(b)
		case 1:
			w, err := xz.NewWriter(&out)
			if err != nil {
				t.Fatal(err)
			}
			w.Write(b)
			w.Close()
			name += ".xz"
		case 2:
			w, _ := zstd.NewWriter(&out)
			w.Write(b)
			w.Close()
			name += ".zst"
		}
		if err := os.WriteFile(filepath.Join(dir, name), out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Not-a-module files of a real tree are ignored.
	os.WriteFile(filepath.Join(root, "modules.order"), []byte("kernel/x.ko\n"), 0o644)

	cache := t.TempDir()
	k2, err := Ensure(context.Background(), cache, Source{Kernel: k.Kernel, ModulesDir: root}, bootProbe(t), tlogWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(k2.Modules, k.Modules) || k2.KernelRelease != k.KernelRelease {
		t.Errorf("from modules dir: %s %v; from package: %s %v", k2.KernelRelease, k2.Modules, k.KernelRelease, k.Modules)
	}
	_, data2, _ := readArchive(t, k2.Initramfs)
	for _, ko := range k.Modules {
		if !bytes.Equal(data2["modules/"+ko], data["modules/"+ko]) {
			t.Errorf("%s differs after a round trip through compression", ko)
		}
	}

	// A kernel without modules: its drivers are taken to be built in.
	k3, err := Ensure(context.Background(), cache, Source{Kernel: k.Kernel}, bootProbe(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(k3.Modules) != 0 || k3.KernelRelease != k.KernelRelease {
		t.Errorf("kernel-only kit: release %q, modules %v", k3.KernelRelease, k3.Modules)
	}
	_, data3, _ := readArchive(t, k3.Initramfs)
	if len(data3["modules/order"]) != 0 {
		t.Errorf("kernel-only kit has a module order %q", data3["modules/order"])
	}
}

func TestSourceErrors(t *testing.T) {
	dir := t.TempDir()
	notDeb := filepath.Join(dir, "x.deb")
	os.WriteFile(notDeb, []byte("hello"), 0o644)
	probe := bootProbe(t)
	for _, c := range []struct {
		name string
		src  Source
		want string
	}{
		{"both", Source{Deb: notDeb, Kernel: notDeb}, "either Deb or Kernel"},
		{"modules alone", Source{ModulesDir: dir}, "ModulesDir needs Kernel"},
		{"missing deb", Source{Deb: filepath.Join(dir, "none.deb")}, "no such file"},
		{"not a deb", Source{Deb: notDeb}, "not a Debian package"},
		{"modules dir is a file", Source{Kernel: notDeb, ModulesDir: notDeb}, "not a directory"},
		{"empty modules dir", Source{Kernel: notDeb, ModulesDir: dir}, "no modules"},
		{"guest for another architecture", Source{Arch: otherArch()}, "not " + otherArch()},
		{"bad mirror", Source{Mirror: "ftp://example.invalid/debian"}, "not an http(s) URL"},
	} {
		_, err := Ensure(context.Background(), filepath.Join(dir, "cache"), c.src, probe, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", c.name, err, c.want)
		}
	}
	if _, err := Ensure(context.Background(), filepath.Join(dir, "cache"), Source{Kernel: notDeb}, notDeb, nil); err == nil || !strings.Contains(err.Error(), "make") {
		t.Errorf("non-ELF guest: err = %v, want a hint to build it", err)
	}
}

// TestMetapackageIsFollowed gives the cloud metapackage as Source.Deb: the
// image package it depends on must be fetched from the archive.
func TestMetapackageIsFollowed(t *testing.T) {
	image := testDeb(t)
	ctx := context.Background()
	arch, err := debArch(runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	p, from, err := debarchive.Find(ctx, Source{}.archiveClients(persistentCache(), io.Discard), arch, "linux-image-cloud-"+arch, "")
	if err != nil {
		t.Fatal(err)
	}
	meta, err := from.Download(ctx, p, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := readDebControl(meta)
	if err != nil {
		t.Fatal(err)
	}
	dep, ok := kernelImageDep(ctl["Depends"])
	if !ok {
		t.Fatalf("metapackage Depends %q names no image", ctl["Depends"])
	}
	res, err := Source{Deb: meta}.resolve(ctx, persistentCache(), tlogWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	if res.deb != image || !strings.HasPrefix(filepath.Base(res.deb), dep.Name+"_"+dep.Version+"_") || len(res.debSHA256) != 64 {
		t.Errorf("metapackage led to %+v, want %s %s (%s)", res, dep.Name, dep.Version, image)
	}
	if res2, err := (Source{Deb: image}).resolve(ctx, persistentCache(), nil); err != nil || res2.deb != image || res2.debSHA256 != "" {
		t.Errorf("an image package must be used as is: %+v %v", res2, err)
	}
}

// TestEnsureDamagedArchiveCache damages a copy of the archive cache the
// default kit came from: Ensure must fail naming the check that failed and
// the file, not build from it.
func TestEnsureDamagedArchiveCache(t *testing.T) {
	image := testDeb(t)
	probe := bootProbe(t)
	for _, c := range []struct {
		name, mention string
		damage        func(cache string)
	}{
		{"InRelease", "InRelease signature verification failed", func(cache string) {
			files, _ := filepath.Glob(filepath.Join(cache, "archive", "*", "dists", DefaultSuite, "InRelease"))
			if len(files) != 1 {
				t.Fatalf("cached InRelease: %v", files)
			}
			b, _ := os.ReadFile(files[0])
			os.WriteFile(files[0], bytes.Replace(b, []byte("Codename: "), []byte("Codename:  "), 1), 0o644)
		}},
		{"deb", ".deb digest verification failed", func(cache string) {
			p := filepath.Join(cache, "debs", filepath.Base(image))
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt([]byte{0}, 1<<20)
			f.Close()
		}},
	} {
		cache := t.TempDir()
		if err := copyTree(persistentCache(), cache); err != nil {
			t.Fatal(err)
		}
		c.damage(cache)
		_, err := Ensure(context.Background(), cache, Source{}, probe, tlogWriter{t})
		var ve *debarchive.VerificationError
		if !errors.As(err, &ve) || !strings.Contains(err.Error(), c.mention) || !strings.Contains(err.Error(), "remove") {
			t.Errorf("%s damaged: err = %v, want a verification error saying %q and what to remove", c.name, err, c.mention)
		}
		if kits, _ := filepath.Glob(filepath.Join(cache, strings.Repeat("[0-9a-f]", 64))); len(kits) != 0 {
			t.Errorf("%s damaged: a kit was built: %v", c.name, kits)
		}
	}
}

// copyTree copies the regular files under src to dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		fi, err := in.Stat()
		if err != nil {
			return err
		}
		if err := copyToFile(out, in, 0o644); err != nil {
			return err
		}
		return os.Chtimes(out, fi.ModTime(), fi.ModTime())
	})
}

func TestPackageDeps(t *testing.T) {
	got, err := packageDeps("libblkid1 (>= 2.36), libc6:any (>= 2.34) | libc6.1, libext2fs2 (= 1.47.0-2+b2), libss2")
	if err != nil {
		t.Fatal(err)
	}
	want := []debDep{{Name: "libblkid1"}, {Name: "libc6"}, {Name: "libext2fs2", Version: "1.47.0-2+b2"}, {Name: "libss2"}}
	if !slices.Equal(got, want) {
		t.Errorf("packageDeps = %v, want %v", got, want)
	}
	if got, err := packageDeps(" "); err != nil || got != nil {
		t.Errorf("empty field: %v %v", got, err)
	}
}

// TestSelectToolsMissing: a library the programs need that no package
// has is an error naming it, not a kit whose tools fail in the guest.
func TestSelectToolsMissing(t *testing.T) {
	self, err := os.Executable() // an ELF for this architecture that needs no library
	if err != nil {
		t.Fatal(err)
	}
	tree := &toolTree{files: map[string]toolFile{"sbin/e2fsck": {path: self, pkg: "e2fsprogs"}}, symlinks: map[string]string{}}
	_, err = selectTools(tree, runtime.GOARCH, []toolDeb{{name: "e2fsprogs"}})
	if err == nil || !strings.Contains(err.Error(), "mke2fs") {
		t.Errorf("no mke2fs: err = %v", err)
	}
	tree.files["sbin/mke2fs"] = toolFile{path: self, pkg: "e2fsprogs"}
	_, err = selectTools(tree, otherArch(), []toolDeb{{name: "e2fsprogs"}})
	if err == nil || !strings.Contains(err.Error(), "not "+otherArch()) {
		t.Errorf("programs for another architecture: err = %v", err)
	}
}

func TestKernelImageDep(t *testing.T) {
	for _, c := range []struct {
		depends string
		want    debDep
		ok      bool
	}{
		{"linux-image-6.1.0-57-cloud-amd64 (= 6.1.192-3)", debDep{"linux-image-6.1.0-57-cloud-amd64", "6.1.192-3"}, true},
		{"linux-image-6.12.9-arm64-unsigned (= 6.12.9-1), foo", debDep{"linux-image-6.12.9-arm64-unsigned", "6.12.9-1"}, true},
		{"kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool", debDep{}, false},
		{"linux-image-6.1.0-57-amd64-dbg, linux-image-6.1.0-57-amd64 (>= 1)", debDep{"linux-image-6.1.0-57-amd64", ""}, true},
	} {
		got, ok := kernelImageDep(c.depends)
		if got != c.want || ok != c.ok {
			t.Errorf("kernelImageDep(%q) = %v %v, want %v %v", c.depends, got, ok, c.want, c.ok)
		}
	}
}

func TestParseModinfo(t *testing.T) {
	k, _ := testKit(t)
	_, data, _ := readArchive(t, k.Initramfs)
	mi, err := parseModinfo(data["modules/virtio_blk.ko"])
	if err != nil {
		t.Fatal(err)
	}
	deps := splitList(mi.first("depends"))
	if mi.first("name") != "virtio_blk" || !slices.Contains(deps, "virtio") || !slices.Contains(deps, "virtio_ring") {
		t.Errorf("virtio_blk modinfo: name %q depends %v", mi.first("name"), deps)
	}
	if len(mi["alias"]) == 0 {
		t.Errorf("virtio_blk has no alias= entries: repeated keys lost")
	}
	if b, ok := data["modules/virtio-rng.ko"]; ok {
		mi, err := parseModinfo(b)
		if err != nil || mi.first("name") != "virtio_rng" {
			t.Errorf("virtio-rng.ko: name %q, %v", mi.first("name"), err)
		}
	}
	if _, err := parseModinfo([]byte("not elf")); err == nil {
		t.Error("parseModinfo accepted a non-ELF blob")
	}
	if _, err := parseModinfo(data["init"]); err == nil || !strings.Contains(err.Error(), ".modinfo") {
		t.Errorf("parseModinfo of a program: %v", err)
	}
	if got := softdepPre([]string{"pre: crc32c crc-t10dif post: foo"}); !slices.Equal(got, []string{"crc32c", "crc_t10dif"}) {
		t.Errorf("softdepPre = %v", got)
	}
}

// graphLoader serves modules from a dependency table, standing for a
// kernel's module tree in the ordering tests.
func graphLoader(g map[string][]string, soft map[string][]string, calls map[string]int) moduleLoader {
	return func(name string) (*module, bool, error) {
		calls[name]++
		deps, ok := g[name]
		if !ok {
			return nil, false, nil
		}
		return &module{name: name, ko: name + ".ko", depends: deps, softPre: soft[name]}, true, nil
	}
}

func TestSelectModulesOrder(t *testing.T) {
	g := map[string][]string{
		"virtio_pci":     {"virtio", "virtio_ring"},
		"virtio_blk":     {"virtio", "virtio_ring"},
		"virtio_net":     {"virtio_ring", "virtio", "net_failover"},
		"net_failover":   {"failover"},
		"failover":       {},
		"virtio":         {},
		"virtio_ring":    {},
		"virtiofs":       {"fuse", "virtio", "virtio_ring"},
		"fuse":           {},
		"ext4":           {"jbd2", "mbcache", "crc16"},
		"jbd2":           {},
		"mbcache":        {},
		"crc16":          {},
		"crc32c_generic": {},
	}
	soft := map[string][]string{"ext4": {"crc32c_generic", "not_a_module"}}
	calls := map[string]int{}
	order, skipped, err := selectModules([]string{"virtio_pci", "virtio-blk", "virtio_net", "9p", "virtiofs", "ext4"}, graphLoader(g, soft, calls))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"virtio", "virtio_ring", "virtio_pci", "virtio_blk", "failover", "net_failover", "virtio_net",
		"fuse", "virtiofs", "jbd2", "mbcache", "crc16", "crc32c_generic", "ext4"}
	if got := moduleNames(order); !slices.Equal(got, want) {
		t.Errorf("order\n got %v\nwant %v", got, want)
	}
	if !slices.Equal(skipped, []string{"9p"}) {
		t.Errorf("skipped = %v", skipped)
	}
	for name, n := range calls {
		if n != 1 {
			t.Errorf("module %s read %d times", name, n)
		}
	}

	// The same input gives the same order.
	again, _, _ := selectModules([]string{"virtio_pci", "virtio-blk", "virtio_net", "9p", "virtiofs", "ext4"}, graphLoader(g, soft, map[string]int{}))
	if !slices.Equal(moduleNames(again), want) {
		t.Error("order is not stable")
	}

	_, _, err = selectModules([]string{"a"}, graphLoader(map[string][]string{"a": {"b"}}, nil, map[string]int{}))
	if err == nil || !strings.Contains(err.Error(), "a depends on b") {
		t.Errorf("missing dependency: %v", err)
	}
	_, _, err = selectModules([]string{"a"}, graphLoader(map[string][]string{"a": {"b"}, "b": {"c"}, "c": {"a"}}, nil, map[string]int{}))
	if err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("cycle: %v", err)
	}
	// A soft dependency pointing back is no cycle.
	order, _, err = selectModules([]string{"a"}, graphLoader(map[string][]string{"a": {"b"}, "b": {}}, map[string][]string{"b": {"a"}}, map[string]int{}))
	if err != nil || !slices.Equal(moduleNames(order), []string{"b", "a"}) {
		t.Errorf("soft cycle: %v %v", moduleNames(order), err)
	}
}

// otherArch is a GOARCH with Debian kernels that is not the host's.
func otherArch() string {
	if runtime.GOARCH == "arm64" {
		return "amd64"
	}
	return "arm64"
}

func TestGuestBinary(t *testing.T) {
	probe := bootProbe(t)
	t.Setenv(GuestEnv, probe)
	if p, err := GuestBinary(runtime.GOARCH); err != nil || p != probe {
		t.Errorf("GuestBinary with $%s = %q, %v", GuestEnv, p, err)
	}
	other := otherArch()
	if _, err := GuestBinary(other); err == nil || !strings.Contains(err.Error(), "not "+other) {
		t.Errorf("wrong-architecture guest: %v", err)
	}
	notELF := filepath.Join(t.TempDir(), "machinetop-guest")
	os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755)
	t.Setenv(GuestEnv, notELF)
	if _, err := GuestBinary(runtime.GOARCH); err == nil || !strings.Contains(err.Error(), "ELF") {
		t.Errorf("non-ELF guest: %v", err)
	}
	t.Setenv(GuestEnv, "")
	if _, err := GuestBinary(runtime.GOARCH); err == nil || !strings.Contains(err.Error(), "make") {
		t.Errorf("no guest next to the test binary: %v", err)
	}
	if _, err := GuestBinary("vax"); err == nil {
		t.Error("unknown architecture accepted")
	}
	var pe *os.PathError
	if err := checkGuestFile(filepath.Join(t.TempDir(), "none"), runtime.GOARCH); !errors.As(err, &pe) || !errors.Is(err, syscall.ENOENT) {
		t.Errorf("absent file: %v", err)
	}
}

// TestToolsForOtherArch selects the guest tools for the architecture
// this host is not, from the archive: the same code must find that
// architecture's programs, libraries and loader (nothing is hard-coded
// per architecture).
func TestToolsForOtherArch(t *testing.T) {
	testDeb(t) // skips when the archive cannot be reached
	arch := otherArch()
	darch, err := debArch(arch)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	debs, err := fetchTools(ctx, Source{}.archiveClients(persistentCache(), io.Discard), persistentCache(), darch)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := stageTools(ctx, debs, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	entries, err := selectTools(tree, arch, debs)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"tools/bin/mke2fs": false, "tools/bin/e2fsck": false, "tools/lib/libext2fs.so.2": false, "tools/lib/libc.so.6": false}
	loader := map[string]string{"amd64": "lib64/ld-linux-x86-64.so.2", "arm64": "lib/ld-linux-aarch64.so.1"}[arch]
	want[loader] = false
	for _, e := range entries {
		if _, ok := want[e.name]; ok {
			want[e.name] = true
		}
		if strings.HasPrefix(e.name, "tools/") {
			ef, err := elf.NewFile(bytes.NewReader(e.data))
			if err != nil || ef.Machine != elfMachines[arch] {
				t.Errorf("%s is not an ELF file for %s (%v)", e.name, arch, err)
			}
		}
	}
	for name, ok := range want {
		if !ok {
			t.Errorf("tools for %s lack %s", arch, name)
		}
	}
	if dirs := toolDirs(entries); !slices.Contains(dirs, path.Dir(loader)) {
		t.Errorf("initramfs directories %v lack the loader's %s", dirs, path.Dir(loader))
	}
}

// A kernel package or kernel image of another architecture than
// Source.Arch is refused before anything is built.
func TestSourceOfAnotherArch(t *testing.T) {
	k, _ := testKit(t)
	deb := testDeb(t)
	other := otherArch()
	probe := bootProbeFor(t, other)
	host, _ := debArch(runtime.GOARCH)
	want, _ := debArch(other)
	cache := filepath.Join(t.TempDir(), "cache")
	_, err := Ensure(context.Background(), cache, Source{Deb: deb, Arch: other}, probe, nil)
	if err == nil || !strings.Contains(err.Error(), "is for "+host+", not "+want) {
		t.Errorf("a %s kernel package for an %s kit: %v", host, other, err)
	}
	_, err = Ensure(context.Background(), cache, Source{Kernel: k.Kernel, Arch: other}, probe, nil)
	if err == nil || !strings.Contains(err.Error(), "is an "+runtime.GOARCH+" kernel, not "+other) {
		t.Errorf("a %s kernel for an %s kit: %v", runtime.GOARCH, other, err)
	}
}
