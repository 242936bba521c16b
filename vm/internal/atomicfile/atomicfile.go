// Package atomicfile writes state files so that readers and crashes see
// either the old or the new content, never a mix, and reads JSON state
// with errors that name the corrupt file.
package atomicfile

import (
	"encoding/json"
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

// ReadJSON reads the JSON file at path into v. An unreadable file gives
// the os error (fs.ErrNotExist for a missing one); bad JSON gives an error
// saying path is corrupt.
func ReadJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s is corrupt: %w", path, err)
	}
	return nil
}
