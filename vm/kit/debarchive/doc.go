// Package debarchive fetches binary packages from a Debian archive mirror
// over HTTP(S) and verifies them the way apt does, without apt, dpkg or a
// system keyring (so it works on macOS and on any Linux distribution).
//
// The chain of trust is the archive's (https://wiki.debian.org/SecureApt,
// https://wiki.debian.org/DebianRepository/Format):
//
//  1. dists/SUITE/InRelease, a Release file clearsigned with OpenPGP
//     (RFC 9580 §7), is verified against Debian's archive signing keys,
//     which ship inside this package (see Keyring). Only the signed text is
//     parsed. Its Date must not lie in the future, its Valid-Until (when
//     present) not in the past, and its Suite or Codename must be the suite
//     asked for.
//  2. COMPONENT/binary-ARCH/Packages.gz (or .xz) is downloaded, by hash
//     when the Release says Acquire-By-Hash, and its size and SHA-256 are
//     checked against the Release before it is decompressed and parsed.
//  3. A package's .deb is downloaded from the pool, resumed with an HTTP
//     Range request when a partial file is left from an earlier attempt,
//     and renamed into place only after its size and SHA-256 match the
//     Packages entry.
//
// Failures of any of these checks are *VerificationError values naming
// the step (Kind), the file and what to do. Proxies come from the
// environment (HTTP_PROXY, HTTPS_PROXY, NO_PROXY) as net/http reads them.
//
// A Client caches what it fetched under its CacheDir: the InRelease it
// last verified (re-verified on every use and asked for again after
// MaxAge), the Packages index, and the result of each lookup by package
// name, so that a repeated Lookup costs a signature check and a small file
// read and needs no network.
package debarchive
