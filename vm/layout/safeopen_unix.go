//go:build unix

package layout

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrUnsafe is wrapped by the errors of OpenBeneath for a path it refuses
// to open: one that passes through or ends in a symbolic link, climbs out
// with "..", or names something other than a regular file (or directory)
// owned by the calling user.
var ErrUnsafe = errors.New("unsafe path")

// OpenBeneath opens the file rel inside the directory root the way every
// host process of machinetop opens files in its own directories, which a
// machine may have been able to write to: no symbolic link is followed
// below root (every directory on the way and the file itself are opened
// with O_NOFOLLOW, relative to the one before), rel must be relative and
// may not contain "..", and every directory on the way and the file must
// belong to the calling user; the file must be a regular file (so a FIFO,
// a device or a socket planted there is refused, without blocking on it).
// root itself is opened as given: it is the user's choice and may lie
// behind links.
//
// flag and perm are as for os.OpenFile; O_CREATE creates a missing file
// with perm, O_TRUNC truncates only after the checks passed. The file is
// opened close-on-exec. Refusals wrap ErrUnsafe and name the path and the
// fix; other failures are *fs.PathError (fs.ErrNotExist for a missing
// file without O_CREATE).
func OpenBeneath(root, rel string, flag int, perm fs.FileMode) (*os.File, error) {
	full := filepath.Join(root, rel)
	parts, err := splitBeneath(rel)
	if err != nil {
		return nil, err
	}
	dfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: root, Err: err}
	}
	defer func() { unix.Close(dfd) }()
	at := root
	for _, p := range parts[:len(parts)-1] {
		at = filepath.Join(at, p)
		fd, err := unix.Openat(dfd, p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, openError(dfd, p, at, err)
		}
		unix.Close(dfd)
		dfd = fd
		if err := checkOwned(fd, at, true); err != nil {
			return nil, err
		}
	}
	last := parts[len(parts)-1]
	trunc := flag&os.O_TRUNC != 0
	oflag := (flag &^ os.O_TRUNC) | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK
	fd, err := unix.Openat(dfd, last, oflag, uint32(perm.Perm()))
	if err != nil {
		return nil, openError(dfd, last, full, err)
	}
	if err := checkOwned(fd, full, false); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// O_NONBLOCK only kept the open from hanging on a FIFO.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "fcntl", Path: full, Err: err}
	}
	f := os.NewFile(uintptr(fd), full)
	if trunc {
		if err := f.Truncate(0); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// splitBeneath splits rel into its names, refusing an absolute path, an
// empty one and "..".
func splitBeneath(rel string) ([]string, error) {
	if rel == "" || filepath.IsAbs(rel) {
		return nil, fmt.Errorf("%q is not a path relative to a machinetop directory: %w", rel, ErrUnsafe)
	}
	var parts []string
	for _, p := range strings.Split(rel, "/") {
		if p == "" || p == "." {
			continue
		}
		if p == ".." {
			return nil, fmt.Errorf("%q climbs out of its directory with \"..\": %w", rel, ErrUnsafe)
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("%q names no file: %w", rel, ErrUnsafe)
	}
	return parts, nil
}

// openError turns a failed openat of name in dfd into an error naming
// full; a symbolic link (ELOOP, or ENOTDIR for a link where a directory
// was expected) gets a refusal that says what to do.
func openError(dfd int, name, full string, err error) error {
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.EMLINK) {
		var st unix.Stat_t
		if unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return fmt.Errorf("%s is a symbolic link, and machinetop never follows links in its own directories (a machine may have planted it): remove it: %w", full, ErrUnsafe)
		}
	}
	return &fs.PathError{Op: "open", Path: full, Err: err}
}

// checkOwned refuses fd unless it is a directory (dir) or a regular file
// owned by the calling user.
func checkOwned(fd int, path string, dir bool) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	kind := st.Mode & unix.S_IFMT
	switch {
	case dir && kind != unix.S_IFDIR:
		return fmt.Errorf("%s is not a directory: %w", path, ErrUnsafe)
	case !dir && kind != unix.S_IFREG:
		return fmt.Errorf("%s is not a regular file (mode %#o), and machinetop opens only regular files in its own directories: remove it: %w", path, kind, ErrUnsafe)
	}
	if int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s belongs to uid %d, not to you (uid %d), and machinetop uses only its own files: remove it: %w", path, st.Uid, os.Geteuid(), ErrUnsafe)
	}
	return nil
}

// SameFile reports whether path, looked up without following a final
// symbolic link, still names the file f. Backends whose hypervisor takes
// only a path (vz) check it after handing the path over, so that a file
// swapped in after OpenBeneath is refused.
func SameFile(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Lstat(path)
	return err == nil && os.SameFile(a, b)
}

// Open opens the machine's file path (one of m's paths: m.Disk(),
// m.ConsoleLog(), ...) with OpenBeneath from the data directory the
// machine is in (Dir's grandparent), so that nothing below the data
// directory is followed.
func (m Machine) Open(path string, flag int, perm fs.FileMode) (*os.File, error) {
	root := filepath.Dir(filepath.Dir(m.Dir))
	return openUnder(root, path, flag, perm)
}

// Open opens the run directory's file path (one of r's paths) with
// OpenBeneath from the runtime directory (Dir's parent).
func (r Run) Open(path string, flag int, perm fs.FileMode) (*os.File, error) {
	return openUnder(filepath.Dir(r.Dir), path, flag, perm)
}

func openUnder(root, path string, flag int, perm fs.FileMode) (*os.File, error) {
	rel, err := filepath.Rel(root, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return nil, fmt.Errorf("%s is not inside %s: %w", path, root, ErrUnsafe)
	}
	return OpenBeneath(root, rel, flag, perm)
}

// LockFlag is how lock files in machinetop's directories are opened
// (gofrs/flock's SetFlag): created when missing, read-write, never through
// a symbolic link in their place.
const LockFlag = os.O_CREATE | os.O_RDWR | unix.O_NOFOLLOW
