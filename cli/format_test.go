package cli

import (
	"reflect"
	"slices"
	"testing"

	"github.com/machinetop/machinetop/vm"
)

// The fields a --format error lists are the ones a template reaches: a
// promoted field shadowed by an outer one of the same name (Machine's
// FileEvents over Config's) is listed once.
func TestFieldNamesListEachReachableFieldOnce(t *testing.T) {
	names := fieldNames(reflect.TypeOf(&vm.Machine{}))
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			t.Errorf("%s listed twice in %v", n, names)
		}
		seen[n] = true
	}
	for _, want := range []string{"Name", "CPUs", "State", "FileEvents", "Ports"} {
		if !slices.Contains(names, want) {
			t.Errorf("%s missing from %v", want, names)
		}
	}
}

// `run dev ls` and `run dev --root -- ls` ran "dev" in the default
// machine; the hint says how to write what was meant.
func TestNameHint(t *testing.T) {
	for _, c := range []struct {
		rest []string
		want string
	}{
		{[]string{"ls", "-la"}, "put -- after its name: machinetop machine run dev -- ls -la"},
		{[]string{"--root", "--", "sh", "-c", "id"}, "give run's flags before its name and -- after it: machinetop machine run --root dev -- sh -c id"},
		{[]string{"-w", "/tmp", "-e", "A=1", "ls"}, "give run's flags before its name and -- after it: machinetop machine run -w /tmp -e A=1 dev -- ls"},
		{[]string{"-it", "sh"}, "give run's flags before its name and -- after it: machinetop machine run -it dev -- sh"},
	} {
		if got := nameHint(newRunCmd().Flags(), "dev", c.rest); got != c.want {
			t.Errorf("nameHint(dev, %q) = %q, want %q", c.rest, got, c.want)
		}
	}
}
