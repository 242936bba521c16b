package tests

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// writeContext writes files (name → content) into a new build context.
func writeContext(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for n, b := range files {
		p := filepath.Join(dir, n)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestBuildBusybox builds busybox-based Dockerfiles with RUN steps in
// builder machines and boots machines from the results.
func TestBuildBusybox(t *testing.T) {
	e := newEnv(t)
	e.must("image", "import", filepath.Join(shared, "busybox.tar"), "busybox:test")
	ctx := writeContext(t, map[string]string{
		"Dockerfile": `FROM busybox:test AS builder
RUN mkdir -p /out && echo compiled > /out/artifact
FROM busybox:test
COPY app.conf /etc/app.conf
COPY doomed.txt /etc/doomed.txt
RUN echo configuring && rm /etc/doomed.txt && echo ran > /etc/ran
COPY --from=builder /out/artifact /usr/share/artifact
CMD ["/bin/sh"]
`,
		"app.conf":   "v1\n",
		"doomed.txt": "delete me\n",
	})
	start := time.Now()
	out, errs, code := e.mt(nil, "build", "--progress", "plain", "-t", "app:1", ctx)
	if code != 0 {
		t.Fatalf("build: exit %d\n%s\n%s", code, out, errs)
	}
	t.Logf("first build: %v", time.Since(start))
	if !strings.Contains(errs, "#6 configuring") {
		t.Errorf("RUN output is not in the plain log:\n%s", errs)
	}

	// An unchanged rebuild runs no step.
	start = time.Now()
	_, errs, code = e.mt(nil, "build", "--progress", "plain", "-t", "app:1", ctx)
	if code != 0 || strings.Contains(errs, "DONE ") && strings.Count(errs, "CACHED") != 8 {
		t.Fatalf("rebuild: exit %d\n%s", code, errs)
	}
	t.Logf("cached rebuild: %v", time.Since(start))

	// Changing a copied file reruns from its step only.
	os.WriteFile(filepath.Join(ctx, "app.conf"), []byte("v2\n"), 0o644)
	_, errs, code = e.mt(nil, "build", "--progress", "plain", "-t", "app:1", ctx)
	if code != 0 {
		t.Fatalf("build after a change: %s", errs)
	}
	for _, want := range []string{"#1 CACHED", "#2 CACHED", "#3 CACHED", "#4 DONE", "#6 DONE"} {
		if !strings.Contains(errs, want) {
			t.Errorf("after changing app.conf, the log lacks %q:\n%s", want, errs)
		}
	}

	e.must("machine", "create", "app:1", "-n", "app", "--cpus", "1", "--memory", "1G")
	got := e.must("machine", "run", "-n", "app", "--", "/bin/sh", "-c",
		"cat /etc/app.conf /etc/ran /usr/share/artifact; test -e /etc/doomed.txt && echo doomed-present; test -e /out && echo out-present; true")
	if got != "v2\nran\ncompiled\n" {
		t.Fatalf("machine from the built image: %q", got)
	}
	e.must("machine", "rm", "-f", "app") // it is running

	// A failing RUN shows its output and status, exits non-zero and tags
	// nothing.
	bad := writeContext(t, map[string]string{"Dockerfile": "FROM busybox:test\nRUN echo about to fail; exit 3\n"})
	_, errs, code = e.mt(nil, "build", "--progress", "plain", "-t", "bad:1", bad)
	if code == 0 || !strings.Contains(errs, "about to fail") || !strings.Contains(errs, "Dockerfile:2") || !strings.Contains(errs, "exit status 3") {
		t.Fatalf("failing RUN: exit %d\n%s", code, errs)
	}
	e.fails("not found", "machine", "create", "bad:1")
	if ls := e.must("machine", "ls", "-q"); strings.TrimSpace(ls) != "" {
		t.Fatalf("builder machines left behind: %q", ls)
	}
}

// TestBuildGolden checks `build --progress plain` output of a build that
// needs no machine against a golden file (timings and digests masked).
func TestBuildGolden(t *testing.T) {
	e := newEnv(t)
	ctx := writeContext(t, map[string]string{
		"Dockerfile": "FROM scratch\nARG V=1\nCOPY a.txt /a.txt\nENV V=$V\nLABEL v=$V\nCMD [\"/a\"]\n",
		"a.txt":      "a\n",
	})
	mask := func(s string) string {
		s = regexp.MustCompile(`DONE [0-9.]+s`).ReplaceAllString(s, "DONE X.Xs")
		return regexp.MustCompile(`sha256:[0-9a-f]{64}`).ReplaceAllString(s, "sha256:DIGEST")
	}
	check := func(golden string) {
		t.Helper()
		_, errs, code := e.mt(nil, "build", "--progress", "plain", "-t", "golden:1", ctx)
		if code != 0 {
			t.Fatalf("build: %s", errs)
		}
		want, err := os.ReadFile(filepath.Join("testdata", golden))
		if os.Getenv("UPDATE_GOLDEN") != "" {
			os.MkdirAll("testdata", 0o755)
			os.WriteFile(filepath.Join("testdata", golden), []byte(mask(errs)), 0o644)
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if mask(errs) != string(want) {
			t.Fatalf("plain progress differs from testdata/%s:\n%s", golden, mask(errs))
		}
	}
	check("build-plain.golden")
	check("build-plain-cached.golden")

	// Bad input: each a clear error, a non-zero exit, nothing tagged.
	for _, c := range []struct{ dockerfile, want string }{
		{"FROM scratch\nCOPY\n", "Dockerfile:2"},
		{"FROM scratch\nFORM x\n", "unknown instruction"},
		{"FROM scratch\nCOPY missing.txt /\n", `"missing.txt" not found`},
		{"FROM 0123abcd\n", "cannot be pulled"},
	} {
		dir := writeContext(t, map[string]string{"Dockerfile": c.dockerfile})
		e.fails(c.want, "build", "--progress", "plain", "-t", "bad:1", dir)
	}
	e.fails("not found", "machine", "create", "bad:1")
}

// TestBuildDebianSeed builds the seed article's kind of Dockerfile over the
// local Debian image (apt-get against the Debian mirror from the builder
// machine) and boots a machine from it.
func TestBuildDebianSeed(t *testing.T) {
	tarball := filepath.Join(shared, "debian.tar")
	if _, err := os.Stat(tarball); err != nil {
		t.Skip("no Debian image: making one needs root (debootstrap)")
	}
	e := newEnv(t)
	e.must("image", "import", tarball, "debian:test")
	ctx := writeContext(t, map[string]string{
		"Dockerfile": `FROM debian:test
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends systemd jq less && rm -rf /var/lib/apt/lists/*
RUN useradd -m -s /bin/bash dev && echo 'dev ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/dev
COPY motd.conf /etc/motd.d/seed.conf
CMD ["/sbin/init"]
`,
		"motd.conf": "seeded\n",
	})
	start := time.Now()
	out, errs, code := e.mt(nil, "build", "--progress", "plain", "-t", "seed:1", ctx)
	if code != 0 {
		t.Fatalf("build: exit %d\n%s\n%s", code, out, errs)
	}
	t.Logf("debian build: %v", time.Since(start))
	e.must("machine", "create", "seed:1", "-n", "seed", "--cpus", "2", "--memory", "2G")
	got := e.must("machine", "run", "-n", "seed", "--", "/bin/sh", "-c",
		"jq --version >/dev/null && echo jq; command -v less; id -u dev; cat /etc/motd.d/seed.conf; test -x /sbin/init && echo init")
	if got != "jq\n/usr/bin/less\n1000\nseeded\ninit\n" {
		t.Fatalf("machine from the seed image: %q", got)
	}
}
