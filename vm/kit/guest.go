package kit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// GuestEnv names the environment variable that, when set, gives the path of
// the guest binary to use, overriding the search next to the executable.
const GuestEnv = "MACHINETOP_GUEST"

// GuestBinary returns the path of the static guest binary
// (machinetop-guest) for linux/<arch> (a GOARCH, e.g. "amd64"). It is, in
// this order: the file $MACHINETOP_GUEST names; machinetop-guest-linux-<arch>
// or machinetop-guest next to the running executable; the same names in
// ../lib/machinetop/ relative to the executable's directory (an installed
// layout such as /usr/local/bin + /usr/local/lib/machinetop). A candidate is
// taken only if it is a statically linked ELF executable for arch; the error
// lists what was looked at and why each was passed over.
func GuestBinary(arch string) (string, error) {
	if _, ok := elfMachines[arch]; !ok {
		return "", fmt.Errorf("guest binary: unknown architecture %q", arch)
	}
	if p := os.Getenv(GuestEnv); p != "" {
		if err := checkGuestFile(p, arch); err != nil {
			return "", fmt.Errorf("guest binary from $%s: %w", GuestEnv, err)
		}
		return p, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("guest binary: cannot find the running executable: %w; set $%s", err, GuestEnv)
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	dir := filepath.Dir(exe)
	names := []string{"machinetop-guest-linux-" + arch, "machinetop-guest"}
	var tried []string
	for _, d := range []string{dir, filepath.Join(dir, "..", "lib", "machinetop")} {
		for _, n := range names {
			p := filepath.Clean(filepath.Join(d, n))
			err := checkGuestFile(p, arch)
			if err == nil {
				return p, nil
			}
			if errors.Is(err, fs.ErrNotExist) {
				tried = append(tried, p+" (absent)")
			} else {
				tried = append(tried, fmt.Sprintf("%s (%v)", p, err))
			}
		}
	}
	return "", fmt.Errorf("no guest binary for linux/%s (build it with `make`, or set $%s); looked at: %s",
		arch, GuestEnv, strings.Join(tried, "; "))
}

// checkGuestFile checks that p is a static ELF executable for arch.
func checkGuestFile(p, arch string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", p)
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	// elf.NewFile reads only the headers it needs through ReaderAt, so a
	// lookup does not read the whole binary.
	if err := checkStaticELF(f, arch); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}
