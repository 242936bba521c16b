package images

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/distribution/reference"
)

// DefaultTag is the tag a reference gets when it names none.
const DefaultTag = "latest"

var hexRE = regexp.MustCompile(`^[0-9a-f]+$`)

// ParseRef splits an image reference "NAME[:TAG]" into its normalised name
// and tag, with Docker's reference grammar (github.com/distribution/
// reference, the parser Docker itself uses): the name is one or more
// lowercase path components separated by '/', optionally led by a
// registry host ("example.com/team/app", "localhost:5000/app"); the tag
// defaults to DefaultTag. Names are shown the way Docker shows them
// ("docker.io/library/debian" is "debian") and the host is lowercased, so
// one image has one spelling. Digest references ("NAME@sha256:…") are not
// names and are rejected; Store.Resolve accepts digests separately. The
// error, worded as a pull's (NormalizeRemote), says what is wrong with ref.
func ParseRef(ref string) (name, tag string, err error) {
	bad := func(why string) (string, string, error) {
		return "", "", fmt.Errorf("invalid image reference %q: %s", ref, why)
	}
	if ref == "" {
		return bad("empty")
	}
	if strings.Contains(ref, "@") {
		return bad("digest references are not image names; use NAME[:TAG]")
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		if errors.Is(err, reference.ErrReferenceInvalidFormat) {
			return bad(err.Error() + ": use NAME[:TAG], lowercase letters and digits separated by '.', '_', '__' or '-', e.g. debian:bookworm")
		}
		return bad(err.Error())
	}
	tag = DefaultTag
	if t, ok := named.(reference.Tagged); ok {
		tag = t.Tag()
	}
	name = reference.FamiliarName(named)
	// Host names are case-insensitive; paths are not.
	if d := reference.Domain(named); d != "docker.io" {
		name = strings.ToLower(d) + strings.TrimPrefix(name, d)
		// Lowercased, the host may be Docker Hub's: "Docker.IO/x" is "x".
		if n, err := reference.ParseNormalizedNamed(name); err == nil {
			name = reference.FamiliarName(n)
		}
	}
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
