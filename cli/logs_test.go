package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

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
		if err := showLog(cmd, path, tc.n, false, nil); err != nil {
			t.Fatal(err)
		}
		if out.String() != tc.want {
			t.Errorf("-n %d: got %q, want %q", tc.n, out.String(), tc.want)
		}
	}
}

// TestFollowEndsWhenTheMachineStops follows a log that grows while the
// machine runs: -f prints the new lines and returns once it has stopped.
func TestFollowEndsWhenTheMachineStops(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	os.WriteFile(path, []byte("one\n"), 0o600)
	var stopped atomic.Bool
	var out bytes.Buffer
	cmd := &cobra.Command{}
	cmd.SetOut(&out)
	cmd.SetContext(context.Background())
	done := make(chan error, 1)
	go func() { done <- showLog(cmd, path, -1, true, func() bool { return !stopped.Load() }) }()
	time.Sleep(300 * time.Millisecond)
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("two\nthree")
	f.Close()
	stopped.Store(true)
	select {
	case err := <-done:
		if err != nil || out.String() != "one\ntwo\nthree\n" {
			t.Fatalf("logs -f printed %q, %v", out.String(), err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("logs -f did not end after the machine stopped")
	}
}
