package machine

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Overlayfs markers (Linux Documentation/filesystems/overlayfs.rst).
const (
	xattrPrefix  = "SCHILY.xattr."
	overlayXattr = "trusted.overlay."
	opaqueXattr  = "trusted.overlay.opaque"
	whiteoutPfx  = ".wh."
	opaqueMarker = ".wh..wh..opq"
)

// convertOverlay copies the tar of an overlayfs upper directory from r to
// w as an OCI layer (image-spec layer.md "Whiteouts"): a character device
// 0/0 becomes an empty ".wh.NAME" file, a directory marked
// trusted.overlay.opaque=y is followed by a ".wh..wh..opq" entry, and
// other trusted.overlay.* attributes are dropped. The root entry "./" is
// left out.
func convertOverlay(r io.Reader, w io.Writer) error {
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if name == "" {
			continue
		}
		opaque := false
		for k, v := range h.PAXRecords {
			if strings.HasPrefix(k, xattrPrefix+overlayXattr) {
				if k == xattrPrefix+opaqueXattr && v == "y" {
					opaque = true
				}
				delete(h.PAXRecords, k)
			}
		}
		if h.Xattrs != nil { //nolint:staticcheck // older tars fill both
			for k := range h.Xattrs { //nolint:staticcheck
				if strings.HasPrefix(k, overlayXattr) {
					delete(h.Xattrs, k) //nolint:staticcheck
				}
			}
		}
		if h.Typeflag == tar.TypeChar && h.Devmajor == 0 && h.Devminor == 0 {
			dir, base := path.Split(name)
			wh := &tar.Header{Typeflag: tar.TypeReg, Name: dir + whiteoutPfx + base, Mode: 0o600,
				ModTime: h.ModTime, Format: tar.FormatPAX}
			if err := tw.WriteHeader(wh); err != nil {
				return err
			}
			continue
		}
		h.Name = name
		if h.Typeflag == tar.TypeDir {
			h.Name += "/"
		}
		if h.Typeflag == tar.TypeLink {
			h.Linkname = strings.TrimPrefix(path.Clean("/"+h.Linkname), "/")
		}
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := io.Copy(tw, tr); err != nil {
				return err
			}
		}
		if opaque && h.Typeflag == tar.TypeDir {
			m := &tar.Header{Typeflag: tar.TypeReg, Name: name + "/" + opaqueMarker, Mode: 0o600,
				ModTime: h.ModTime, Format: tar.FormatPAX}
			if err := tw.WriteHeader(m); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}

// diffIDWriter hashes what is written: the uncompressed layer's digest.
type diffIDWriter struct{ h hash.Hash }

func (d *diffIDWriter) Write(p []byte) (int, error) {
	if d.h == nil {
		d.h = sha256.New()
	}
	return d.h.Write(p)
}

func (d *diffIDWriter) sum() v1.Hash {
	if d.h == nil {
		d.h = sha256.New()
	}
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(d.h.Sum(nil))}
}
