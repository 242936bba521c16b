package vm

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/machinetop/machinetop/vm/layout"
)

// SSHKey returns the path of the user's machinetop SSH private key
// (layout.Data.SSHKey: ed25519, OpenSSH format, mode 0600, made on first
// use; its public half is authorized in every machine at boot) and
// its public key as an authorized_keys line (sshd(8), "AUTHORIZED_KEYS FILE
// FORMAT"), creating the key when it does not exist. Concurrent callers
// end up with the same key.
func (m *Manager) SSHKey() (path, authorized string, err error) {
	path = m.Data.SSHKey()
	b, err := readPrivate(m.Data.Root, path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := createSSHKey(path); err != nil {
			return "", "", fmt.Errorf("creating the SSH key %s: %w", path, err)
		}
		b, err = readPrivate(m.Data.Root, path)
	}
	if err != nil {
		return "", "", err
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return "", "", fmt.Errorf("SSH key %s: %w; delete it to make a new one", path, err)
	}
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	return path, pub + " machinetop", nil
}

// readPrivate reads the key file path below the data directory root
// (layout.OpenBeneath: never through a link, only a file of the user's)
// and makes it and its directory private to the user (0600 in 0700) if
// they are not, as ssh(1) requires of a private key.
func readPrivate(root, path string) ([]byte, error) {
	rel, err := filepath.Rel(root, path)
	if err != nil {
		return nil, err
	}
	f, err := layout.OpenBeneath(root, rel, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm() != 0o600 {
		if err := f.Chmod(0o600); err != nil {
			return nil, fmt.Errorf("making the SSH key %s private: %w", path, err)
		}
	}
	dir := filepath.Dir(path)
	if fi, err := os.Lstat(dir); err == nil && fi.IsDir() && fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("making %s private: %w", dir, err)
		}
	}
	return io.ReadAll(f)
}

// createSSHKey writes a new ed25519 key to path unless one appears there
// meanwhile: it is written to a temporary file and linked into place, which
// fails without harm when another process won.
func createSSHKey(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	blk, err := ssh.MarshalPrivateKey(priv, "machinetop")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".key-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(pem.EncodeToMemory(blk)); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}
