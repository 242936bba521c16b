// Package machine runs Dockerfile RUN steps in builder machines: it is
// the build.Runner that machinetop uses.
//
// A builder machine is an ordinary machine (vm.Manager) created from the
// image a RUN step starts from. In the guest, each step runs chrooted in an
// overlayfs mount whose lower directories are the machine's root
// filesystem (bind-mounted, so nothing mounted on it shows) and the upper
// directories of earlier steps, and whose upper directory is new. That
// upper directory is the step's filesystem diff: it is streamed back as a
// tar through the agent's exec stdout and converted to an OCI layer
// (image-spec layer.md): overlay whiteouts (0/0 character devices) become
// ".wh.NAME" files and opaque directories (trusted.overlay.opaque=y) get a
// ".wh..wh..opq" marker. Later steps of the same chain reuse the machine;
// layers added on the host in between (COPY, ADD) are unpacked into new
// lower directories. The machine has network access through the backend's
// user networking.
package machine

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/machinetop/machinetop/guest/client"
	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/images"
	"github.com/machinetop/machinetop/images/build"
	"github.com/machinetop/machinetop/vm"
)

// buildDir is where the guest keeps a build's layers, on the root disk.
const buildDir = "/.machinetop-build"

// Runner is a build.Runner over builder machines. Close deletes the
// machines it created. It runs one step at a time.
type Runner struct {
	// Manager creates and runs the builder machines.
	Manager *vm.Manager
	// Store holds the images steps start from.
	Store *images.Store
	// Images resolves named images for machine creation; cache images
	// (which have no name) are flattened by the Runner itself.
	Images vm.ImageSource
	// CPUs and MemoryBytes size builder machines; zero means the host's
	// CPUs and 3 GiB (layers being built are held in guest RAM, a tmpfs).
	CPUs        int
	MemoryBytes uint64

	mu      sync.Mutex
	current *builder
	made    []string
}

// builder is one running builder machine and the layers its guest holds.
type builder struct {
	name   string
	agent  *client.Client
	chain  []v1.Hash // diffIDs: the machine's image, then layers added since
	dirs   []string  // guest lower directories of the added layers, oldest first
	nextID int
}

var _ build.Runner = (*Runner)(nil)

// Run implements build.Runner.
func (r *Runner) Run(ctx context.Context, base v1.Image, req build.RunRequest, output, diff io.Writer) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	want, err := diffIDs(base)
	if err != nil {
		return err
	}
	b, err := r.machineFor(ctx, base, want, output)
	if err != nil {
		return err
	}
	b.nextID++
	id := fmt.Sprintf("s%d", b.nextID)
	status, err := b.run(ctx, id, req, output)
	if err != nil {
		return err
	}
	if status != 0 {
		b.exec(context.Background(), nil, io.Discard, "rm", "-rf", buildDir+"/"+id)
		return &build.ExitError{Code: status}
	}
	// Stream the upper directory back as an OCI layer.
	pr, pw := io.Pipe()
	conv := make(chan error, 1)
	hasher := &diffIDWriter{}
	go func() {
		err := convertOverlay(pr, io.MultiWriter(diff, hasher))
		pr.CloseWithError(err)
		conv <- err
	}()
	var stderr bytes.Buffer
	st, err := b.exec(ctx, nil, &stderrTail{w: &stderr}, "/bin/sh", "-c", tarScript, "sh", buildDir+"/"+id, pw)
	pw.CloseWithError(err)
	cerr := <-conv
	if err != nil {
		return err
	}
	if st != 0 {
		return fmt.Errorf("reading the step's changes from the builder machine failed (status %d): %s", st, strings.TrimSpace(stderr.String()))
	}
	if cerr != nil {
		return fmt.Errorf("reading the step's changes: %w", cerr)
	}
	b.chain = append(b.chain, hasher.sum())
	b.dirs = append(b.dirs, buildDir+"/"+id)
	return nil
}

// machineFor returns a builder machine whose guest holds base's layers,
// creating one if needed.
func (r *Runner) machineFor(ctx context.Context, base v1.Image, want []v1.Hash, output io.Writer) (*builder, error) {
	if b := r.current; b != nil && isPrefix(b.chain, want) {
		if err := r.addLayers(ctx, b, base, want, output); err == nil {
			return b, nil
		} else if ctx.Err() != nil {
			return nil, err
		}
	}
	if r.current != nil {
		r.drop(r.current.name)
		r.current = nil
	}
	b, err := r.create(ctx, base, output)
	if err != nil {
		return nil, err
	}
	r.current = b
	return b, nil
}

// addLayers unpacks the layers of base after b.chain into new lower
// directories. Layers with whiteouts cannot be added this way.
func (r *Runner) addLayers(ctx context.Context, b *builder, base v1.Image, want []v1.Hash, output io.Writer) error {
	if len(want) == len(b.chain) {
		return nil
	}
	layers, err := base.Layers()
	if err != nil {
		return err
	}
	for i := len(b.chain); i < len(want); i++ {
		if hasWhiteouts(layers[i]) {
			return errors.New("layer has whiteouts")
		}
		rc, err := layers[i].Uncompressed()
		if err != nil {
			return err
		}
		b.nextID++
		dir := fmt.Sprintf("%s/s%d", buildDir, b.nextID)
		st, err := b.exec(ctx, rc, output, "/bin/sh", "-c", `mkdir -p "$1" && tar -C "$1" -xpf -`, "sh", dir)
		rc.Close()
		if err != nil {
			return err
		}
		if st != 0 {
			return fmt.Errorf("unpacking a layer in the builder machine failed (status %d)", st)
		}
		b.chain = append(b.chain, want[i])
		b.dirs = append(b.dirs, dir)
	}
	return nil
}

func hasWhiteouts(l v1.Layer) bool {
	rc, err := l.Uncompressed()
	if err != nil {
		return true
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return false
		}
		if err != nil {
			return true
		}
		if strings.HasPrefix(filepath.Base(h.Name), ".wh.") {
			return true
		}
	}
}

// create makes and boots a builder machine from base.
func (r *Runner) create(ctx context.Context, base v1.Image, output io.Writer) (*builder, error) {
	d, err := base.Digest()
	if err != nil {
		return nil, err
	}
	rnd := make([]byte, 3)
	rand.Read(rnd)
	name := "build-" + hex.EncodeToString(rnd)
	fmt.Fprintf(output, "starting builder machine %s\n", name)
	mgr := *r.Manager
	src := &cacheSource{r: r, img: base, digest: d}
	mgr.Images = src
	// Create hard-links (or copies) the tar into the machine.
	defer func() {
		if src.path != "" {
			os.Remove(src.path)
		}
	}()
	mem := r.MemoryBytes
	if mem == 0 {
		mem = 3 * vm.GiB
	}
	cpus := r.CPUs
	if cpus == 0 {
		cpus = vm.HostCPUs()
	}
	// The builder runs the base image's architecture (emulated when it is
	// not the host's), so that RUN steps of an arm64 image run as arm64.
	arch := ""
	if cf, err := base.ConfigFile(); err == nil {
		arch = cf.Architecture
	}
	cfg, err := mgr.Create(ctx, vm.CreateOptions{
		Image: d.String(), Name: name, Arch: arch, CPUs: cpus, MemoryBytes: mem,
		// A Dockerfile's RUN sees no host files: the build context reaches
		// it only through COPY and ADD.
		HomeMount: vm.HomeMountNone, Builder: true,
	})
	if err != nil {
		return nil, fmt.Errorf("creating builder machine: %w", err)
	}
	r.made = append(r.made, name)
	if err := r.Manager.Start(ctx, cfg); err != nil {
		// The builder is removed with the build, and its logs with it:
		// the build log keeps the end of its boot.
		if tail := r.Manager.ConsoleTail(name, 20); len(tail) > 0 {
			fmt.Fprintf(output, "the builder's console, last %d lines:\n", len(tail))
			for _, l := range tail {
				fmt.Fprintf(output, "  %s\n", l)
			}
		}
		return nil, fmt.Errorf("starting builder machine: %w", err)
	}
	ag := r.Manager.Agent(cfg)
	chain, err := diffIDs(base)
	if err != nil {
		return nil, err
	}
	return &builder{name: name, agent: ag, chain: chain}, nil
}

// Close stops and deletes the builder machines.
func (r *Runner) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, n := range r.made {
		errs = append(errs, r.drop(n))
	}
	r.made, r.current = nil, nil
	return errors.Join(errs...)
}

func (r *Runner) drop(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg, err := r.Manager.Load(name)
	if errors.Is(err, vm.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := r.Manager.Stop(ctx, cfg, 5*time.Second); err != nil {
		return err
	}
	_, err = r.Manager.Delete(ctx, cfg)
	if errors.Is(err, vm.ErrNotFound) {
		err = nil
	}
	return err
}

// cacheSource gives vm.Manager.Create the flattened root filesystem of an
// image that may exist only as a build cache entry.
type cacheSource struct {
	r      *Runner
	img    v1.Image
	digest v1.Hash
	path   string // the tar handed to Create, removed after it
}

func (c *cacheSource) Rootfs(ctx context.Context, ref string) (vm.ImageRootfs, error) {
	dir := c.r.Manager.Data.Tmp()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return vm.ImageRootfs{}, err
	}
	p := filepath.Join(dir, "rootfs-"+c.digest.Hex+".tar")
	if _, err := os.Stat(p); err != nil {
		f, err := os.CreateTemp(dir, ".rootfs-*")
		if err != nil {
			return vm.ImageRootfs{}, err
		}
		defer os.Remove(f.Name())
		bw := bufio.NewWriterSize(f, 1<<20)
		err = images.Flatten(ctx, c.img, bw, dir)
		if err == nil {
			err = bw.Flush()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return vm.ImageRootfs{}, err
		}
		if err := os.Rename(f.Name(), p); err != nil {
			return vm.ImageRootfs{}, err
		}
	}
	c.path = p
	platform := ""
	if cf, err := c.img.ConfigFile(); err == nil && cf.OS != "" {
		platform = cf.OS + "/" + cf.Architecture
	}
	return vm.ImageRootfs{Name: "build:" + c.digest.Hex[:12], Digest: c.digest.String(), Tar: p, Platform: platform}, nil
}

// run executes one RUN step in a new overlay upper directory id.
func (b *builder) run(ctx context.Context, id string, req build.RunRequest, output io.Writer) (int, error) {
	lowers := []string{}
	for i := len(b.dirs) - 1; i >= 0; i-- {
		lowers = append(lowers, b.dirs[i])
	}
	lowers = append(lowers, buildDir+"/root")
	args := []string{"/bin/sh", "-c", runScript, "sh", buildDir, id, strings.Join(lowers, ":"), req.Dir, req.User}
	args = append(args, fmt.Sprint(len(req.Env)))
	args = append(args, req.Env...)
	args = append(args, req.Argv...)
	return b.exec(ctx, nil, output, args[0], args[1:])
}

// exec runs argv as root in the guest; output receives stdout and stderr,
// except that a trailing *io.PipeWriter argument receives stdout alone.
func (b *builder) exec(ctx context.Context, stdin io.Reader, output io.Writer, argv0 string, rest ...any) (int, error) {
	argv := []string{argv0}
	stdout := output
	for _, a := range rest {
		switch a := a.(type) {
		case string:
			argv = append(argv, a)
		case []string:
			argv = append(argv, a...)
		case *io.PipeWriter:
			stdout = a
		}
	}
	// RUN steps need no running services: they do not wait for the
	// image's init (a systemd image would add its bus wait to every step).
	st, err := b.agent.Exec(ctx, &proto.ExecRequest{Argv: argv, Dir: "/", UID: 0, GID: 0, Immediate: true}, stdin, stdout, output, nil)
	if err != nil {
		return 0, err
	}
	if st.Error != "" && st.Code == 0 {
		return 0, errors.New(st.Error)
	}
	return st.Code, nil
}

// runScript prepares the overlay and runs the command chrooted in it.
// Arguments: BUILD ID LOWERS DIR USER NENV ENV... ARGV...
const runScript = `
set -u
B=$1 id=$2 lowers=$3 dir=$4 user=$5 nenv=$6
shift 6
fail() { echo "machinetop builder: $*" >&2; exit 251; }
# Layers live on a tmpfs: overlayfs refuses lower directories that
# overlap the bind-mounted root.
mkdir -p "$B" || fail "cannot create $B"
grep -q " $B tmpfs " /proc/mounts || mount -t tmpfs -o size=85%,mode=0700 tmpfs "$B" || fail "mounting a tmpfs on $B failed"
mkdir -p "$B/root" "$B/$id" "$B/w-$id" "$B/m-$id" || fail "cannot create $B"
grep -q " $B/root " /proc/mounts || mount --bind / "$B/root" || fail "bind-mounting / failed"
mount -t overlay overlay -o "lowerdir=$lowers,upperdir=$B/$id,workdir=$B/w-$id" "$B/m-$id" || fail "mounting overlayfs failed (is the overlay module loaded?)"
m=$B/m-$id
mount -t proc proc "$m/proc" 2>/dev/null
mount --rbind /dev "$m/dev" 2>/dev/null
mount --rbind /sys "$m/sys" 2>/dev/null
mount -t tmpfs tmpfs "$m$B" 2>/dev/null
envs=""
i=0
set -- "$@"
n=$nenv
while [ "$n" -gt 0 ]; do
  envs="$envs $(printf '%s' "$1" | sed "s/'/'\\\\''/g; s/^/'/; s/$/'/")"
  shift; n=$((n-1))
done
uspec=""
if [ -n "$user" ] && [ "$user" != root ] && [ "$user" != 0 ] && [ "$user" != 0:0 ]; then
  u=${user%%:*}; g=""
  case "$user" in *:*) g=${user#*:};; esac
  case "$u" in
    *[!0-9]*) line=$(grep "^$u:" "$m/etc/passwd") || fail "unknown user $u"; uid=$(echo "$line" | cut -d: -f3); pg=$(echo "$line" | cut -d: -f4);;
    *) uid=$u; pg=$(awk -F: -v u="$u" '$3==u{print $4; exit}' "$m/etc/passwd"); [ -n "$pg" ] || pg=$u;;
  esac
  if [ -n "$g" ]; then
    case "$g" in *[!0-9]*) pg=$(grep "^$g:" "$m/etc/group" | cut -d: -f3) || fail "unknown group $g";; *) pg=$g;; esac
  fi
  uspec="--userspec=$uid:$pg"
fi
mkdir -p "$m$dir"
eval "chroot $uspec \"\$m\" /usr/bin/env -i $envs /bin/sh -c 'cd \"\$0\" && exec \"\$@\"' \"\$dir\" \"\$@\""
status=$?
umount -l "$m$B" "$m/sys" "$m/dev" "$m/proc" 2>/dev/null
umount "$m" 2>/dev/null || umount -l "$m"
rm -rf "$B/w-$id" "$B/m-$id"
exit $status
`

// tarScript writes the upper directory $1 as a tar with numeric owners
// and, where the guest's tar can, extended attributes.
const tarScript = `
x=""
if tar --help 2>&1 | grep -q -- --xattrs; then x="--xattrs --xattrs-include=*"; fi
exec tar -C "$1" --numeric-owner $x -cf - .
`

func diffIDs(img v1.Image) ([]v1.Hash, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	return cf.RootFS.DiffIDs, nil
}

func isPrefix(a, b []v1.Hash) bool {
	if len(a) > len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// stderrTail keeps what is written, up to 4 KiB.
type stderrTail struct{ w *bytes.Buffer }

func (s *stderrTail) Write(p []byte) (int, error) {
	if s.w.Len() < 4096 {
		s.w.Write(p)
	}
	return len(p), nil
}
