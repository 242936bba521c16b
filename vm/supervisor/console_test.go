package supervisor

import (
	"os"
	"path/filepath"
	"testing"
)

func TestGuestFatal(t *testing.T) {
	p := filepath.Join(t.TempDir(), "console.log")
	old := "machinetop-init: FATAL: an earlier boot's failure\n"
	os.WriteFile(p, []byte(old), 0o600)
	from := consoleSize(p)
	if got := guestFatal(p, from); got != "" {
		t.Errorf("nothing logged since the boot began: got %q", got)
	}
	f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("[    1.0] some kernel line\r\nmachinetop-init: FATAL: root disk: first\r\nmachinetop-init: FATAL: root disk: the root disk /dev/vda has errors\r\nreboot: Power down\r\n")
	f.Close()
	if got, want := guestFatal(p, from), "root disk: the root disk /dev/vda has errors"; got != want {
		t.Errorf("guestFatal = %q, want %q", got, want)
	}
	if got := guestFatal(filepath.Join(t.TempDir(), "none"), 0); got != "" {
		t.Errorf("no console log: %q", got)
	}
}
