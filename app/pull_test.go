package app

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/machinetop/machinetop/images"
	"github.com/machinetop/machinetop/images/progress"
	"github.com/machinetop/machinetop/vm/layout"
)

// TestPullJournalsAndReportsLayers pulls from a registry served on
// loopback and checks the per-layer events and the journal the builds
// view lists.
func TestPullJournalsAndReportsLayers(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/test/img:v1"
	img, err := random.Image(2048, 3)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	a, err := OpenAt(layout.Data{Root: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	layers := map[string]bool{}
	var done bool
	_, err = a.Pull(context.Background(), ref, images.PullOptions{}, func(e progress.Event) {
		switch e.Kind {
		case progress.KindBytes:
			layers[e.Layer] = true
		case progress.KindDone:
			done = true
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 3 || !done {
		t.Errorf("events: %d layers, done %v", len(layers), done)
	}
	jobs, err := progress.List(a.Data.Builds())
	if err != nil || len(jobs) != 1 || jobs[0].State != "done" || jobs[0].Title != "pull "+ref {
		t.Errorf("journal: %+v %v", jobs, err)
	}
	if imgs, _ := a.Images.List(); len(imgs) != 1 {
		t.Errorf("store has %d images", len(imgs))
	}
}
