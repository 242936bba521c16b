//go:build linux

package agent

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// account is the part of a passwd(5) entry exec needs.
type account struct {
	Name  string
	Home  string
	Shell string
}

// lookupUID finds uid in passwdPath (format: passwd(5), name:pw:uid:gid:
// gecos:home:shell). ok is false when the file or the uid is missing.
func lookupUID(passwdPath string, uid uint32) (a account, ok bool) {
	f, err := os.Open(passwdPath)
	if err != nil {
		return account{}, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	want := strconv.FormatUint(uint64(uid), 10)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 7 || fields[2] != want {
			continue
		}
		return account{Name: fields[0], Home: fields[5], Shell: fields[6]}, true
	}
	return account{}, false
}

// supplementaryGroups returns the gids of the groups in groupPath (format:
// group(5), name:pw:gid:member,member) that list user as a member, plus gid
// itself, as initgroups(3) does.
func supplementaryGroups(groupPath, user string, gid uint32) []uint32 {
	groups := []uint32{gid}
	if user == "" {
		return groups
	}
	f, err := os.Open(groupPath)
	if err != nil {
		return groups
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 4 || !slices.Contains(strings.Split(fields[3], ","), user) {
			continue
		}
		g, err := strconv.ParseUint(fields[2], 10, 32)
		if err != nil || slices.Contains(groups, uint32(g)) {
			continue
		}
		groups = append(groups, uint32(g))
	}
	return groups
}

// resolveUser turns an ExecRequest.User value into a uid and gid: a name
// from passwdPath (its uid and primary gid), "UID" (gid from the passwd
// entry of that uid, else the same number) or "UID:GID". The error says
// the user does not exist in the machine.
func resolveUser(passwdPath, spec string) (uid, gid uint32, err error) {
	name, g, hasGID := strings.Cut(spec, ":")
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		uid, gid = uint32(n), uint32(n)
		if a, ok := lookupField(passwdPath, 2, name); ok {
			gid = a.GID
		}
	} else {
		a, ok := lookupField(passwdPath, 0, name)
		if !ok {
			return 0, 0, fmt.Errorf("no user %q in the machine's /etc/passwd: %w", name, errNotFound)
		}
		uid, gid = a.UID, a.GID
	}
	if hasGID {
		n, err := strconv.ParseUint(g, 10, 32)
		if err != nil {
			return 0, 0, fmt.Errorf("bad group %q in %q: give a numeric gid", g, spec)
		}
		gid = uint32(n)
	}
	return uid, gid, nil
}

type ids struct{ UID, GID uint32 }

// lookupField finds the first passwd(5) line whose field i equals v.
func lookupField(passwdPath string, i int, v string) (ids, bool) {
	f, err := os.Open(passwdPath)
	if err != nil {
		return ids{}, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 7 || fields[i] != v {
			continue
		}
		u, err1 := strconv.ParseUint(fields[2], 10, 32)
		g, err2 := strconv.ParseUint(fields[3], 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		return ids{uint32(u), uint32(g)}, true
	}
	return ids{}, false
}
