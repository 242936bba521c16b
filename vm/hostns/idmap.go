//go:build linux

package hostns

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
)

// idSpan is how many ids a root-in-namespace process maps (0 … idSpan-1):
// the ids a Linux system hands out to users and groups (65534 is nobody).
const idSpan = 65536

// IDRange is one line of /etc/subuid or /etc/subgid: Count ids from Start,
// which the user may map into user namespaces of their own with
// newuidmap(1) and newgidmap(1) (shadow's subordinate ids).
type IDRange struct {
	Start, Count int
}

// subordinate returns the first range of at least need ids that file
// (subuid(5) format: NAME-or-ID:START:COUNT per line) gives the user with
// the given name or id.
func subordinate(file, name string, id int, need int) (IDRange, error) {
	f, err := os.Open(file)
	if err != nil {
		return IDRange{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(parts) != 3 || (parts[0] != name && parts[0] != strconv.Itoa(id)) {
			continue
		}
		start, err1 := strconv.Atoi(parts[1])
		count, err2 := strconv.Atoi(parts[2])
		if err1 != nil || err2 != nil || count < need {
			continue
		}
		return IDRange{start, count}, nil
	}
	if err := sc.Err(); err != nil {
		return IDRange{}, err
	}
	return IDRange{}, fmt.Errorf("%s gives %s no range of %d ids", file, name, need)
}

// idMap returns newuidmap/newgidmap arguments (triples of inside, outside,
// count) mapping ids 0 … idSpan-1 of the namespace: own to itself, every
// other id to the subordinate range sub, in order.
func idMap(own int, sub IDRange) []string {
	var args []string
	add := func(inside, outside, count int) {
		if count > 0 {
			args = append(args, strconv.Itoa(inside), strconv.Itoa(outside), strconv.Itoa(count))
		}
	}
	if own >= idSpan {
		// The user's own id lies above the span: all of the span is
		// subordinate, and own is mapped on its own.
		add(0, sub.Start, idSpan-1)
		add(own, own, 1)
		return args
	}
	add(0, sub.Start, own)
	add(own, own, 1)
	add(own+1, sub.Start+own, idSpan-1-own)
	return args
}

// idMaps are the uid and gid maps of a root-in-namespace process.
type idMaps struct {
	uid, gid []string
}

// rootMaps returns the maps for the current user, or why they cannot be
// made: newuidmap and newgidmap (shadow's uidmap package) must be
// installed and /etc/subuid and /etc/subgid must give the user a range of
// idSpan-1 ids.
func rootMaps() (idMaps, error) {
	for _, p := range []string{"newuidmap", "newgidmap"} {
		if _, err := exec.LookPath(p); err != nil {
			return idMaps{}, fmt.Errorf("%s not found (install uidmap)", p)
		}
	}
	uid, gid := os.Getuid(), os.Getgid()
	name := strconv.Itoa(uid)
	if u, err := user.LookupId(name); err == nil {
		name = u.Username
	}
	group := strconv.Itoa(gid)
	if g, err := user.LookupGroupId(group); err == nil {
		group = g.Name
	}
	su, err := subordinate("/etc/subuid", name, uid, idSpan-1)
	if err != nil {
		return idMaps{}, err
	}
	// subgid(5) names the user too, though it maps groups.
	sg, err := subordinate("/etc/subgid", name, uid, idSpan-1)
	if err != nil {
		if sg, err = subordinate("/etc/subgid", group, gid, idSpan-1); err != nil {
			return idMaps{}, err
		}
	}
	return idMaps{uid: idMap(uid, su), gid: idMap(gid, sg)}, nil
}

// CanRunAsRoot reports whether Start can run a program with Plan.Root as
// the current user, and if not why: always for root; for an ordinary
// user, when newuidmap/newgidmap and subordinate ids for the user exist.
func CanRunAsRoot() error {
	if os.Geteuid() == 0 {
		return nil
	}
	_, err := rootMaps()
	return err
}

// writeMaps gives process pid (in a new user namespace) the maps m.
func writeMaps(pid int, m idMaps) error {
	for _, c := range []struct {
		prog string
		args []string
	}{{"newuidmap", m.uid}, {"newgidmap", m.gid}} {
		out, err := exec.Command(c.prog, append([]string{strconv.Itoa(pid)}, c.args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %v: %s", c.prog, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}
