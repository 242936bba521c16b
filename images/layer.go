package images

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
)

// FileLayer is a gzip-compressed OCI layer (OCI image-spec layer.md,
// media type application/vnd.oci.image.layer.v1.tar+gzip) kept in a local
// file, whose digest and diff ID were computed while it was written. It
// implements v1.Layer without reading the file again.
type FileLayer struct {
	path           string
	digest, diffID v1.Hash
	size           int64
}

// NewFileLayer gzips the uncompressed layer tar read from r into a new file
// in dir, hashing both forms in the same pass. It returns r's error or a
// write error, and removes the file on failure.
func NewFileLayer(r io.Reader, dir string) (*FileLayer, error) {
	out, err := os.CreateTemp(dir, "layer-*.tar.gz")
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		out.Close()
		if !ok {
			os.Remove(out.Name())
		}
	}()
	compressed, uncompressed := sha256.New(), sha256.New()
	cw := &countWriter{w: io.MultiWriter(out, compressed)}
	bw := bufio.NewWriterSize(cw, 1<<20)
	zw, err := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(io.MultiWriter(zw, uncompressed), r); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	if err := out.Close(); err != nil {
		return nil, err
	}
	ok = true
	return &FileLayer{path: out.Name(), digest: sum(compressed), diffID: sum(uncompressed), size: cw.n}, nil
}

// Path is the layer's compressed file.
func (l *FileLayer) Path() string { return l.path }

// Digest is the sha256 of the compressed layer.
func (l *FileLayer) Digest() (v1.Hash, error) { return l.digest, nil }

// DiffID is the sha256 of the uncompressed layer tar.
func (l *FileLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }

// Size is the compressed layer's size in bytes.
func (l *FileLayer) Size() (int64, error) { return l.size, nil }

// MediaType is the OCI gzip layer type.
func (l *FileLayer) MediaType() (types.MediaType, error) { return types.OCILayer, nil }

// Compressed opens the gzip file.
func (l *FileLayer) Compressed() (io.ReadCloser, error) { return os.Open(l.path) }

// Uncompressed opens the file and decompresses it.
func (l *FileLayer) Uncompressed() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		f.Close()
		return nil, err
	}
	return readCloser{zr, f}, nil
}

func sum(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
