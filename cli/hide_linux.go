package cli

import "github.com/machinetop/machinetop/vm/hostns"

// helper runs the hidden helper that args name, if any: `machinetop
// __hide-exec ...` (vm/hostns), which mounts in the namespaces it was
// started in and executes a machine's file server. It is dispatched
// before cobra, which would parse the program's own options.
func helper(args []string) (code int, ok bool) {
	if len(args) > 0 && args[0] == hostns.Command {
		return hostns.Main(args[1:]), true
	}
	return 0, false
}
