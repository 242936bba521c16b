package vm_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/machinetop/machinetop/vm"
	"github.com/machinetop/machinetop/vm/layout"
)

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"64G", "512M", "1.5T", "0", "-1G", "1e30", "9999999999999999999T", "G", " 4 G", "4GiB", "0x10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := vm.ParseSize(s); err == nil {
			// What parses prints as a size that parses again.
			if m, err := vm.ParseSize(vm.FormatSize(n)); err != nil {
				t.Fatalf("%q = %d, formatted %q parses as %d, %v", s, n, vm.FormatSize(n), m, err)
			}
		}
		vm.ParseMemory(s)
	})
}

func FuzzParseMount(f *testing.F) {
	home := f.TempDir()
	os.Mkdir(filepath.Join(home, "src"), 0o755)
	for _, s := range []string{"~/src", "~/src:/src", "~/src:/src:ro", home + ":/x:rw", "~/src:relative", "~/src:/..", "~/src:/proc", ":", "::ro", "~/src:/a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := vm.ParseMount(s, home)
		if err != nil {
			return
		}
		if !filepath.IsAbs(m.Host) || !filepath.IsAbs(m.Guest) || filepath.Clean(m.Guest) != m.Guest {
			t.Fatalf("%q parsed as host %q guest %q", s, m.Host, m.Guest)
		}
		if err := vm.ValidateGuestPath(m.Guest); err != nil {
			t.Fatalf("%q parsed with guest path %q that fails validation: %v", s, m.Guest, err)
		}
	})
}

// A config.json that is anything at all loads, or fails with an error
// naming the machine; it never panics.
func FuzzLoadConfig(f *testing.F) {
	f.Add([]byte(`{"name":"m1","id":"0123456789abcdef","cpus":1,"memoryBytes":1073741824}`))
	f.Add([]byte(`{"name":"m1"`))
	f.Add([]byte(`{"name":"other","id":"x"}`))
	f.Add([]byte(`null`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		m := &vm.Manager{Data: layout.Data{Root: t.TempDir()}}
		dir := m.Data.Machine("m1").Dir
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "config.json"), in, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := m.Load("m1")
		if err != nil {
			if !strings.Contains(err.Error(), "m1") {
				t.Fatalf("error names no machine: %v", err)
			}
			return
		}
		if c.Name != "m1" || c.ID == "" {
			t.Fatalf("loaded %+v", c)
		}
	})
}

// validName is the rule ValidateName's doc states, written out on its
// own: 1 to MaxNameLen bytes of lowercase letters, digits and hyphens,
// starting and ending with a letter or digit.
func validName(s string) bool {
	if len(s) == 0 || len(s) > vm.MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

// FuzzValidateName fuzzes ValidateName. It asserts that it never panics
// and accepts exactly the names validName (its doc comment's rule) allows,
// and that a refusal comes with a message.
func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"a", "bb", "debian-bookworm", "a1-b2", "0", "a--b", strings.Repeat("a", vm.MaxNameLen),
		"", "Foo", "../x", "-a", "a-", "-", "a_b", "a.b", "a b", "a\n", "é", strings.Repeat("a", vm.MaxNameLen+1)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := vm.ValidateName(s)
		if want := validName(s); (err == nil) != want {
			t.Fatalf("ValidateName(%q) = %v; the rule says valid = %v", s, err, want)
		}
		if err != nil && err.Error() == "" {
			t.Fatalf("ValidateName(%q) failed with an empty message", s)
		}
	})
}
