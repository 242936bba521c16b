package debarchive

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// MaxFutureSkew is how far a Release's Date may lie ahead of the local
// clock before the Release is refused as not yet valid.
const MaxFutureSkew = 24 * time.Hour

// Release is the verified content of a suite's InRelease file
// (https://wiki.debian.org/DebianRepository/Format#A.22Release.22_files).
type Release struct {
	Suite    string // e.g. "oldstable"
	Codename string // e.g. "bookworm"
	Date     time.Time
	// ValidUntil is zero when the Release has no Valid-Until field (as
	// Debian's main suites do not; the security suite has one).
	ValidUntil    time.Time
	Architectures []string
	Components    []string
	// AcquireByHash says indices are also served under
	// .../by-hash/SHA256/<digest>, which does not race with mirror updates.
	AcquireByHash bool
	// Files maps a path relative to dists/SUITE/ (e.g.
	// "main/binary-amd64/Packages.gz") to its size and SHA-256.
	Files map[string]FileDigest
	// Signer names the key whose signature verified, e.g. "Debian Archive
	// Automatic Signing Key (12/bookworm) <ftpmaster@debian.org>
	// [6ED0E7B82643E131]".
	Signer string
	// Digest is the hex SHA-256 of the whole InRelease file.
	Digest string
}

// FileDigest is a file's size in bytes and hex SHA-256, as an archive
// index lists it.
type FileDigest struct {
	Size   int64
	SHA256 string
}

// verifyInRelease checks the clearsigned InRelease data against keyring at
// time now and parses the signed text. name is the file's URL or path for
// errors. Every signature in the file is tried; one good signature from a
// key in the keyring is enough, as for apt.
func verifyInRelease(data []byte, keyring openpgp.KeyRing, now time.Time, name string) (*Release, error) {
	sigErr := func(err error) error {
		return &VerificationError{Check: CheckInReleaseSignature, File: name, Err: err, Hint: mirrorHint}
	}
	block, rest := clearsign.Decode(data)
	if block == nil {
		return nil, sigErr(errors.New("not an OpenPGP clearsigned message"))
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, sigErr(errors.New("data after the signature"))
	}
	sigs, err := io.ReadAll(block.ArmoredSignature.Body)
	if err != nil {
		return nil, sigErr(fmt.Errorf("reading the signature: %w", err))
	}
	signer, err := checkSignatures(keyring, block.Bytes, sigs, now)
	if err != nil {
		return nil, sigErr(err)
	}
	r, err := parseRelease(block.Plaintext)
	if err != nil {
		return nil, &VerificationError{Check: CheckRelease, File: name, Err: err, Hint: mirrorHint}
	}
	r.Signer = signer
	sum := sha256.Sum256(data)
	r.Digest = hex.EncodeToString(sum[:])
	return r, nil
}

// checkSignatures verifies signed against each signature packet in sigs
// (the binary body of the armored signature) and returns a description of
// the first key that verified; the error lists why each one failed.
func checkSignatures(keyring openpgp.KeyRing, signed, sigs []byte, now time.Time) (string, error) {
	cfg := &packet.Config{Time: func() time.Time { return now }}
	var failures []string
	r := bytes.NewReader(sigs)
	for r.Len() > 0 {
		start := len(sigs) - r.Len()
		p, err := packet.Read(r)
		if err != nil {
			return "", fmt.Errorf("malformed signature packet: %w", err)
		}
		raw := sigs[start : len(sigs)-r.Len()]
		sig, ok := p.(*packet.Signature)
		if !ok {
			return "", errors.New("non-signature packet in the signature block")
		}
		id := "without issuer"
		if sig.IssuerKeyId != nil {
			id = fmt.Sprintf("%016X", *sig.IssuerKeyId)
		}
		_, ent, err := openpgp.VerifyDetachedSignature(keyring, bytes.NewReader(signed), bytes.NewReader(raw), cfg)
		if err == nil {
			return fmt.Sprintf("%s [%s]", entityName(ent), id), nil
		}
		failures = append(failures, fmt.Sprintf("key %s: %v", id, err))
	}
	if len(failures) == 0 {
		return "", errors.New("no signature")
	}
	return "", fmt.Errorf("no signature verifies against the archive keyring (%s)", strings.Join(failures, "; "))
}

func entityName(e *openpgp.Entity) string {
	if e == nil {
		return "unknown key"
	}
	for name := range e.Identities {
		return name
	}
	return fmt.Sprintf("key %X", e.PrimaryKey.Fingerprint)
}

// releaseFields splits the one paragraph of a Release file into its
// fields (deb822(5) syntax), a multi-line field's lines joined by "\n".
// (The general control-file parser joins continuation lines one string
// concatenation at a time, which is quadratic in the thousand-line
// checksum fields of a Release.)
func releaseFields(text []byte) (map[string]string, error) {
	fields := map[string][]string{}
	var key string
	for _, line := range strings.Split(string(text), "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case strings.TrimSpace(line) == "":
			if len(fields) > 0 {
				key = "" // the paragraph ended; later lines are not part of it
			}
		case line[0] == ' ' || line[0] == '\t':
			if key == "" {
				return nil, fmt.Errorf("continuation line %q outside a field", line)
			}
			fields[key] = append(fields[key], strings.TrimSpace(line))
		case key == "" && len(fields) > 0:
			return nil, fmt.Errorf("more than one paragraph (at %q)", line)
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				return nil, fmt.Errorf("line %q has no ':'", line)
			}
			key = strings.TrimSpace(k)
			fields[key] = []string{strings.TrimSpace(v)}
		}
	}
	if len(fields) == 0 {
		return nil, errors.New("empty Release")
	}
	out := make(map[string]string, len(fields))
	for k, v := range fields {
		out[k] = strings.Join(v, "\n")
	}
	return out, nil
}

// parseRelease parses the text of a Release file.
func parseRelease(text []byte) (*Release, error) {
	v, err := releaseFields(text)
	if err != nil {
		return nil, err
	}
	r := &Release{
		Suite:         v["Suite"],
		Codename:      v["Codename"],
		Architectures: strings.Fields(v["Architectures"]),
		Components:    strings.Fields(v["Components"]),
		AcquireByHash: strings.EqualFold(v["Acquire-By-Hash"], "yes"),
		Files:         map[string]FileDigest{},
	}
	if r.Date, err = parseDate(v["Date"]); err != nil {
		return nil, fmt.Errorf("Date: %w", err)
	}
	if s := v["Valid-Until"]; s != "" {
		if r.ValidUntil, err = parseDate(s); err != nil {
			return nil, fmt.Errorf("Valid-Until: %w", err)
		}
	}
	for _, line := range strings.Split(v["SHA256"], "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 || len(f[0]) != 64 {
			return nil, fmt.Errorf("bad SHA256 line %q", line)
		}
		size, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || size < 0 {
			return nil, fmt.Errorf("bad size in SHA256 line %q", line)
		}
		r.Files[f[2]] = FileDigest{Size: size, SHA256: strings.ToLower(f[0])}
	}
	if len(r.Files) == 0 {
		return nil, errors.New("no SHA256 file list")
	}
	return r, nil
}

// parseDate parses a Release date, RFC 2822 style as the format says
// ("Sat, 11 Jul 2026 10:16:37 UTC"), with a numeric or named zone.
func parseDate(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC1123, time.RFC1123Z, "Mon, 2 Jan 2006 15:04:05 MST", "Mon, 2 Jan 2006 15:04:05 -0700"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("cannot parse %q as an RFC 2822 date", s)
}

// checkSuite tells whether r is for suite (by its Suite or Codename).
func (r *Release) checkSuite(suite, name string) error {
	if r.Suite != suite && r.Codename != suite {
		return &VerificationError{Check: CheckRelease, File: name,
			Err:  fmt.Errorf("it is for suite %q (codename %q), not %q", r.Suite, r.Codename, suite),
			Hint: "the mirror serves another suite under this name: check the mirror URL and suite"}
	}
	return nil
}

// checkDates tells whether a Release just fetched is current at time now:
// dated no later than now plus MaxFutureSkew, and not expired. (As for
// apt, these are checked when a Release is fetched; a cached one stays
// usable.)
func (r *Release) checkDates(now time.Time, name string) error {
	bad := func(err error, hint string) error {
		return &VerificationError{Check: CheckRelease, File: name, Err: err, Hint: hint}
	}
	if r.Date.After(now.Add(MaxFutureSkew)) {
		return bad(fmt.Errorf("its Date %s is in the future", r.Date.UTC().Format(time.RFC1123)),
			"check this computer's clock")
	}
	if !r.ValidUntil.IsZero() && now.After(r.ValidUntil) {
		return bad(fmt.Errorf("it expired at %s (Valid-Until)", r.ValidUntil.UTC().Format(time.RFC1123)),
			"the mirror is out of date (use another mirror) or this computer's clock is wrong")
	}
	return nil
}

// hasArch tells whether the Release lists arch.
func (r *Release) hasArch(arch string) bool { return slices.Contains(r.Architectures, arch) }
