//go:build linux

// Package unpack extracts an image's flattened root filesystem, a tar
// stream (POSIX ustar with PAX records), onto a directory as root, keeping
// everything a root filesystem needs: owners, modes with setuid, setgid and
// sticky bits, extended attributes (security.capability included), hard
// links, symbolic links, device nodes, FIFOs and modification times.
//
// Every path is resolved inside the target directory, as if it were "/"
// (openat2(2) RESOLVE_IN_ROOT): an absolute symlink or ".." in a link
// target cannot lead outside. Entry names containing ".." are refused.
// Layer whiteouts are not interpreted; the input must be flattened.
package unpack

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// xattrPrefix starts the PAX records that carry extended attributes, as GNU
// tar and Go's archive/tar write them ("SCHILY.xattr.NAME" = raw value).
const xattrPrefix = "SCHILY.xattr."

// Stats counts what Unpack created.
type Stats struct {
	Entries int   // tar entries applied
	Bytes   int64 // regular file content written
}

// Unpack reads the tar stream r and creates its entries under the
// directory root, replacing entries that already exist (an existing
// directory is kept and gets the entry's metadata). It must run as root to
// set owners, device nodes and security.* attributes. warn, which may be
// nil, receives non-fatal problems: extended attributes the filesystem
// does not support. Unpack returns the first other error, naming the entry;
// a name with a ".." component or a hard link whose target has one is such
// an error. After the last entry it flushes the filesystem (syncfs(2)).
func Unpack(r io.Reader, root string, warn func(msg string)) (Stats, error) {
	var st Stats
	if warn == nil {
		warn = func(string) {}
	}
	rootFD, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return st, fmt.Errorf("unpack: opening %s: %w", root, err)
	}
	defer unix.Close(rootFD)
	u := &unpacker{root: root, rootFD: rootFD, warn: warn}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return st, fmt.Errorf("unpack: reading tar: %w", err)
		}
		n, err := u.entry(hdr, tr)
		if err != nil {
			return st, fmt.Errorf("unpack: %s: %w", hdr.Name, err)
		}
		st.Entries++
		st.Bytes += n
	}
	// Directory times last, deepest first, since creating their contents
	// changed them.
	for i := len(u.dirTimes) - 1; i >= 0; i-- {
		d := u.dirTimes[i]
		if err := u.setTimes(d.name, d.ts); err != nil {
			return st, fmt.Errorf("unpack: %s: %w", d.name, err)
		}
	}
	if err := unix.Syncfs(rootFD); err != nil {
		return st, fmt.Errorf("unpack: syncfs: %w", err)
	}
	return st, nil
}

type dirTime struct {
	name string
	ts   []unix.Timespec
}

type unpacker struct {
	root     string
	rootFD   int
	warn     func(string)
	dirTimes []dirTime
}

// cleanName turns a tar name into a path relative to the root; "" is the
// root itself. It refuses ".." components.
func cleanName(name string) (string, error) {
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", errors.New(`refusing a path with ".."`)
		}
	}
	p := path.Clean("/" + name)
	return strings.TrimPrefix(p, "/"), nil
}

func (u *unpacker) entry(hdr *tar.Header, body io.Reader) (int64, error) {
	name, err := cleanName(hdr.Name)
	if err != nil {
		return 0, err
	}
	ts := []unix.Timespec{unix.NsecToTimespec(hdr.ModTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
	if !hdr.AccessTime.IsZero() {
		ts[0] = unix.NsecToTimespec(hdr.AccessTime.UnixNano())
	}
	if name == "" {
		// The root directory itself ("./").
		if hdr.Typeflag != tar.TypeDir {
			return 0, errors.New("the root must be a directory")
		}
		if err := u.meta(u.rootFD, ".", hdr); err != nil {
			return 0, err
		}
		u.dirTimes = append(u.dirTimes, dirTime{"", ts})
		return 0, nil
	}

	dir, base := path.Split(name)
	pfd, err := u.mkdirAll(strings.TrimSuffix(dir, "/"))
	if err != nil {
		return 0, err
	}
	defer unix.Close(pfd)

	if err := replace(pfd, base, hdr.Typeflag == tar.TypeDir); err != nil {
		return 0, err
	}

	var written int64
	mode := uint32(hdr.Mode) & 0o7777
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return 0, err
		}
		if err := u.meta(pfd, base, hdr); err != nil {
			return 0, err
		}
		u.dirTimes = append(u.dirTimes, dirTime{name, ts})
		return 0, nil
	case tar.TypeReg, tar.TypeRegA:
		fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return 0, err
		}
		f := os.NewFile(uintptr(fd), name)
		written, err = io.Copy(f, body)
		if err == nil {
			err = u.meta(fd, "", hdr)
		}
		if err == nil {
			err = unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return written, err
	case tar.TypeSymlink:
		if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
			return 0, err
		}
	case tar.TypeLink:
		target, err := cleanName(hdr.Linkname)
		if err != nil || target == "" {
			return 0, fmt.Errorf("hard link to %q: bad target", hdr.Linkname)
		}
		tdir, tbase := path.Split(target)
		tfd, err := u.openDir(strings.TrimSuffix(tdir, "/"))
		if err != nil {
			return 0, fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
		}
		err = unix.Linkat(tfd, tbase, pfd, base, 0)
		unix.Close(tfd)
		if err != nil {
			return 0, fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
		}
		// A hard link shares the target's inode and metadata.
		return 0, nil
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		kind := uint32(unix.S_IFIFO)
		switch hdr.Typeflag {
		case tar.TypeChar:
			kind = unix.S_IFCHR
		case tar.TypeBlock:
			kind = unix.S_IFBLK
		}
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknodat(pfd, base, kind|0o600, int(dev)); err != nil {
			return 0, err
		}
	default:
		u.warn(fmt.Sprintf("%s: skipping tar entry type %q", name, hdr.Typeflag))
		return 0, nil
	}
	// Symlinks and special files: metadata by name, not followed.
	if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return 0, fmt.Errorf("chown: %w", err)
	}
	if hdr.Typeflag != tar.TypeSymlink {
		if err := unix.Fchmodat(pfd, base, mode, 0); err != nil {
			return 0, fmt.Errorf("chmod: %w", err)
		}
	}
	if err := u.xattrs(hdr, func(k string, v []byte) error {
		return unix.Lsetxattr(procPath(pfd, base), k, v, 0)
	}); err != nil {
		return 0, err
	}
	return 0, unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// meta sets owner, then mode (chown(2) clears setuid/setgid), then
// extended attributes (chown clears security.capability) on an open file
// (name "") or a directory name under dirfd.
func (u *unpacker) meta(dirfd int, name string, hdr *tar.Header) error {
	fd := dirfd
	if name != "" {
		var err error
		fd, err = unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
	}
	if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if err := unix.Fchmod(fd, uint32(hdr.Mode)&0o7777); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	return u.xattrs(hdr, func(k string, v []byte) error {
		return unix.Fsetxattr(fd, k, v, 0)
	})
}

// xattrs applies the SCHILY.xattr.* records of hdr with set. Attributes
// the filesystem does not support are reported to warn.
func (u *unpacker) xattrs(hdr *tar.Header, set func(name string, value []byte) error) error {
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, xattrPrefix)
		if !ok {
			continue
		}
		if err := set(name, []byte(v)); err != nil {
			if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
				u.warn(fmt.Sprintf("%s: xattr %s not supported", hdr.Name, name))
				continue
			}
			return fmt.Errorf("xattr %s: %w", name, err)
		}
	}
	return nil
}

// setTimes sets the times of name (relative to the root), not following a
// final symlink.
func (u *unpacker) setTimes(name string, ts []unix.Timespec) error {
	if name == "" {
		return unix.UtimesNanoAt(u.rootFD, ".", ts, 0)
	}
	dir, base := path.Split(name)
	pfd, err := u.openDir(strings.TrimSuffix(dir, "/"))
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	return unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// replace removes base from dirfd unless it does not exist or both it and
// the new entry are directories.
func replace(dirfd int, base string, newIsDir bool) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if isDir && newIsDir {
		return nil
	}
	if !isDir {
		return unix.Unlinkat(dirfd, base, 0)
	}
	return removeAll(dirfd, base)
}

// removeAll removes the directory base under dirfd and its contents
// without following symlinks.
func removeAll(dirfd int, base string) error {
	fd, err := unix.Openat(dirfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(fd), base)
	names, err := d.Readdirnames(-1)
	if err != nil {
		d.Close()
		return err
	}
	for _, n := range names {
		if err := unix.Unlinkat(fd, n, 0); err == nil {
			continue
		} else if !errors.Is(err, unix.EISDIR) {
			d.Close()
			return err
		}
		if err := removeAll(fd, n); err != nil {
			d.Close()
			return err
		}
	}
	d.Close()
	return unix.Unlinkat(dirfd, base, unix.AT_REMOVEDIR)
}

// mkdirAll opens directory dir (relative to the root, "" is the root),
// creating missing components with mode 0755 owned by root, as tar does
// for entries whose parents are not in the archive.
func (u *unpacker) mkdirAll(dir string) (int, error) {
	fd, err := u.openDir(dir)
	if err == nil || !errors.Is(err, unix.ENOENT) || dir == "" {
		return fd, err
	}
	parent, base := path.Split(dir)
	pfd, err := u.mkdirAll(strings.TrimSuffix(parent, "/"))
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	if err := unix.Mkdirat(pfd, base, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, err
	}
	return u.openDir(dir)
}

// openDir opens directory dir with every component resolved inside the
// root. It uses openat2(2) with RESOLVE_IN_ROOT and falls back to
// resolveInRoot on kernels without openat2 (before 5.6).
func (u *unpacker) openDir(dir string) (int, error) {
	if dir == "" {
		dir = "."
	}
	how := &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(u.rootFD, dir, how)
	if !errors.Is(err, unix.ENOSYS) {
		return fd, err
	}
	p, err := resolveInRoot(u.root, dir)
	if err != nil {
		return -1, err
	}
	return unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
}

// resolveInRoot resolves p (relative to root) component by component,
// following symlinks as if root were "/" (absolute targets start again at
// root, ".." stops at root), and returns the host path it names. It gives
// up after 40 symlinks with ELOOP, as path_resolution(7) does.
func resolveInRoot(root, p string) (string, error) {
	var done []string
	todo := strings.Split(p, "/")
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		cur := root + "/" + path.Join(append(done, c)...)
		fi, err := os.Lstat(cur)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			// Missing components are left for the caller's open to
			// report.
			done = append(done, c)
			continue
		}
		if links++; links > 40 {
			return "", unix.ELOOP
		}
		target, err := os.Readlink(cur)
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(target, "/") {
			done = nil
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return root + "/" + path.Join(done...), nil
}

// procPath names base under the open directory dirfd through /proc, for
// calls that have no *at form (lsetxattr(2)); the directory was already
// resolved safely and the last component is not followed.
func procPath(dirfd int, base string) string {
	return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + base
}
