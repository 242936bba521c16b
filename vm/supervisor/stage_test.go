package supervisor

import (
	"fmt"
	"strings"
	"testing"
)

// TestStageWriterMakesLinesTheStage feeds the kit's log lines through
// stageWriter: each complete line, without "kit: ", becomes the stage,
// and everything reaches the log.
func TestStageWriterMakesLinesTheStage(t *testing.T) {
	s := &supervisor{changed: make(chan struct{})}
	var log strings.Builder
	w := &stageWriter{s: s, w: &log}
	fmt.Fprint(w, "kit: fetching the ker")
	if st, _ := s.status(); st.Stage != "" {
		t.Fatalf("a partial line became the stage: %q", st.Stage)
	}
	fmt.Fprint(w, "nel\nkit: linux.deb: 1.0 of 2.0 MB\n")
	if st, _ := s.status(); st.Stage != "linux.deb: 1.0 of 2.0 MB" {
		t.Fatalf("stage %q", st.Stage)
	}
	if log.String() != "kit: fetching the kernel\nkit: linux.deb: 1.0 of 2.0 MB\n" {
		t.Fatalf("log %q", log.String())
	}
}
