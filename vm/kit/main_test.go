package kit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/machinetop/machinetop/vm/kit/debarchive"
)

// helperEnv makes the test binary act as a second process calling Ensure,
// for the cross-process cache test; its arguments come in the environment.
const helperEnv = "MACHINETOP_KIT_TEST_HELPER"

var workDir string // removed after the tests

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helperMain())
	}
	d, err := os.MkdirTemp("", "machinetop-kit-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

func helperMain() int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	k, err := Ensure(ctx, os.Getenv("KIT_CACHE"), Source{Deb: os.Getenv("KIT_DEB")}, os.Getenv("KIT_GUEST"), os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	json.NewEncoder(os.Stdout).Encode(k)
	return 0
}

// persistentCache is the kit cache directory whose debs/ and archive/
// the tests keep between runs, so that the ~27 MB kernel package is
// fetched once per machine. (Kits are built in fresh directories.)
func persistentCache() string {
	return filepath.Join(os.TempDir(), "machinetop-kit-test-archive")
}

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var (
	debOnce sync.Once
	debPath string
	debErr  error
)

// testDeb returns the host architecture's cloud kernel image package,
// resolved, downloaded and verified by the package's own default-source
// code from the Debian archive. It skips the test only when the archive
// cannot be reached; a verification failure fails it.
func testDeb(t *testing.T) string {
	t.Helper()
	debOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		var res resolvedSource
		res, debErr = Source{}.resolve(ctx, persistentCache(), io.Discard)
		debPath = res.deb
	})
	var ve *debarchive.VerificationError
	if errors.As(debErr, &ve) {
		t.Fatal(debErr)
	}
	if debErr != nil {
		t.Skipf("cannot fetch the cloud kernel package from the Debian archive (needs network): %v", debErr)
	}
	return debPath
}

var (
	probeMu    sync.Mutex
	probePaths = map[string]string{}
)

// bootProbe builds testdata/bootprobe as a static linux binary for the
// host architecture (the architecture of the kernel the kit takes).
func bootProbe(t *testing.T) string { return bootProbeFor(t, runtime.GOARCH) }

// bootProbeFor builds testdata/bootprobe for linux/<arch>, once per test
// binary.
func bootProbeFor(t *testing.T, arch string) string {
	t.Helper()
	probeMu.Lock()
	defer probeMu.Unlock()
	if p, ok := probePaths[arch]; ok {
		return p
	}
	p := filepath.Join(workDir, "bootprobe-"+arch)
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-o", p, "./testdata/bootprobe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building bootprobe for %s: %v\n%s", arch, err, out)
	}
	probePaths[arch] = p
	return p
}

var (
	kitOnce  sync.Once
	kitBuilt *Kit
	kitCache string
	kitErr   error
)

// testKit builds the kit for the cloud kernel package with bootprobe as
// /init, the way two processes starting at once would: both call Ensure on
// one fresh cache directory, then this process calls it a third time.
func testKit(t *testing.T) (*Kit, string) {
	t.Helper()
	deb := testDeb(t)
	probe := bootProbe(t)
	kitOnce.Do(func() {
		kitCache = filepath.Join(workDir, "cache")
		kitBuilt, kitErr = concurrentEnsure(t, kitCache, deb, probe)
	})
	if kitErr != nil {
		t.Fatal(kitErr)
	}
	return kitBuilt, kitCache
}

func concurrentEnsure(t *testing.T, cache, deb, probe string) (*Kit, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	type result struct {
		kit  Kit
		err  error
		took time.Duration
	}
	results := make([]result, 2)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(exe, "-test.run=^$")
			cmd.Env = append(os.Environ(), helperEnv+"=1", "KIT_CACHE="+cache, "KIT_DEB="+deb, "KIT_GUEST="+probe)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			results[i].took = time.Since(start)
			if err != nil {
				results[i].err = fmt.Errorf("helper process %d: %v\n%s", i, err, stderr.String())
				return
			}
			results[i].err = json.Unmarshal(stdout.Bytes(), &results[i].kit)
			t.Logf("process %d: Ensure returned after %s; its log:\n%s", i, results[i].took.Round(time.Millisecond), stderr.String())
		}()
	}
	wg.Wait()
	for _, r := range results {
		if r.err != nil {
			return nil, r.err
		}
	}
	if results[0].kit.Digest != results[1].kit.Digest {
		return nil, fmt.Errorf("two processes got different digests: %s and %s", results[0].kit.Digest, results[1].kit.Digest)
	}
	k, err := Ensure(context.Background(), cache, Source{Deb: deb}, probe, tlogWriter{t})
	if err != nil {
		return nil, err
	}
	if k.Digest != results[0].kit.Digest {
		return nil, fmt.Errorf("digest changed between calls: %s then %s", results[0].kit.Digest, k.Digest)
	}
	return k, nil
}
