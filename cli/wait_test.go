package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestBootWaitPlainShowsStagesAfterASecond checks the non-terminal form:
// nothing for a quick start, then one line per stage change.
func TestBootWaitPlainShowsStagesAfterASecond(t *testing.T) {
	var quick bytes.Buffer
	b := newBootWait(&quick, "bb")
	b.stage("booting")
	b.done()
	if quick.Len() != 0 {
		t.Fatalf("a start done at once printed %q", quick.String())
	}

	var out bytes.Buffer
	b = newBootWait(&out, "bb")
	b.stage("booting")
	time.Sleep(quietWait + 300*time.Millisecond)
	b.stage("unpacking the image: 50%")
	time.Sleep(300 * time.Millisecond)
	b.stage("unpacking the image: 50%")
	time.Sleep(200 * time.Millisecond)
	b.done()
	want := "starting bb: booting\nstarting bb: unpacking the image: 50%\n"
	if got := out.String(); got != want {
		t.Fatalf("printed %q, want %q", got, want)
	}
	if strings.Contains(out.String(), "\x1b") {
		t.Fatal("escape sequences in plain output")
	}
}
