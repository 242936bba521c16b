//go:build unix

package layout

import (
	"fmt"
	"os"
	"syscall"
)

// checkPrivateDir refuses a directory that is a symlink or is owned by
// another user (fix says what else to do), and makes it private when it
// lets group or others in: what is inside grants control of machines.
func checkPrivateDir(dir, fix string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok {
		return fmt.Errorf("%s is not a directory; remove it and try again", dir)
	}
	if int(st.Uid) != os.Getuid() {
		return fmt.Errorf("%s belongs to uid %d, not you (uid %d); remove it or %s", dir, st.Uid, os.Getuid(), fix)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("%s is open to other users and cannot be made private: %w", dir, err)
		}
	}
	return nil
}
