package vm

import (
	"fmt"
	"os"
	"path/filepath"
)

// DataDir returns machinetop's data directory, where images, machines and
// the guest kit cache live: $MACHINETOP_HOME if set, else
// $XDG_DATA_HOME/machinetop, else ~/.local/share/machinetop (the XDG Base
// Directory specification's default). It does not create the directory; it
// returns an error only when no home directory can be determined.
func DataDir() (string, error) {
	if d := os.Getenv("MACHINETOP_HOME"); d != "" {
		return filepath.Abs(d)
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "machinetop"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cannot find a home directory for machinetop's data (set MACHINETOP_HOME): %w", err)
	}
	return filepath.Join(home, ".local", "share", "machinetop"), nil
}

// RuntimeDir returns a private directory (mode 0700, owned by the current
// user) for sockets: $XDG_RUNTIME_DIR/machinetop when that is set, else
// machinetop-<uid> under os.TempDir(). Unix socket paths are limited to 107
// bytes (unix(7)), so sockets live here under a short machine ID rather than
// under the data directory. It returns an error if the directory cannot be
// created or is owned by someone else or open to others.
func RuntimeDir() (string, error) {
	var dir string
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" && filepath.IsAbs(d) {
		dir = filepath.Join(d, "machinetop")
	} else {
		dir = filepath.Join(os.TempDir(), fmt.Sprintf("machinetop-%d", os.Getuid()))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("creating runtime directory: %w", err)
	}
	if err := checkPrivateDir(dir); err != nil {
		return "", err
	}
	return dir, nil
}
