//go:build linux

// Package fsreplay makes host changes in shared directories visible to
// inotify watchers in the guest. inotify fires only for operations done
// through the guest's own VFS, and a change made on the host reaches the
// guest's virtiofs or 9p mount silently; so the agent repeats, on the
// mount at the same path, an operation that fires an event without
// changing what the host wrote:
//
//   - changed regular file: open for writing (read-only when the share or
//     the file does not allow it), fchmod to the mode the host has (read
//     fresh, AT_STATX_FORCE_SYNC), close: IN_OPEN, IN_ATTRIB,
//     IN_CLOSE_WRITE (on a read-only share IN_OPEN, IN_CLOSE_NOWRITE);
//   - changed directory: fchmod to its own mode: IN_ATTRIB (IN_ISDIR on
//     the parent's watch);
//   - removed file: create it with O_EXCL and mode 0000, close, and remove
//     it when it is still the file created: IN_CREATE, IN_OPEN,
//     IN_CLOSE_WRITE, IN_DELETE;
//   - removed directory: mkdir with mode 0000, rmdir: IN_CREATE and
//     IN_DELETE with IN_ISDIR.
//
// A host create therefore reads as IN_ATTRIB + IN_CLOSE_WRITE in the
// guest, a modify as the same, a delete as IN_CREATE + IN_DELETE, a rename
// as the removal of the old name and a change of the new one. The host
// sees the replays as a ctime change and, for a removal, the path briefly
// existing as an empty file or directory of mode 0000; its watcher drops
// those echoes (vm/supervisor/fswatch). A host change of a file a guest
// process wrote within GuestWriteWindow is the echo of that write and is
// not replayed (see Writes). Symbolic links, devices, FIFOs
// and sockets are not replayed. Every operation goes through os.Root on
// the mount point, so a path never leaves the share.
package fsreplay

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/machinetop/machinetop/guest/proto"
)

// Replayer replays host changes on the mounts it was made for. It is not
// safe for concurrent use.
type Replayer struct {
	// Writes, when set, holds the files guest processes wrote lately:
	// a change of one of them within GuestWriteWindow is the echo of that
	// write and is not replayed.
	Writes *Writes

	mounts []string
	roots  []*os.Root
}

// New returns a Replayer for the guest mount points mounts (absolute),
// indexed as proto.FileEvent.Mount; the mounts are opened on first use.
func New(mounts []string) *Replayer {
	return &Replayer{mounts: mounts, roots: make([]*os.Root, len(mounts))}
}

// Close closes the mounts opened.
func (r *Replayer) Close() {
	for i, rt := range r.roots {
		if rt != nil {
			rt.Close()
			r.roots[i] = nil
		}
	}
}

// Replay repeats ev on its mount (see the package comment). A path whose
// parent no longer exists, or that changed again before the replay, is
// not an error: a later event carries it. It returns an error naming the
// event for a bad event or a failed operation.
func (r *Replayer) Replay(ev proto.FileEvent) error {
	root, err := r.root(ev.Mount)
	if err != nil {
		return err
	}
	p := ev.Path
	if p == "" || p == "." || path.IsAbs(p) || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") {
		return fmt.Errorf("file event: bad path %q", p)
	}
	switch ev.Kind {
	case proto.FileChanged:
		if !ev.Dir && r.Writes.Recent(path.Join(r.mounts[ev.Mount], p), time.Now()) {
			return nil
		}
		err = changed(root, p)
	case proto.FileRemoved:
		if ev.Dir {
			err = removedDir(root, p)
		} else {
			err = removedFile(root, p)
		}
	default:
		return fmt.Errorf("file event %s: unknown kind %q", p, ev.Kind)
	}
	if err != nil && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("replaying %s of %s: %w", ev.Kind, path.Join(r.mounts[ev.Mount], p), err)
	}
	return nil
}

func (r *Replayer) root(i int) (*os.Root, error) {
	if i < 0 || i >= len(r.mounts) {
		return nil, fmt.Errorf("file event: mount %d of %d", i, len(r.mounts))
	}
	if r.roots[i] == nil {
		rt, err := os.OpenRoot(r.mounts[i])
		if err != nil {
			return nil, err
		}
		r.roots[i] = rt
	}
	return r.roots[i], nil
}

// changed fires IN_ATTRIB (and for a file IN_CLOSE_WRITE) on p.
func changed(root *os.Root, p string) error {
	fi, err := root.Lstat(p)
	if err != nil {
		return err
	}
	flags := 0
	switch {
	case fi.IsDir():
		flags = os.O_RDONLY | syscall.O_DIRECTORY
	case fi.Mode().IsRegular():
		flags = os.O_WRONLY
	default:
		return nil // links, devices, FIFOs, sockets
	}
	f, err := root.OpenFile(p, flags|syscall.O_NONBLOCK|syscall.O_NOCTTY|syscall.O_NOFOLLOW, 0)
	if flags == os.O_WRONLY && (errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.ETXTBSY)) {
		f, err = root.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY|syscall.O_NOFOLLOW, 0)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	var st unix.Statx_t
	if err := unix.Statx(int(f.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_STATX_FORCE_SYNC, unix.STATX_MODE|unix.STATX_TYPE, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil
	}
	// Same mode: only the ctime changes. A read-only share or a file
	// of another host user refuses; the open and close still fire.
	if err := unix.Fchmod(int(f.Fd()), uint32(st.Mode)&0o7777); err != nil && !errors.Is(err, syscall.EROFS) && !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.EACCES) {
		return err
	}
	return nil
}

// removedFile fires IN_CREATE and IN_DELETE for the file p, which is gone
// on the host: it creates p and removes it again, unless p exists (the
// host made it again) or is, by the time of the removal, not the file it
// created.
func removedFile(root *os.Root, p string) error {
	f, err := root.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	mine, serr := f.Stat()
	f.Close()
	if serr != nil {
		return serr
	}
	return removeIfMine(root, p, mine)
}

// removedDir fires IN_CREATE and IN_DELETE (IN_ISDIR) for the directory p.
func removedDir(root *os.Root, p string) error {
	if err := root.Mkdir(p, 0); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		return err
	}
	mine, err := root.Lstat(p)
	if err != nil {
		return err
	}
	err = removeIfMine(root, p, mine)
	if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
		// The host put something in it meanwhile: it is the host's
		// directory now, with an ordinary mode.
		return root.Chmod(p, 0o755)
	}
	return err
}

// removeIfMine removes p when it is still mine (same file, mode 0000,
// empty): a host process may have replaced it since.
func removeIfMine(root *os.Root, p string, mine fs.FileInfo) error {
	now, err := root.Lstat(p)
	if err != nil {
		return err
	}
	if !os.SameFile(mine, now) || now.Mode().Perm() != 0 || now.Mode().IsRegular() && now.Size() != 0 {
		return nil
	}
	return root.Remove(p)
}
