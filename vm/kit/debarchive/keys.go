package debarchive

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"sync"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// The keys in keys/ are the armored public keys that Debian's
// debian-archive-keyring package (version 2023.3+deb12u2) installs in
// /etc/apt/trusted.gpg.d/: the archive, security-archive and stable
// release signing keys of Debian 11 (bullseye), 12 (bookworm) and 13
// (trixie). The package's copyright file says the keys fall under no
// copyright. When Debian adds a release's keys, copy the new
// debian-archive-*.asc files here from a newer debian-archive-keyring.
//
//go:embed keys/*.asc
var keyFiles embed.FS

var (
	keyringOnce sync.Once
	keyring     openpgp.EntityList
	keyringErr  error
)

// Keyring returns Debian's archive signing keys that are built into this
// package, parsed once. The error is only for a broken build (an embedded
// key that does not parse).
func Keyring() (openpgp.EntityList, error) {
	keyringOnce.Do(func() {
		files, err := fs.Glob(keyFiles, "keys/*.asc")
		if err != nil || len(files) == 0 {
			keyringErr = fmt.Errorf("debarchive: no embedded archive keys (%v)", err)
			return
		}
		for _, f := range files {
			b, err := keyFiles.ReadFile(f)
			if err != nil {
				keyringErr = err
				return
			}
			ents, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(b))
			if err != nil {
				keyringErr = fmt.Errorf("debarchive: embedded key %s: %w", f, err)
				return
			}
			keyring = append(keyring, ents...)
		}
	})
	return keyring, keyringErr
}
