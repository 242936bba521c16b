//go:build darwin

package layout

import (
	"fmt"
	"os"
	"path/filepath"
)

// sharedDir is macOS's per-machine directory open to every local user
// (root-owned, sticky: nobody can remove or rename another user's entry).
const sharedDir = "/Users/Shared"

// defaultDataDir is /Users/Shared/machinetop-UID: outside the home
// directory, so that sharing the home with a machine (the default
// --home-mount rw) never shares machinetop's own state, which the
// Virtualization framework's directory share cannot hide. It is created
// mode 0700 and refused when it belongs to someone else.
func defaultDataDir() (string, error) {
	dir := filepath.Join(sharedDir, fmt.Sprintf("machinetop-%d", os.Getuid()))
	if err := os.Mkdir(dir, 0o700); err != nil && !os.IsExist(err) {
		return "", fmt.Errorf("creating machinetop's data directory %s (or set MACHINETOP_HOME to a directory outside your home): %w", dir, err)
	}
	if err := checkPrivateDir(dir, "set MACHINETOP_HOME to a directory of yours outside your home"); err != nil {
		return "", err
	}
	return dir, nil
}
