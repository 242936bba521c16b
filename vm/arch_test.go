package vm

import (
	"context"
	"strings"
	"testing"
)

func TestParseArch(t *testing.T) {
	for in, want := range map[string]string{
		"": HostArch(), "arm64": "arm64", "aarch64": "arm64", "ARM64": "arm64",
		"amd64": "amd64", "x86_64": "amd64", "x86-64": "amd64",
	} {
		if got, err := ParseArch(in); err != nil || got != want {
			t.Errorf("ParseArch(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"sparc", "arm", "386", "linux/arm64"} {
		if _, err := ParseArch(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("ParseArch(%q) = %v, want an error naming it", bad, err)
		}
	}
}

func TestArchFromPlatform(t *testing.T) {
	for in, want := range map[string]string{
		"linux/arm64": "arm64", "linux/arm64/v8": "arm64", "linux/amd64": "amd64",
	} {
		if got, err := ArchFromPlatform(in); err != nil || got != want {
			t.Errorf("ArchFromPlatform(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"arm64": "os/arch", "linux/": "os/arch", "windows/amd64": "machines run linux",
		"linux/s390x": "unknown architecture", "linux/arm64/v8/x": "os/arch",
	} {
		if _, err := ArchFromPlatform(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ArchFromPlatform(%q) = %v, want an error mentioning %q", in, err, want)
		}
	}
}

// Create records the architecture, and refuses an image for another one
// with the flag to use named, leaving no machine behind.
func TestCreateChecksImagePlatform(t *testing.T) {
	m := newTestManager(t)
	ctx := context.Background()
	src := m.Images.(tarImage)
	src.platform = "linux/arm64/v8"
	m.Images = src
	other := ArchAMD64
	if HostArch() == ArchAMD64 {
		other = ArchARM64
	}
	if other == ArchARM64 {
		if _, err := m.Create(ctx, CreateOptions{Image: "test:latest", Name: "wrong"}); err == nil ||
			!strings.Contains(err.Error(), "--arch arm64") || !strings.Contains(err.Error(), "linux/arm64/v8") {
			t.Fatalf("creating a %s machine from a linux/arm64 image: %v", HostArch(), err)
		}
	}
	cfg, err := m.Create(ctx, CreateOptions{Image: "test:latest", Name: "arm", Arch: "aarch64"})
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := m.Load("arm")
	if err != nil || cfg.Arch != ArchARM64 || loaded.Arch != ArchARM64 || loaded.GuestArch() != ArchARM64 {
		t.Fatalf("arch created %q, stored %q (%v); want arm64", cfg.Arch, loaded.Arch, err)
	}
	if _, err := m.Create(ctx, CreateOptions{Image: "test:latest", Name: "bad", Arch: "mips"}); err == nil || !strings.Contains(err.Error(), "mips") {
		t.Fatalf("an unknown architecture: %v", err)
	}
	names, _ := m.Names()
	if len(names) != 1 {
		t.Fatalf("refused creates left machines: %v", names)
	}
	if (&Config{}).GuestArch() != HostArch() {
		t.Fatal("a machine made before architectures is not the host's")
	}
}
