//go:build linux

package hostns

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestSubordinate(t *testing.T) {
	f := filepath.Join(t.TempDir(), "subuid")
	os.WriteFile(f, []byte("alice:100000:65536\nbob:165536:1000\n1003:300000:65536\nbob:400000:65536\n"), 0o644)
	for _, c := range []struct {
		name string
		id   int
		want IDRange
		err  string
	}{
		{"alice", 1001, IDRange{100000, 65536}, ""},
		{"bob", 1002, IDRange{400000, 65536}, ""},   // the first range is too small
		{"carol", 1003, IDRange{300000, 65536}, ""}, // by id
		{"dave", 1004, IDRange{}, "no range of 65535 ids"},
	} {
		got, err := subordinate(f, c.name, c.id, idSpan-1)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: %v, want an error with %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: %+v, %v; want %+v", c.name, got, err, c.want)
		}
	}
	if _, err := subordinate(filepath.Join(t.TempDir(), "missing"), "alice", 1, 1); err == nil {
		t.Error("a missing file gave a range")
	}
}

func TestIDMap(t *testing.T) {
	sub := IDRange{100000, 65536}
	// Every id below idSpan is mapped once, the user's own to itself.
	got := idMap(1000, sub)
	want := []string{"0", "100000", "1000", "1000", "1000", "1", "1001", "101000", "64535"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("idMap(1000) = %v, want %v", got, want)
	}
	// A user whose id lies above the span.
	got = idMap(70000, sub)
	want = []string{"0", "100000", "65535", "70000", "70000", "1"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("idMap(70000) = %v, want %v", got, want)
	}
	// Uid 0 (never used unprivileged, but the map stays sound).
	got = idMap(0, sub)
	want = []string{"0", "0", "1", "1", "100000", "65535"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("idMap(0) = %v, want %v", got, want)
	}
}
