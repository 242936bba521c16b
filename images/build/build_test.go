package build

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/machinetop/machinetop/images"
	"github.com/machinetop/machinetop/images/progress"
)

// baseImage imports a tiny root filesystem as base:1 into s.
func baseImage(t testing.TB, s *images.Store) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h tar.Header, body string) {
		h.Size = int64(len(body))
		h.ModTime = time.Unix(1700000000, 0)
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, body)
	}
	add(tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644}, "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
	add(tar.Header{Name: "etc/group", Typeflag: tar.TypeReg, Mode: 0o644}, "root:x:0:\napp:x:1000:\n")
	add(tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}, "")
	tw.Close()
	p := filepath.Join(t.TempDir(), "base.tar")
	os.WriteFile(p, buf.Bytes(), 0o644)
	if _, err := s.Import(context.Background(), p, "base:1", images.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
}

func writeTree(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// rootfs flattens the image ref names and returns its files' contents by
// path (directories as "<dir>", symlinks as "-> target").
func rootfs(t *testing.T, s *images.Store, ref string) (map[string]string, map[string]*tar.Header) {
	t.Helper()
	_, img, err := s.Resolve(ref)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := images.Flatten(context.Background(), img, &buf, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	files, hdrs := map[string]string{}, map[string]*tar.Header{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.Trim(strings.TrimPrefix(h.Name, "./"), "/")
		b, _ := io.ReadAll(tr)
		switch h.Typeflag {
		case tar.TypeDir:
			files[name] = "<dir>"
		case tar.TypeSymlink:
			files[name] = "-> " + h.Linkname
		default:
			files[name] = string(b)
		}
		hdrs[name] = h
	}
	return files, hdrs
}

type recorder struct{ evs []progress.Event }

func (r *recorder) emit(e progress.Event) { r.evs = append(r.evs, e) }

func (r *recorder) count(k progress.Kind) int {
	n := 0
	for _, e := range r.evs {
		if e.Kind == k {
			n++
		}
	}
	return n
}

func tgz(t testing.TB, files map[string]string) string {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for n, b := range files {
		tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o600, Size: int64(len(b)), Uid: 7, Gid: 8})
		io.WriteString(tw, b)
	}
	tw.Close()
	zw.Close()
	return buf.String()
}

const appDockerfile = `# a comment
ARG BASE=base:1
FROM ${BASE}
ARG VERSION=1.0
ENV APP_HOME=/opt/app PATH=/opt/app/bin:/usr/bin:/bin
WORKDIR $APP_HOME
COPY app.conf ./conf/
COPY --chown=app:app --chmod=0640 secret.txt /etc/secret
COPY dir/ /srv/
ADD bundle.tar.gz /opt/bundle/
ADD plain.txt /opt/plain-$VERSION.txt
LABEL org.example.version=$VERSION maintainer="me"
EXPOSE 8080 53/udp
VOLUME /data
USER app
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s CMD ["true"]
SHELL ["/bin/bash", "-c"]
ENTRYPOINT ["/opt/app/bin/app"]
CMD ["--serve"]
`

func appContext(t *testing.T) string {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"Dockerfile":    appDockerfile,
		"app.conf":      "port=8080\n",
		"secret.txt":    "s3cret\n",
		"dir/a.txt":     "A\n",
		"dir/sub/b.txt": "B\n",
		"plain.txt":     "plain\n",
		"bundle.tar.gz": tgz(t, map[string]string{"x/y.txt": "from the archive\n"}),
		"ignored.log":   "noise\n",
		"dir/skip.log":  "noise\n",
		".dockerignore": "*.log\n**/*.log\n",
	})
	return dir
}

func TestBuildWithoutRun(t *testing.T) {
	s, err := images.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	baseImage(t, s)
	dir := appContext(t)
	rec := &recorder{}
	opts := Options{Store: s, ContextDir: dir, Tags: []string{"app:dev"}, Emit: rec.emit, TempDir: t.TempDir()}
	res, err := Build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Steps != 17 || res.Cached != 1 || len(res.Tags) != 1 || res.Tags[0] != "app:dev" {
		t.Fatalf("result %+v", res)
	}
	files, hdrs := rootfs(t, s, "app:dev")
	for p, want := range map[string]string{
		"opt/app/conf/app.conf": "port=8080\n",
		"etc/secret":            "s3cret\n",
		"srv/a.txt":             "A\n",
		"srv/sub/b.txt":         "B\n",
		"opt/bundle/x/y.txt":    "from the archive\n",
		"opt/plain-1.0.txt":     "plain\n",
		"etc/passwd":            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
	} {
		if files[p] != want {
			t.Errorf("%s = %q, want %q", p, files[p], want)
		}
	}
	if _, ok := files["srv/skip.log"]; ok {
		t.Error(".dockerignore not honoured")
	}
	if h := hdrs["etc/secret"]; h.Uid != 1000 || h.Gid != 1000 || h.Mode&0o7777 != 0o640 {
		t.Errorf("etc/secret: uid %d gid %d mode %o", h.Uid, h.Gid, h.Mode)
	}
	if h := hdrs["tmp"]; h.Mode&0o7777 != 0o1777 {
		t.Errorf("/tmp lost its mode: %o", h.Mode)
	}
	if h := hdrs["opt/bundle/x/y.txt"]; h.Uid != 7 || h.Mode&0o777 != 0o600 {
		t.Errorf("extracted file: uid %d mode %o", h.Uid, h.Mode)
	}
	_, img, _ := s.Resolve("app:dev")
	cf, _ := img.ConfigFile()
	c := cf.Config
	if c.WorkingDir != "/opt/app" || c.User != "app" || c.StopSignal != "SIGTERM" ||
		strings.Join(c.Entrypoint, " ") != "/opt/app/bin/app" || strings.Join(c.Cmd, " ") != "--serve" ||
		c.Labels["org.example.version"] != "1.0" || c.Labels["maintainer"] != "me" ||
		strings.Join(c.Shell, " ") != "/bin/bash -c" || c.Healthcheck == nil || c.Healthcheck.Interval != 5*time.Second {
		t.Errorf("config %+v", c)
	}
	if _, ok := c.ExposedPorts["53/udp"]; !ok {
		t.Errorf("exposed ports %v", c.ExposedPorts)
	}
	if _, ok := c.Volumes["/data"]; !ok {
		t.Errorf("volumes %v", c.Volumes)
	}
	if !strings.Contains(strings.Join(c.Env, " "), "APP_HOME=/opt/app") {
		t.Errorf("env %v", c.Env)
	}
	// history: one entry for the import and one per step after FROM.
	if len(cf.History) != 1+16 {
		t.Errorf("%d history entries", len(cf.History))
	}

	// An unchanged rebuild runs nothing.
	rec2 := &recorder{}
	opts.Emit = rec2.emit
	start := time.Now()
	res2, err := Build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Digest != res.Digest || res2.Cached != res2.Steps || rec2.count(progress.KindStepDone) != 0 {
		t.Fatalf("rebuild: %+v, %d steps done", res2, rec2.count(progress.KindStepDone))
	}
	t.Logf("cached rebuild took %v", time.Since(start))

	// Changing one copied file reruns from that step on.
	writeTree(t, dir, map[string]string{"secret.txt": "changed\n"})
	rec3 := &recorder{}
	opts.Emit = rec3.emit
	res3, err := Build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	firstRun := 0
	for _, e := range rec3.evs {
		if e.Kind == progress.KindStepDone {
			firstRun = e.Step
			break
		}
	}
	// Steps: 1 FROM, 2 ENV, 3 WORKDIR, 4 COPY app.conf, 5 COPY secret.
	if firstRun != 5 || res3.Cached != 4 {
		t.Fatalf("after a change: first step run %d, %d cached", firstRun, res3.Cached)
	}
	// Ignored files do not matter.
	writeTree(t, dir, map[string]string{"ignored.log": "more noise\n"})
	res4, err := Build(context.Background(), opts)
	if err != nil || res4.Cached != res4.Steps {
		t.Fatalf("changing an ignored file rebuilt: %+v %v", res4, err)
	}
	// --no-cache runs everything.
	opts.NoCache = true
	res5, err := Build(context.Background(), opts)
	if err != nil || res5.Cached != 1 {
		t.Fatalf("--no-cache: %+v %v", res5, err)
	}
}

func TestBuildMultiStage(t *testing.T) {
	s, _ := images.Open(t.TempDir())
	baseImage(t, s)
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"Dockerfile": `FROM base:1 AS builder
COPY src/ /src/
FROM scratch AS unused
COPY nothing /
FROM base:1
COPY --from=builder /src/main.txt /app/main.txt
COPY --from=0 /etc/passwd /app/
CMD ["/app/main"]
`,
		"src/main.txt": "built\n",
	})
	res, err := Build(context.Background(), Options{Store: s, ContextDir: dir, Tags: []string{"multi:1"}, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Steps != 6 { // the unused stage is skipped
		t.Fatalf("steps %d", res.Steps)
	}
	files, _ := rootfs(t, s, "multi:1")
	if files["app/main.txt"] != "built\n" || !strings.HasPrefix(files["app/passwd"], "root:") {
		t.Fatalf("files %v", files)
	}
	if _, ok := files["src/main.txt"]; ok {
		t.Fatal("the builder stage's files leaked into the final stage")
	}
	// --target builds a named stage.
	res, err = Build(context.Background(), Options{Store: s, ContextDir: dir, Tags: []string{"multi:builder"}, Target: "builder", TempDir: t.TempDir()})
	if err != nil || res.Steps != 2 {
		t.Fatalf("--target: %+v %v", res, err)
	}
}

func TestBuildErrors(t *testing.T) {
	s, _ := images.Open(t.TempDir())
	baseImage(t, s)
	for _, tc := range []struct {
		name, dockerfile, want string
		line                   int
	}{
		{"syntax", "FROM base:1\nCOPY a\n", "COPY requires at least two arguments", 2},
		{"unknown", "FROM base:1\nFORM x\n", "unknown instruction: FORM", 2},
		{"missing source", "FROM base:1\nENV A=1\nCOPY nope.txt /\n", `"nope.txt" not found in the build context`, 3},
		{"unknown image", "FROM nosuch.example/none:1\n", "nosuch.example/none:1", 1},
		{"unknown local image", "FROM 0123abcd\n", "cannot be pulled", 1},
		{"run without runner", "FROM base:1\nRUN true\n", "builder machine", 2},
		{"url", "FROM base:1\nADD https://example.com/x /x\n", "URL", 2},
		{"no instructions", "# nothing\n", "no instructions", 1},
		{"bad target", "FROM base:1 AS a\n", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, map[string]string{"Dockerfile": tc.dockerfile})
			pull := func(ctx context.Context, ref string) error { return errors.New("registry unreachable") }
			opts := Options{Store: s, ContextDir: dir, Tags: []string{"bad:" + strings.ReplaceAll(tc.name, " ", "-")}, Pull: pull, TempDir: t.TempDir()}
			if tc.name == "bad target" {
				opts.Target = "zzz"
				tc.want = "--target zzz"
			}
			_, err := Build(context.Background(), opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			var be *Error
			if tc.line > 0 && (!errors.As(err, &be) || be.Line != tc.line || !strings.HasPrefix(err.Error(), "Dockerfile:")) {
				t.Fatalf("error %q does not name Dockerfile line %d", err, tc.line)
			}
			if _, _, err := s.Resolve(opts.Tags[0]); !errors.Is(err, images.ErrNotFound) {
				t.Fatalf("a failed build tagged its image: %v", err)
			}
		})
	}
}

// BenchmarkCachedRebuild measures an unchanged rebuild of the test app:
// every step comes from the cache.
func BenchmarkCachedRebuild(b *testing.B) {
	t := &testing.T{}
	s, _ := images.Open(b.TempDir())
	baseImage(t, s)
	dir := appContext(t)
	opts := Options{Store: s, ContextDir: dir, Tags: []string{"app:dev"}, TempDir: b.TempDir()}
	if _, err := Build(context.Background(), opts); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		res, err := Build(context.Background(), opts)
		if err != nil || res.Cached != res.Steps {
			b.Fatal(err)
		}
	}
}

var _ = v1.Hash{}
