package build

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"github.com/machinetop/machinetop/internal/testfs"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/machinetop/machinetop/images"
)

// maxFuzzDockerfile bounds the Dockerfiles FuzzBuild builds.
const maxFuzzDockerfile = 2 << 10

// fuzzTag is the tag FuzzBuild builds to.
const fuzzTag = "fuzz:built"

// emptyRunner runs RUN steps without a machine: a command mentioning
// "false" exits 1, any other succeeds having changed nothing (its layer is
// an empty tar).
type emptyRunner struct{}

func (emptyRunner) Run(ctx context.Context, base v1.Image, req RunRequest, output io.Writer, diff io.Writer) error {
	fmt.Fprintf(output, "ran %q in %s\n", req.Argv, req.Dir)
	if strings.Contains(strings.Join(req.Argv, " "), "false") {
		return &ExitError{Code: 1}
	}
	return tar.NewWriter(diff).Close()
}

// copyTree copies the directory tree src to dst (testfs.CopyTree).
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	if err := testfs.CopyTree(src, dst); err != nil {
		t.Fatal(err)
	}
}

// refs lists the tagged images of s.
func refs(t *testing.T, s *images.Store) []string {
	t.Helper()
	list, err := s.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var out []string
	for _, im := range list {
		out = append(out, im.Ref())
	}
	return out
}

// FuzzBuild fuzzes the Dockerfile Build builds, with no network and no
// machine: FROM finds base:1 in a local store or is scratch, RUN goes to
// emptyRunner, and nothing is pulled. It asserts that Build never panics;
// that a failed build returns an *Error naming the Dockerfile, with a
// message, and tags nothing (the store lists base:1 alone); and that a
// successful one tags exactly its result, which resolves in the store to
// the digest Build returned.
func FuzzBuild(f *testing.F) {
	template := filepath.Join(f.TempDir(), "images")
	s, err := images.Open(template)
	if err != nil {
		f.Fatal(err)
	}
	baseImage(f, s)
	contextDir := f.TempDir()
	writeTree(f, contextDir, map[string]string{
		"a.txt":         "A\n",
		"dir/b.txt":     "B\n",
		"dir/sub/c.txt": "C\n",
		"bundle.tar.gz": tgz(f, map[string]string{"x/y.txt": "from the archive\n"}),
		"skip.log":      "ignored\n",
		".dockerignore": "*.log\n",
	})

	for _, d := range []string{
		"FROM scratch\nCOPY a.txt /a.txt\n",
		"FROM base:1\nENV A=1 B=\"two words\"\nWORKDIR /srv\nCOPY dir/ ./\nRUN echo $A > /x\nLABEL x=y maintainer=\"me\"\nCMD [\"/bin/sh\"]\n",
		"ARG BASE=base:1\nFROM ${BASE}\nARG V=1.0\nADD bundle.tar.gz /opt/\nADD a.txt /opt/a-$V.txt\nRUN echo $V\n",
		"FROM base:1 AS builder\nCOPY a.txt /x\nRUN make\nFROM scratch AS unused\nCOPY nothing /\nFROM scratch\nCOPY --from=builder /x /y\nCOPY --from=0 /etc/passwd /p\n",
		"FROM base:1\nCOPY --chown=app:app --chmod=0640 a.txt /etc/a\nUSER app\nEXPOSE 8080 53/udp\nVOLUME /data\nSTOPSIGNAL SIGTERM\n" +
			"HEALTHCHECK --interval=5s CMD [\"true\"]\nSHELL [\"/bin/bash\", \"-c\"]\nRUN echo in bash\nENTRYPOINT [\"/app\"]\nONBUILD RUN true\nMAINTAINER me\n",
		"# syntax=docker/dockerfile:1\n# escape=`\nFROM base:1\nRUN echo a `\n  b\n",
		"FROM base:1\nCOPY --from=base:1 /etc/group /g\nWORKDIR rel\nWORKDIR ../abs\n",
		// Broken ones.
		"FROM base:1\nCOPY a\n",
		"FROM base:1\nFORM x\n",
		"FROM nosuch.example/none:1\n",
		"FROM 0123abcd\n",
		"FROM base:1\nRUN false\n",
		"FROM base:1\nCOPY nope.txt /\n",
		"FROM scratch\nCOPY ../../etc/passwd /\n",
		"FROM base:1\nADD https://example.com/x /x\n",
		"FROM base:1\nRUN --mount=type=cache,target=/x true\n",
		"FROM base:1\nRUN <<EOF\necho hi\nEOF\n",
		"FROM base:1 AS a\nFROM a AS b\nFROM b\nCOPY --from=c /x /y\n",
		"FROM ${X:?required}\n",
		"FROM base:1\nENV A=${B:?none}\n",
		"# nothing\n",
		"",
	} {
		f.Add([]byte(d))
	}

	f.Fuzz(func(t *testing.T, dockerfile []byte) {
		if len(dockerfile) > maxFuzzDockerfile {
			t.Skip("Dockerfile too large")
		}
		root := filepath.Join(t.TempDir(), "images")
		copyTree(t, template, root)
		s, err := images.Open(root)
		if err != nil {
			t.Fatal(err)
		}
		df := filepath.Join(t.TempDir(), "Dockerfile")
		if err := os.WriteFile(df, dockerfile, 0o644); err != nil {
			t.Fatal(err)
		}
		res, err := Build(context.Background(), Options{
			Store: s, ContextDir: contextDir, Dockerfile: df, Tags: []string{fuzzTag},
			Runner: emptyRunner{}, TempDir: t.TempDir(),
		})
		if err != nil {
			var be *Error
			if err.Error() == "" || !errors.As(err, &be) || be.File != "Dockerfile" {
				t.Fatalf("build failed with %T %q, not an *Error naming the Dockerfile", err, err)
			}
			if _, _, rerr := s.Resolve(fuzzTag); !errors.Is(rerr, images.ErrNotFound) {
				t.Fatalf("failed build (%v) left %s: %v", err, fuzzTag, rerr)
			}
			if got := refs(t, s); !slices.Equal(got, []string{"base:1"}) {
				t.Fatalf("failed build (%v) changed the tags: %v", err, got)
			}
			return
		}
		if !slices.Equal(res.Tags, []string{fuzzTag}) || res.Steps < 1 || res.Cached > res.Steps {
			t.Fatalf("result %+v", res)
		}
		im, _, err := s.Resolve(fuzzTag)
		if err != nil || im.Digest != res.Digest {
			t.Fatalf("built %s, but %s resolves to %s, %v", res.Digest, fuzzTag, im.Digest, err)
		}
		if got := refs(t, s); !slices.Equal(got, []string{"base:1", fuzzTag}) {
			t.Fatalf("after the build the store lists %v", got)
		}
	})
}
