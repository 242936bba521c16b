package debarchive

import "fmt"

// Check names a verification step of the archive's chain of trust.
type Check string

// The checks a VerificationError can name, in chain order.
const (
	// CheckInReleaseSignature: the InRelease file's OpenPGP signature does
	// not verify against the keyring (tampered, truncated, or signed by an
	// unknown or expired key), or the file is not clearsigned.
	CheckInReleaseSignature Check = "InRelease signature"
	// CheckRelease: the signed Release is not usable as is: its Date lies
	// in the future, its Valid-Until has passed, it is for another suite,
	// or it lacks the index asked for.
	CheckRelease Check = "Release"
	// CheckPackagesDigest: a Packages index does not have the size and
	// SHA-256 the Release lists for it.
	CheckPackagesDigest Check = "Packages digest"
	// CheckDebDigest: a .deb does not have the size and SHA-256 its
	// Packages entry lists.
	CheckDebDigest Check = ".deb digest"
)

// VerificationError reports a file that failed a check of the chain of
// trust. It is never a network error: retrying against the same mirror
// usually gives the same result.
type VerificationError struct {
	Check Check  // which step failed
	File  string // URL or local path of the file at fault
	Err   error  // what was wrong
	Hint  string // what the user can do
}

// Error names the check and file that failed and what to do.
func (e *VerificationError) Error() string {
	s := fmt.Sprintf("%s verification failed for %s: %v", e.Check, e.File, e.Err)
	if e.Hint != "" {
		s += "; " + e.Hint
	}
	return s
}

// Unwrap returns the underlying cause.
func (e *VerificationError) Unwrap() error { return e.Err }

// mirrorHint is the advice for a file a mirror served wrong.
const mirrorHint = "the mirror served a tampered or broken file: try again later or use another mirror"
