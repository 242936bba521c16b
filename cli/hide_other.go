//go:build !linux

package cli

// helper reports that no hidden helper runs on this system (vm/hostns is
// Linux-only).
func helper(args []string) (code int, ok bool) { return 0, false }
