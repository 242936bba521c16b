package vm

import (
	"fmt"
	"runtime"
	"strings"
)

// Guest architectures a machine can have, as GOARCH names (the names OCI
// image platforms use too).
const (
	ArchAMD64 = "amd64"
	ArchARM64 = "arm64"
)

// HostArch is the host's architecture (runtime.GOARCH), the architecture
// of a machine created without one.
func HostArch() string { return runtime.GOARCH }

// archAliases maps the names people write for an architecture to its
// GOARCH name: uname -m's (x86_64, aarch64) and the GOARCH names.
var archAliases = map[string]string{
	"amd64": ArchAMD64, "x86_64": ArchAMD64, "x86-64": ArchAMD64,
	"arm64": ArchARM64, "aarch64": ArchARM64,
}

// ParseArch parses a machine architecture as `machine create --arch` takes
// it (Apple's container machine -a/--arch): "amd64" or "arm64", or the
// names uname -m prints, "x86_64" and "aarch64", in any case. "" means
// the host's (HostArch). It returns an error naming s and the choices
// for anything else.
func ParseArch(s string) (string, error) {
	if s == "" {
		return HostArch(), nil
	}
	if a, ok := archAliases[strings.ToLower(strings.TrimSpace(s))]; ok {
		return a, nil
	}
	return "", fmt.Errorf("unknown architecture %q: use arm64 (aarch64) or amd64 (x86_64)", s)
}

// ArchFromPlatform returns the machine architecture an OCI platform
// "os/arch[/variant]" names, such as "linux/arm64/v8" (the image-spec's
// platform fields, as `--platform` takes them). Errors: a platform that
// is not os/arch[/variant], an OS other than linux, or an architecture
// ParseArch refuses.
func ArchFromPlatform(platform string) (string, error) {
	parts := strings.Split(platform, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return "", fmt.Errorf("invalid platform %q: use os/arch[/variant], e.g. linux/arm64", platform)
	}
	if parts[0] != "linux" {
		return "", fmt.Errorf("platform %q: machines run linux, not %s", platform, parts[0])
	}
	a, err := ParseArch(parts[1])
	if err != nil {
		return "", fmt.Errorf("platform %q: %w", platform, err)
	}
	return a, nil
}

// GuestArch returns the machine's architecture: c.Arch, or the host's for
// a machine created before machines had one (which were all the host's).
func (c *Config) GuestArch() string {
	if c.Arch != "" {
		return c.Arch
	}
	return HostArch()
}

// checkImagePlatform returns nil when an image for platform (as the image
// config names it, "os/arch[/variant]"; "" when it names none) can run as
// a machine of arch, else an error saying what to do.
func checkImagePlatform(image, platform, arch string) error {
	if platform == "" {
		return nil
	}
	got, err := ArchFromPlatform(platform)
	if err != nil {
		return fmt.Errorf("image %s cannot become a machine: %w", image, err)
	}
	if got != arch {
		return fmt.Errorf("image %s is for %s, not linux/%s: create the machine with --arch %s (or --platform %s), or get the image for linux/%s (`machinetop image pull --platform linux/%s`, or `image import --platform linux/%s` for a root filesystem tar)",
			image, platform, arch, got, platform, arch, arch, arch)
	}
	return nil
}

// checkBackendArch returns nil when a backend with the guest architectures
// archs (driver.Features.Archs) can run a machine of arch.
func checkBackendArch(backend string, archs []string, arch string) error {
	for _, a := range archs {
		if a == arch {
			return nil
		}
	}
	return fmt.Errorf("the %s backend cannot run %s machines on this host, only %s: the README's \"Machine architectures\" section says what each architecture needs",
		backend, arch, strings.Join(archs, ", "))
}
