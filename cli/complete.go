package cli

import (
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/machinetop/machinetop/images"
	"github.com/machinetop/machinetop/vm"
	"github.com/machinetop/machinetop/vm/layout"
)

// Shell completion (cobra's `completion` scripts call `machinetop
// __complete …`). The functions here read only the data directory: they
// boot nothing, dial nothing and create nothing, so a TAB stays instant.

// machineNames returns the machines whose names start with prefix,
// described by their image, leaving out the names in exclude.
func machineNames(prefix string, exclude []string) []cobra.Completion {
	data, err := layout.DataDir()
	if err != nil {
		return nil
	}
	m := &vm.Manager{Data: data}
	names, err := m.Names()
	if err != nil {
		return nil
	}
	var out []cobra.Completion
	for _, n := range names {
		if !strings.HasPrefix(n, prefix) || slices.Contains(exclude, n) {
			continue
		}
		desc := ""
		if cfg, err := m.Load(n); err == nil {
			desc = cfg.Image
		}
		out = append(out, cobra.CompletionWithDesc(n, desc))
	}
	return out
}

// imageRefs returns the stored images' NAME:TAG references that start
// with prefix, leaving out those in exclude.
func imageRefs(prefix string, exclude []string) []cobra.Completion {
	data, err := layout.DataDir()
	if err != nil {
		return nil
	}
	root := data.Images()
	if _, err := os.Stat(filepath.Join(root, "index.json")); err != nil {
		return nil // no store yet; Open would create one
	}
	st, err := images.Open(root)
	if err != nil {
		return nil
	}
	ims, err := st.List()
	if err != nil {
		return nil
	}
	var out []cobra.Completion
	for _, im := range ims {
		if r := im.Ref(); strings.HasPrefix(r, prefix) && !slices.Contains(exclude, r) {
			out = append(out, cobra.CompletionWithDesc(r, shortDigest(im)))
		}
	}
	return out
}

// completeMachine completes the one optional NAME of start, stop, logs…
func completeMachine(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return machineNames(toComplete, nil), cobra.ShellCompDirectiveNoFileComp
}

// completeMachines completes the NAME... of rm.
func completeMachines(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return machineNames(toComplete, args), cobra.ShellCompDirectiveNoFileComp
}

// completeMachineFlag completes a -n NAME flag.
func completeMachineFlag(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return machineNames(toComplete, nil), cobra.ShellCompDirectiveNoFileComp
}

// completeImage completes the one IMAGE of create.
func completeImage(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return imageRefs(toComplete, nil), cobra.ShellCompDirectiveNoFileComp
}

// completeImages completes the REF... of image rm.
func completeImages(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return imageRefs(toComplete, args), cobra.ShellCompDirectiveNoFileComp
}

// completeWords completes a flag taking one of a fixed set of values;
// each choice is "value" or "value\tdescription".
func completeWords(choices ...string) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		var out []cobra.Completion
		for _, c := range choices {
			if strings.HasPrefix(c, toComplete) {
				out = append(out, c)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeFormat completes --format (-f for inspect).
func completeFormat(allowTable bool) cobra.CompletionFunc {
	if allowTable {
		return completeWords("table\tcolumns (the default)", "json\ta JSON array", "{{.Name}}\ta Go template, once per item")
	}
	return completeWords("json\tJSON (the default)", "{{.Name}}\ta Go template")
}

// completeNothing is for flags whose value is free text (a name, a
// number, a size): the shell offers no file names.
var completeNothing = cobra.FixedCompletions(nil, cobra.ShellCompDirectiveNoFileComp)

// completeDirs completes directory names.
func completeDirs(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return nil, cobra.ShellCompDirectiveFilterDirs
}

// completeFiles completes file names (the shell's default).
func completeFiles(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return nil, cobra.ShellCompDirectiveDefault
}

// completeProgress completes --progress of pull and build.
var completeProgress = completeWords("auto\ttty on a terminal, else plain", "plain\tone line per event", "tty\tredrawn bars")

// completePlatform completes --platform.
var completePlatform = completeWords("linux/amd64", "linux/arm64", "linux/arm/v7", "linux/riscv64", "linux/ppc64le", "linux/s390x")

// completeArch completes --arch: the guest architectures the QEMU and vz
// backends run.
var completeArch = completeWords("amd64", "arm64")

// completeHomeMount completes --home-mount.
var completeHomeMount = completeWords(vm.HomeMountRW+"\tread-write (the default)", vm.HomeMountRO+"\tread-only", vm.HomeMountNone+"\tnot shared")
