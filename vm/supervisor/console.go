package supervisor

import (
	"bytes"
	"io"
	"os"
	"strings"
)

// fatalMarker starts the console line the guest's /init writes before it
// powers the machine off on an error it cannot boot past.
const fatalMarker = initLogPrefix + "FATAL: "

// consoleSize is the console log's size now, where this boot's output
// will start.
func consoleSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// guestFatal returns the message of the last FATAL line /init wrote to
// the console log at path after offset from (the current boot's output),
// or "" when there is none. At most the last 64 KiB are read.
func guestFatal(path string, from int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() <= from {
		return ""
	}
	from = max(from, fi.Size()-64<<10)
	b, err := io.ReadAll(io.NewSectionReader(f, from, fi.Size()-from))
	if err != nil {
		return ""
	}
	i := bytes.LastIndex(b, []byte(fatalMarker))
	if i < 0 {
		return ""
	}
	line, _, _ := strings.Cut(string(b[i+len(fatalMarker):]), "\n")
	return strings.TrimSpace(line)
}
