package cli_test

import "testing"

// Bad operands fail with 125 before any machine is needed.
func TestCopyAndStatsBadInput(t *testing.T) {
	e := newEnv(t)
	e.withMachines("dev")
	e.fails([]string{"machine", "cp", "a", "b"}, "neither a nor b is in a machine", "NAME:PATH")
	e.fails([]string{"machine", "cp", "dev:/a", "dev:/b"}, "both dev:/a and dev:/b are in a machine")
	e.fails([]string{"machine", "cp", "a", "dev:rel"}, "dev:rel: give an absolute path")
	e.fails([]string{"machine", "cp", "a"}, "missing DST")
	e.fails([]string{"machine", "cp", "a", "dev:/x"}, "machine dev is stopped", "machine start dev")
	e.fails([]string{"machine", "cp", "a", "nosuch:/x"}, "nosuch")
	e.fails([]string{"machine", "stats", "--no-stream", "dev"}, "machine dev is stopped")
	e.fails([]string{"machine", "stats", "--format", "{{.Nope}}"}, "Nope")
	if out := e.must("machine", "stats", "--no-stream", "--format", "{{.Name}}"); out != "" {
		t.Errorf("stats with no running machine printed %q", out)
	}
}
