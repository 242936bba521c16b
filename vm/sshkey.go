package vm

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
)

// SSHKey returns the path of the user's machinetop SSH private key
// (layout.Data.SSHKey: ed25519, OpenSSH format, mode 0600, made on first
// use; its public half is authorized in every machine at boot) and
// its public key as an authorized_keys line (sshd(8), "AUTHORIZED_KEYS FILE
// FORMAT"), creating the key when it does not exist. Concurrent callers
// end up with the same key.
func (m *Manager) SSHKey() (path, authorized string, err error) {
	path = m.Data.SSHKey()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := createSSHKey(path); err != nil {
			return "", "", fmt.Errorf("creating the SSH key %s: %w", path, err)
		}
		b, err = os.ReadFile(path)
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
