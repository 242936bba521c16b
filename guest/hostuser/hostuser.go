// Package hostuser creates the host user's account inside a machine's root
// filesystem: the passwd(5), group(5) and shadow(5) entries, a home
// directory seeded from /etc/skel, and a sudoers(5) drop-in for
// passwordless sudo. It also authorizes SSH keys for an account. Every
// function works on a root directory given by the caller ("/" in the guest,
// a scratch tree in tests) and leaves files it does not need to change
// alone.
package hostuser

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/machinetop/machinetop/guest/proto"
)

// FallbackShell is the login shell used when the image lacks the host
// user's shell.
const FallbackShell = "/bin/sh"

// Result says what Create did.
type Result struct {
	// Shell is the login shell given to the user.
	Shell string
	// Sudo is true when a sudoers drop-in was written; false when the
	// image has no sudo.
	Sudo bool
	// Problems are non-fatal findings for the user (for example, the
	// host's uid already belongs to another account in the image).
	Problems []string
}

// Create adds u to the image at root unless an account of that name
// exists: a group named u.Name with u.GID unless some group has that gid,
// a passwd line with a locked password ("*" in shadow(5) when
// etc/shadow exists, else in passwd), the home directory u.Home copied from
// etc/skel and owned by the user (kept as is when it exists), and, when
// the image has sudo, SudoersFile(u.Name) granting NOPASSWD: ALL. It
// returns an error naming the file it could not update.
func Create(root string, u proto.GuestUser) (Result, error) {
	var res Result
	if u.Name == "" || strings.ContainsAny(u.Name, ":\n/") {
		return res, fmt.Errorf("invalid user name %q", u.Name)
	}
	res.Shell = Shell(root, u.Shell)
	passwd := filepath.Join(root, "etc/passwd")
	users, err := readColonFile(passwd)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return res, err
	}
	exists := false
	for _, f := range users {
		if f[0] == u.Name {
			exists = true
		} else if len(f) > 2 && f[2] == strconv.Itoa(u.UID) {
			res.Problems = append(res.Problems, fmt.Sprintf("uid %d already belongs to %q in the image; files and processes of uid %d show that name", u.UID, f[0], u.UID))
		}
	}
	if !exists {
		groups, err := readColonFile(filepath.Join(root, "etc/group"))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return res, err
		}
		gidTaken, nameTaken := false, false
		for _, f := range groups {
			if len(f) > 2 && f[2] == strconv.Itoa(u.GID) {
				gidTaken = true
			}
			if f[0] == u.Name {
				nameTaken = true
			}
		}
		if !gidTaken && !nameTaken {
			if err := appendLine(filepath.Join(root, "etc/group"), fmt.Sprintf("%s:x:%d:", u.Name, u.GID), 0o644); err != nil {
				return res, err
			}
		}
		pw := "*"
		shadow := filepath.Join(root, "etc/shadow")
		if _, err := os.Stat(shadow); err == nil {
			pw = "x"
			if err := appendLine(shadow, u.Name+":*:19000:0:99999:7:::", 0o640); err != nil {
				return res, err
			}
		}
		line := fmt.Sprintf("%s:%s:%d:%d:%s:%s:%s", u.Name, pw, u.UID, u.GID, u.Name, u.Home, res.Shell)
		if err := appendLine(passwd, line, 0o644); err != nil {
			return res, err
		}
	}
	if u.Home != "" {
		home := filepath.Join(root, u.Home)
		if _, err := os.Lstat(home); errors.Is(err, fs.ErrNotExist) {
			if err := makeHome(root, home, u.UID, u.GID); err != nil {
				return res, fmt.Errorf("home directory %s: %w", u.Home, err)
			}
		}
	}
	sudo, err := GrantSudo(root, u.Name, u.UID)
	if err != nil {
		return res, err
	}
	res.Sudo = sudo
	return res, nil
}

// GrantSudo writes etc/sudoers.d/SudoersFile(name) under root, mode 0440,
// letting uid run any command as anyone without a password (sudoers(5)),
// unless the image has no sudo (it returns false) or the file exists.
func GrantSudo(root, name string, uid int) (bool, error) {
	if !HasSudo(root) {
		return false, nil
	}
	dir := filepath.Join(root, "etc/sudoers.d")
	p := filepath.Join(dir, SudoersFile(name))
	if _, err := os.Lstat(p); err == nil {
		return true, nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return false, err
	}
	// "#uid" is the sudoers(5) form that needs no quoting of the name.
	body := fmt.Sprintf("# Written by machinetop: %s may run anything as anyone without a password.\n#%d ALL=(ALL:ALL) NOPASSWD: ALL\n", name, uid)
	if err := writeFile(p, []byte(body), 0o440); err != nil {
		return false, err
	}
	return true, nil
}

// SudoersFile returns the name of the drop-in under /etc/sudoers.d for
// user: "machinetop-" and the name with every '.' turned into '_' and a
// trailing '~' dropped, because sudo skips files whose names contain '.'
// or end in '~' (sudoers(5), "Including other files from within sudoers").
func SudoersFile(user string) string {
	return "machinetop-" + strings.TrimRight(strings.ReplaceAll(user, ".", "_"), "~")
}

// HasSudo reports whether the image at root has a sudo binary.
func HasSudo(root string) bool {
	for _, p := range []string{"usr/bin/sudo", "bin/sudo", "usr/local/bin/sudo"} {
		if fi, err := os.Stat(filepath.Join(root, p)); err == nil && fi.Mode().IsRegular() {
			return true
		}
	}
	return false
}

// Shell returns shell when it is an absolute path to an executable in the
// image at root (symlinks followed inside root), else FallbackShell.
func Shell(root, shell string) string {
	if shell == "" || !filepath.IsAbs(shell) {
		return FallbackShell
	}
	p, err := resolveIn(root, shell)
	if err != nil {
		return FallbackShell
	}
	fi, err := os.Stat(p)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return FallbackShell
	}
	return shell
}

// resolveIn follows symlinks of path as if root were "/" (up to 40 links,
// as path_resolution(7)).
func resolveIn(root, path string) (string, error) {
	cur := "/"
	rest := strings.Split(strings.Trim(filepath.Clean(path), "/"), "/")
	for n := 0; len(rest) > 0; {
		c := rest[0]
		rest = rest[1:]
		next := filepath.Join(cur, c)
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if n++; n > 40 {
			return "", errors.New("too many symbolic links")
		}
		t, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(t) {
			t = filepath.Join(cur, t)
		}
		rest = append(strings.Split(strings.Trim(filepath.Clean(t), "/"), "/"), rest...)
		cur = "/"
	}
	return filepath.Join(root, cur), nil
}

// AuthorizeKeys writes keys (authorized_keys lines, sshd(8)) to
// root/proto.AuthorizedKeysDir/<user>, mode 0644, owned by root, and, when
// the image has an etc/ssh/sshd_config.d directory, the drop-in
// proto.SSHDConfig that makes sshd read that file besides the user's own
// ~/.ssh/authorized_keys. Empty keys removes the user's file.
func AuthorizeKeys(root, user string, keys []string) error {
	if user == "" || strings.ContainsAny(user, "/\n") {
		return fmt.Errorf("invalid user name %q", user)
	}
	dir := filepath.Join(root, proto.AuthorizedKeysDir)
	p := filepath.Join(dir, user)
	if len(keys) == 0 {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := writeFile(p, []byte(strings.Join(keys, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	if fi, err := os.Stat(filepath.Join(root, filepath.Dir(proto.SSHDConfig))); err == nil && fi.IsDir() {
		conf := "# Written by machinetop at every boot: keys that `machinetop machine ssh-config` uses.\n" +
			"AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys2 " + proto.AuthorizedKeysDir + "/%u\n"
		return writeFile(filepath.Join(root, proto.SSHDConfig), []byte(conf), 0o644)
	}
	return nil
}

// makeHome creates home (mode 0750) with a copy of root/etc/skel, all
// owned by uid:gid.
func makeHome(root, home string, uid, gid int) error {
	if err := os.MkdirAll(filepath.Dir(home), 0o755); err != nil {
		return err
	}
	tmp := home + ".machinetop-new"
	os.RemoveAll(tmp)
	if err := os.Mkdir(tmp, 0o750); err != nil {
		return err
	}
	skel := filepath.Join(root, "etc/skel")
	err := filepath.WalkDir(skel, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == skel && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipDir
			}
			return err
		}
		rel, _ := filepath.Rel(skel, p)
		if rel == "." {
			return nil
		}
		dst := filepath.Join(tmp, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			err = os.Mkdir(dst, fi.Mode().Perm())
		case fi.Mode()&fs.ModeSymlink != 0:
			var t string
			if t, err = os.Readlink(p); err == nil {
				err = os.Symlink(t, dst)
			}
		case fi.Mode().IsRegular():
			err = copyFile(p, dst, fi.Mode().Perm())
		default:
			return nil
		}
		if err != nil {
			return err
		}
		return os.Lchown(dst, uid, gid)
	})
	if err == nil {
		err = os.Lchown(tmp, uid, gid)
	}
	if err == nil {
		err = os.Chmod(tmp, 0o750)
	}
	if err == nil {
		err = os.Rename(tmp, home)
	}
	if err != nil {
		os.RemoveAll(tmp)
	}
	return err
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// readColonFile reads a colon-separated database (passwd(5), group(5)),
// skipping blank lines and comments.
func readColonFile(p string) ([][]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		t := sc.Text()
		if strings.TrimSpace(t) == "" || strings.HasPrefix(t, "#") {
			continue
		}
		out = append(out, strings.Split(t, ":"))
	}
	return out, sc.Err()
}

// appendLine rewrites p with line added at the end (creating p with mode
// when missing), through a temporary file and a rename so that a crash
// leaves the old or the new file, never half of one. The file keeps its
// mode and owner.
func appendLine(p, line string, mode fs.FileMode) error {
	old, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if len(old) > 0 && old[len(old)-1] != '\n' {
		old = append(old, '\n')
	}
	uid, gid := -1, -1
	if fi, err := os.Stat(p); err == nil {
		mode = fi.Mode().Perm()
		if st, ok := statOwner(fi); ok {
			uid, gid = st[0], st[1]
		}
	}
	if err := writeFile(p, append(old, line+"\n"...), mode); err != nil {
		return err
	}
	if uid >= 0 {
		os.Chown(p, uid, gid)
	}
	return nil
}

// writeFile replaces p atomically with data and mode.
func writeFile(p string, data []byte, mode fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp := p + ".machinetop-tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", p, err)
	}
	return nil
}
