package hostuser

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/machinetop/machinetop/guest/proto"
)

// image makes a small root tree with passwd, group, shadow, skel and,
// when sudo is true, a sudo binary.
func image(t *testing.T, sudo bool) string {
	root := t.TempDir()
	for p, c := range map[string]string{
		"etc/passwd":       "root:x:0:0:root:/root:/bin/bash\n",
		"etc/group":        "root:x:0:\nusers:x:100:\n",
		"etc/shadow":       "root:*:19000:0:99999:7:::\n",
		"etc/skel/.bashrc": "# skel\n",
		"bin/bash":         "#!fake\n",
		"bin/sh":           "#!fake\n",
	} {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(root, p), []byte(c), 0o755)
	}
	if sudo {
		os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755)
		os.WriteFile(filepath.Join(root, "usr/bin/sudo"), []byte("x"), 0o4755)
	}
	return root
}

func read(t *testing.T, root, p string) string {
	b, err := os.ReadFile(filepath.Join(root, p))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCreate(t *testing.T) {
	root := image(t, true)
	u := proto.GuestUser{Name: "first.last", UID: os.Getuid() + 1000, GID: os.Getgid() + 1000, Home: "/home/first.last", Shell: "/usr/bin/zsh"}
	if os.Getuid() != 0 {
		u.UID, u.GID = os.Getuid(), os.Getgid()
	}
	res, err := Create(root, u)
	if err != nil {
		t.Fatal(err)
	}
	if res.Shell != FallbackShell || !res.Sudo {
		t.Fatalf("result %+v: want the fallback shell and sudo", res)
	}
	pw := read(t, root, "etc/passwd")
	want := "first.last:x:" + itoa(u.UID) + ":" + itoa(u.GID) + ":first.last:/home/first.last:/bin/sh\n"
	if !strings.HasSuffix(pw, want) {
		t.Fatalf("passwd:\n%s\nwant it to end with %q", pw, want)
	}
	if !strings.Contains(read(t, root, "etc/shadow"), "first.last:*:") {
		t.Fatal("no locked shadow entry")
	}
	if !strings.Contains(read(t, root, "etc/group"), "first.last:x:"+itoa(u.GID)+":") {
		t.Fatal("no group")
	}
	if read(t, root, "home/first.last/.bashrc") != "# skel\n" {
		t.Fatal("home not seeded from skel")
	}
	sudoers := "etc/sudoers.d/machinetop-first_last"
	if got := read(t, root, sudoers); !strings.Contains(got, "#"+itoa(u.UID)+" ALL=(ALL:ALL) NOPASSWD: ALL") {
		t.Fatalf("sudoers drop-in: %q", got)
	}
	if fi, _ := os.Stat(filepath.Join(root, sudoers)); fi.Mode().Perm() != 0o440 {
		t.Fatalf("sudoers mode %v, want 0440", fi.Mode().Perm())
	}
	// A second run changes nothing.
	if _, err := Create(root, u); err != nil {
		t.Fatal(err)
	}
	if got := read(t, root, "etc/passwd"); got != pw {
		t.Fatalf("second Create changed passwd:\n%s", got)
	}
}

func TestCreateNoSudoKeepsShell(t *testing.T) {
	root := image(t, false)
	u := proto.GuestUser{Name: "al", UID: os.Getuid(), GID: 100, Home: "/home/al", Shell: "/bin/bash"}
	res, err := Create(root, u)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sudo || res.Shell != "/bin/bash" {
		t.Fatalf("result %+v", res)
	}
	if strings.Contains(read(t, root, "etc/group"), "al:") {
		t.Fatal("a group was added although gid 100 exists")
	}
	if _, err := os.Stat(filepath.Join(root, "etc/sudoers.d")); err == nil {
		t.Fatal("sudoers.d made in an image without sudo")
	}
}

func TestSudoersFile(t *testing.T) {
	for in, want := range map[string]string{"a.b": "machinetop-a_b", "x~": "machinetop-x", "plain": "machinetop-plain"} {
		if got := SudoersFile(in); got != want || strings.Contains(got, ".") {
			t.Errorf("SudoersFile(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAuthorizeKeys(t *testing.T) {
	root := image(t, false)
	os.MkdirAll(filepath.Join(root, "etc/ssh/sshd_config.d"), 0o755)
	if err := AuthorizeKeys(root, "al", []string{"ssh-ed25519 AAAA test"}); err != nil {
		t.Fatal(err)
	}
	if got := read(t, root, proto.AuthorizedKeysDir+"/al"); got != "ssh-ed25519 AAAA test\n" {
		t.Fatalf("keys: %q", got)
	}
	if got := read(t, root, proto.SSHDConfig); !strings.Contains(got, "AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys2 "+proto.AuthorizedKeysDir+"/%u") {
		t.Fatalf("sshd drop-in: %q", got)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
