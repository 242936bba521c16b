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
