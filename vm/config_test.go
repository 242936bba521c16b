package vm

import (
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"a", "bb", "debian-bookworm", "a1-b2", strings.Repeat("a", MaxNameLen)} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "Foo", "../x", "-a", "a-", "a_b", "a.b", "a b", strings.Repeat("a", MaxNameLen+1)} {
		if err := ValidateName(bad); err == nil {
			t.Errorf("ValidateName(%q) = nil, want an error", bad)
		}
	}
}

func TestDefaultName(t *testing.T) {
	for in, want := range map[string]string{
		"debian:bookworm":             "debian-bookworm",
		"alpine":                      "alpine-latest",
		"example.com/team/app:v1.2":   "app-v1-2",
		"localhost:5000/x/busybox":    "busybox-latest",
		"ubuntu@sha256:abcdef":        "ubuntu-latest",
		"Registry.io/UPPER_case:Tag_": "upper-case-tag",
	} {
		if got := DefaultName(in); got != want {
			t.Errorf("DefaultName(%q) = %q, want %q", in, got, want)
		}
		if err := ValidateName(DefaultName(in)); err != nil {
			t.Errorf("DefaultName(%q) is not a valid name: %v", in, err)
		}
	}
}

func TestParseAndFormatSize(t *testing.T) {
	for in, want := range map[string]uint64{
		"1024": 1024, "512M": 512 * MiB, "8G": 8 * GiB, "1.5GiB": 3 * GiB / 2, "64gb": 64 * GiB, "2t": 2 * TiB, "4k": 4 * KiB,
	} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "lots", "-1G", "0", "1X", "1.2.3G"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) succeeded, want an error", bad)
		}
	}
	for in, want := range map[uint64]string{
		0: "0B", 512: "512B", 16 * GiB: "16G", 3 * GiB / 2: "1.5G", 75 * MiB: "75M", 4*MiB + 1: "4M", 10*GiB + 1: "10G",
	} {
		if got := FormatSize(in); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestParseMemoryWantsAUnit(t *testing.T) {
	if _, err := ParseMemory("100"); err == nil || !strings.Contains(err.Error(), "100M") {
		t.Fatalf("ParseMemory(\"100\") = %v, want a hint to write 100M", err)
	}
	if b, err := ParseMemory("2G"); err != nil || b != 2*GiB {
		t.Fatalf("ParseMemory(2G) = %d, %v", b, err)
	}
}
