package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/cobra"
)

// A console log holds the firmware's and the guest's terminal control
// sequences; `machine logs` must print plain lines, ending in a newline.
func TestShowLogPrintsPlainText(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	os.WriteFile(path, []byte("SeaBIOS\r\n\x1bc\x1b[?7l\x1b[2Jhello \x1b[1mworld\x1b[0m\r\nline3\r\nlogin: "), 0o600)
	for _, tc := range []struct {
		n    int
		want string
	}{
		{-1, "SeaBIOS\nhello world\nline3\nlogin: \n"},
		{2, "line3\nlogin: \n"},
	} {
		var out bytes.Buffer
		cmd := &cobra.Command{}
		cmd.SetOut(&out)
		if err := showLog(cmd, path, tc.n, false); err != nil {
			t.Fatal(err)
		}
		if out.String() != tc.want {
			t.Errorf("-n %d: got %q, want %q", tc.n, out.String(), tc.want)
		}
	}
}
