package tests

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestPullKilledMidway kills `machinetop image pull` with SIGKILL while a
// layer is half downloaded from a real registry on loopback, then pulls
// again: the second pull completes, verifies, and fetches only the layers
// the first did not finish.
func TestPullKilledMidway(t *testing.T) {
	e := newEnv(t)
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	var mu sync.Mutex
	gets := map[string]int{} // blob digest → GET requests
	slow := ""               // digest whose download stalls halfway
	stalled := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			dig := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
			mu.Lock()
			gets[dig]++
			stall := dig == slow
			mu.Unlock()
			if stall {
				// Send half the blob, then hang until the client is killed.
				rec := httptest.NewRecorder()
				reg.ServeHTTP(rec, r)
				body := rec.Body.Bytes()
				w.Header().Set("Content-Length", strconv.Itoa(len(body)))
				w.WriteHeader(rec.Code)
				w.Write(body[:len(body)/2])
				w.(http.Flusher).Flush()
				select {
				case stalled <- struct{}{}:
				default:
				}
				<-r.Context().Done()
				return
			}
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	img, err := random.Image(4<<20, 3)
	if err != nil {
		t.Fatal(err)
	}
	ref := host + "/test/big:v1"
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	last, _ := layers[len(layers)-1].Digest()
	mu.Lock()
	slow = last.String()
	mu.Unlock()

	cmd := exec.Command(filepath.Join(binDir, "machinetop"), "image", "pull", "--progress", "plain", ref)
	cmd.Env = e.environ()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stalled:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatal("the pull never reached the stalled layer")
	}
	time.Sleep(200 * time.Millisecond) // let the other layers finish
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if out := e.must("image", "ls", "-q"); strings.Contains(out, "big") {
		t.Fatalf("a killed pull left a tagged image: %q", out)
	}

	mu.Lock()
	slow = ""
	before := map[string]int{}
	for k, v := range gets {
		before[k] = v
	}
	mu.Unlock()
	e.must("image", "pull", "--progress", "plain", ref)
	if out := e.must("image", "ls"); !strings.Contains(out, "big") {
		t.Fatalf("image ls after the second pull:\n%s", out)
	}
	mu.Lock()
	defer mu.Unlock()
	refetched := 0
	for _, l := range layers {
		d, _ := l.Digest()
		if gets[d.String()] > before[d.String()] {
			refetched++
		}
	}
	if refetched != 1 {
		t.Fatalf("second pull fetched %d layers again, want only the unfinished one", refetched)
	}
	// The store is consistent: every blob's content matches its name.
	blobs, _ := filepath.Glob(filepath.Join(e.data, "images", "blobs", "sha256", "*"))
	if len(blobs) < len(layers)+2 {
		t.Fatalf("only %d blobs in the store", len(blobs))
	}
	for _, b := range blobs {
		f, err := os.Open(b)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		io.Copy(h, f)
		f.Close()
		if got := hex.EncodeToString(h.Sum(nil)); got != filepath.Base(b) {
			t.Errorf("blob %s holds content with digest %s", filepath.Base(b), got)
		}
	}
}
