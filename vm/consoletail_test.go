package vm

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestConsoleTailDropsEscapesAndBlankLines(t *testing.T) {
	p := filepath.Join(t.TempDir(), "console.log")
	log := "\x1b[2J\x1b[01;01HSeaBIOS\r\n" + strings.Repeat("x", 20<<10) + "\nLinux version 6.1\r\n\r\n\x1b[?7lmachinetop-init: unpacking\r\n\n"
	if err := os.WriteFile(p, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, want := consoleTail(p, 2), []string{"Linux version 6.1", "machinetop-init: unpacking"}; !slices.Equal(got, want) {
		t.Errorf("last 2 lines: %q, want %q", got, want)
	}
	// Only the log's end is read: the first line is past the window, and
	// the line the window starts inside is not shown cut.
	if got := consoleTail(p, 10); len(got) != 2 {
		t.Errorf("last 10 lines: %d lines %.60q…", len(got), got)
	}
	if got := consoleTail(filepath.Join(t.TempDir(), "none"), 1); got != nil {
		t.Errorf("no log: %q", got)
	}
}
