package images

import (
	"fmt"
	"regexp"
	"strings"
)

// DefaultTag is the tag a reference gets when it names none.
const DefaultTag = "latest"

var (
	// A path component as in Docker's reference grammar: lowercase
	// alphanumerics separated by '.', '_', '__' or runs of '-'.
	componentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	// A registry host: DNS labels separated by dots, optional port.
	domainRE = regexp.MustCompile(`^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?$`)
	tagRE    = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	hexRE    = regexp.MustCompile(`^[0-9a-f]+$`)
)

// ParseRef splits an image reference "NAME[:TAG]" into its normalised name
// and tag, following Docker's reference grammar: the name is one or more
// lowercase path components separated by '/', optionally led by a registry
// host ("example.com/team/app", "localhost:5000/app"); the tag defaults to
// DefaultTag. Docker Hub prefixes are dropped the way Docker shows names
// ("docker.io/library/debian" becomes "debian") and the host is lowercased,
// so one image has one spelling. Digest references ("NAME@sha256:…") are
// not names and are rejected; Store.Resolve accepts digests separately.
// The error says what is wrong with ref.
func ParseRef(ref string) (name, tag string, err error) {
	bad := func(why string) (string, string, error) {
		return "", "", fmt.Errorf("invalid image name %q: %s", ref, why)
	}
	if ref == "" {
		return bad("empty")
	}
	if strings.Contains(ref, "@") {
		return bad("digest references are not image names; use NAME[:TAG]")
	}
	name, tag = ref, DefaultTag
	// The tag follows the last ':' unless that ':' belongs to a host:port.
	if i := strings.LastIndex(ref, ":"); i >= 0 && !strings.Contains(ref[i+1:], "/") {
		name, tag = ref[:i], ref[i+1:]
		if !tagRE.MatchString(tag) {
			return bad("tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
		}
	}
	parts := strings.Split(name, "/")
	first := 0
	if len(parts) > 1 && (strings.ContainsAny(parts[0], ".:") || parts[0] == "localhost") {
		if !domainRE.MatchString(parts[0]) {
			return bad(fmt.Sprintf("%q is not a valid registry host", parts[0]))
		}
		// Host names are case-insensitive; paths are not.
		parts[0] = strings.ToLower(parts[0])
		first = 1
	}
	for _, p := range parts[first:] {
		switch {
		case p == "":
			return bad("empty path component")
		case strings.ToLower(p) != p:
			return bad("repository name must be lowercase")
		case !componentRE.MatchString(p):
			return bad(fmt.Sprintf("path component %q must be lowercase letters and digits separated by '.', '_', '__' or '-'", p))
		}
	}
	// Show Docker Hub names the way Docker does.
	if len(parts) > 1 && (parts[0] == "docker.io" || parts[0] == "index.docker.io") {
		parts = parts[1:]
		if len(parts) > 1 && parts[0] == "library" {
			parts = parts[1:]
		}
	}
	name = strings.Join(parts, "/")
	if len(name) > 255 {
		return bad("longer than 255 characters")
	}
	return name, tag, nil
}

// digestPrefix reports whether ref addresses an image by digest: a
// "sha256:" prefix or bare lowercase hex, at least 4 hex digits, at most a
// full sha256. It returns the hex part.
func digestPrefix(ref string) (string, bool) {
	h := strings.TrimPrefix(ref, "sha256:")
	if len(h) < 4 || len(h) > 64 || !hexRE.MatchString(h) {
		return "", false
	}
	return h, true
}
