//go:build !darwin

package layout

import (
	"fmt"
	"os"
	"path/filepath"
)

// defaultDataDir is ~/.local/share/machinetop. Where a machine shares the
// home directory, the Linux backend hides it from the machine.
func defaultDataDir() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cannot find a home directory for machinetop's data (set MACHINETOP_HOME): %w", err)
	}
	return filepath.Join(home, ".local", "share", "machinetop"), nil
}
