// Package atomicfile writes state files so that readers and crashes see
// either the old or the new content, never a mix, and reads JSON state
// with errors that name the corrupt file.
package atomicfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/google/renameio/v2"
)

// WriteFile writes data to path through a temporary file in the same
// directory, fsynced and renamed over path.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return renameio.WriteFile(path, data, perm)
}

// WriteJSON writes v as indented JSON to path (mode 0600) atomically.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return WriteFile(path, append(b, '\n'), 0o600)
}

// ErrCorrupt is wrapped by ReadJSON's error for a file that is not valid
// JSON of the expected shape.
var ErrCorrupt = errors.New("corrupt")

// ReadJSON reads the JSON file at path into v. An unreadable file gives
// the os error (fs.ErrNotExist for a missing one); bad JSON gives an error
// wrapping ErrCorrupt that names path.
func ReadJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s is %w: %v", path, ErrCorrupt, err)
	}
	return nil
}
