package images

import (
	"context"
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// AnnotationCacheKey marks an index.json entry that holds a build cache
// result rather than a tagged image: its value is the step's cache key.
// Such entries keep their blobs alive through garbage collection but are
// not listed, resolved by name or removed by Remove.
const AnnotationCacheKey = "io.machinetop.build.cache"

// CachePut stores img as the build cache result for key (an opaque string,
// e.g. a hex digest of the step's inputs) and returns the image as read
// back from the store. Blobs are written and verified first and the index
// entry last, as Put does; a previous result for key is replaced. Errors:
// ctx's error or failures reading img or writing the store.
func (s *Store) CachePut(ctx context.Context, key string, img v1.Image) (v1.Image, error) {
	if key == "" {
		return nil, errors.New("empty cache key")
	}
	unlock, err := s.lock(ctx, gcLockFile, true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	desc, err := s.writeImage(ctx, img)
	if err != nil {
		return nil, err
	}
	desc.Annotations = map[string]string{AnnotationCacheKey: key}
	err = s.updateIndex(ctx, func(idx *v1.IndexManifest) error {
		kept := idx.Manifests[:0]
		for _, d := range idx.Manifests {
			if d.Annotations[AnnotationCacheKey] != key {
				kept = append(kept, d)
			}
		}
		idx.Manifests = append(kept, desc)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s.layout.Image(desc.Digest)
}

// CacheGet returns the build cache result stored for key, if any. An entry
// whose blobs cannot be read counts as a miss.
func (s *Store) CacheGet(key string) (v1.Image, bool) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, false
	}
	for i := len(idx.Manifests) - 1; i >= 0; i-- {
		d := idx.Manifests[i]
		if d.Annotations[AnnotationCacheKey] != key {
			continue
		}
		img, err := s.layout.Image(d.Digest)
		if err != nil {
			return nil, false
		}
		if _, err := img.ConfigFile(); err != nil {
			return nil, false
		}
		return img, true
	}
	return nil, false
}

// PruneCache removes every build cache entry and the blobs only they
// used. It returns the number of entries removed.
func (s *Store) PruneCache() (int, error) {
	ctx := context.Background()
	unlock, err := s.lock(ctx, gcLockFile, false)
	if err != nil {
		return 0, err
	}
	defer unlock()
	n := 0
	err = s.updateIndex(ctx, func(idx *v1.IndexManifest) error {
		kept := idx.Manifests[:0]
		for _, d := range idx.Manifests {
			if _, ok := d.Annotations[AnnotationCacheKey]; ok {
				n++
				continue
			}
			kept = append(kept, d)
		}
		idx.Manifests = kept
		return nil
	})
	if err != nil {
		return 0, err
	}
	if err := s.gc(); err != nil {
		return n, fmt.Errorf("pruning the build cache: %w", err)
	}
	return n, nil
}
