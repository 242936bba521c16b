//go:build linux

package agent

import (
	"bufio"
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
