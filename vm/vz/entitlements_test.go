package vz

import (
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// entitlementsFile is the plist the Makefile signs machinetop with on
// macOS, relative to the repository root.
const entitlementsFile = "vm/vz/entitlements.plist"

// TestEntitlements checks that the entitlements plist is a well-formed
// property list granting com.apple.security.virtualization, without
// which the framework refuses to start a VM.
func TestEntitlements(t *testing.T) {
	b, err := os.ReadFile("entitlements.plist")
	if err != nil {
		t.Fatal(err)
	}
	var plist struct {
		XMLName xml.Name `xml:"plist"`
		Dict    struct {
			Items []struct {
				XMLName xml.Name
				Text    string `xml:",chardata"`
			} `xml:",any"`
		} `xml:"dict"`
	}
	if err := xml.Unmarshal(b, &plist); err != nil {
		t.Fatalf("entitlements.plist: %v", err)
	}
	items := plist.Dict.Items
	found := false
	for i := 0; i+1 < len(items); i += 2 {
		if items[i].XMLName.Local != "key" {
			t.Fatalf("entitlements.plist: a %s where a key belongs", items[i].XMLName.Local)
		}
		if items[i].Text == "com.apple.security.virtualization" {
			found = items[i+1].XMLName.Local == "true"
		}
	}
	if !found {
		t.Fatalf("entitlements.plist does not set com.apple.security.virtualization to true:\n%s", b)
	}
}

// TestMakefileSignsOnDarwin asks make what `make build` runs on macOS:
// machinetop must be signed ad hoc with the entitlements plist right
// after it is built, and the guest binary built for Linux.
func TestMakefileSignsOnDarwin(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("make", "-s", "-n", "-C", root, "build", "HOSTOS=Darwin").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n build HOSTOS=Darwin: %v\n%s", err, out)
	}
	// A recipe line continued with a backslash is one command.
	lines := strings.Split(strings.TrimSpace(strings.ReplaceAll(string(out), "\\\n", " ")), "\n")
	build, sign := -1, -1
	for i, l := range lines {
		switch {
		case strings.Contains(l, " build ") && strings.Contains(l, "-o ") && strings.HasSuffix(l, "/bin/machinetop ."):
			build = i
		case strings.HasPrefix(l, "codesign "):
			sign = i
			want := "codesign --entitlements " + entitlementsFile + " --force -s - " + filepath.Join(root, "bin", "machinetop")
			if l != want {
				t.Errorf("signing command\n  %s\nwant\n  %s", l, want)
			}
		case strings.Contains(l, "machinetop-guest") && !strings.Contains(l, "GOOS=linux"):
			t.Errorf("the guest binary is not built for Linux: %s", l)
		}
	}
	if build < 0 || sign != build+1 {
		t.Fatalf("make build on macOS must sign machinetop right after building it; it runs:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(root, entitlementsFile)); err != nil {
		t.Fatal(err)
	}
	t.Logf("make build on macOS signs with: %s", lines[sign])
}
