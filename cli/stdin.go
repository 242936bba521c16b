package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/machinetop/machinetop/vm/layout"
)

// spoolStdin copies the command's stdin into a private file called name in
// a new directory under the data directory's tmp/, for the commands that
// take "-" for a file (`image import -`, `build -f -`). It refuses a
// terminal, which would wait for typed input. cleanup removes the copy.
func spoolStdin(cmd *cobra.Command, what, name string) (path string, cleanup func(), err error) {
	in := cmd.InOrStdin()
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return "", nil, fmt.Errorf("%s reads stdin, which is a terminal: pipe the file in (… < FILE)", what)
	}
	data, err := layout.DataDir()
	if err != nil {
		return "", nil, err
	}
	tmp := data.Tmp()
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp(tmp, "stdin-")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	path = filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err == nil {
		_, err = io.Copy(f, in)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("%s: reading stdin: %w", what, err)
	}
	return path, cleanup, nil
}

// renamedError is an error whose text names a file by another name (the
// spooled copy of stdin as "-"); it still unwraps to the original.
type renamedError struct {
	msg string
	err error
}

func (e *renamedError) Error() string { return e.msg }
func (e *renamedError) Unwrap() error { return e.err }

// renamePath replaces path with name in err's text.
func renamePath(err error, path, name string) error {
	return &renamedError{msg: strings.ReplaceAll(err.Error(), path, name), err: err}
}
