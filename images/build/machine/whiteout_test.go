package machine

import (
	"archive/tar"
	"bytes"
	"io"
	"testing"
)

func TestConvertOverlay(t *testing.T) {
	var in bytes.Buffer
	tw := tar.NewWriter(&in)
	for _, h := range []*tar.Header{
		{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./etc/", Typeflag: tar.TypeDir, Mode: 0o755, PAXRecords: map[string]string{"SCHILY.xattr.trusted.overlay.origin": "x"}},
		{Name: "./etc/gone", Typeflag: tar.TypeChar, Mode: 0},
		{Name: "./var/cache/", Typeflag: tar.TypeDir, Mode: 0o755, PAXRecords: map[string]string{"SCHILY.xattr.trusted.overlay.opaque": "y", "SCHILY.xattr.user.keep": "1"}},
		{Name: "./var/cache/new", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2},
	} {
		tw.WriteHeader(h)
		if h.Size > 0 {
			io.WriteString(tw, "hi")
		}
	}
	tw.Close()
	var out bytes.Buffer
	if err := convertOverlay(&in, &out); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&out)
	var got []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		s := h.Name
		for k, v := range h.PAXRecords {
			if k != "path" {
				s += " " + k + "=" + v
			}
		}
		got = append(got, s)
	}
	want := []string{"etc/", "etc/.wh.gone", "var/cache/ SCHILY.xattr.user.keep=1", "var/cache/.wh..wh..opq", "var/cache/new"}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
}
