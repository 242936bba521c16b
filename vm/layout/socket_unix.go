//go:build unix

package layout

import (
	"fmt"
	"net"
	"os"
)

// ListenUnix listens on a new unix socket at path (replacing a stale
// socket file there) that only the calling user can connect to: mode
// 0600, as every socket machinetop makes in its 0700 runtime directory is
// (a connection to one controls a machine). The mode is set right after
// bind(2); the 0700 directory keeps others out in between. Closing the
// listener removes the socket file, unless SetUnlinkOnClose(false) was
// called (for a socket handed on to a hypervisor).
func ListenUnix(path string) (*net.UnixListener, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(path)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("making %s private: %w", path, err)
	}
	return ln, nil
}
