package source

import (
	"os"
	"path/filepath"

	"github.com/machinetop/machinetop/images/progress"
)

// Limits of ReadLogFrom.
const (
	// LogTail is how much of an existing log the first read (off 0)
	// returns: its last LogTail bytes.
	LogTail = 256 << 10
	// LogChunk is the most one read returns.
	LogChunk = 1 << 20
)

// ReadLogFrom reads the log file at path from byte offset off, to follow
// a log that grows (a console log): at most LogChunk bytes, and when off
// is 0 only the last LogTail bytes. A file shorter than off was truncated
// (a new boot) and is read from its start again. next is the offset to
// pass to the next call; it is off when nothing is new.
func ReadLogFrom(path string, off int64) (data []byte, next int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, off, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, off, err
	}
	size := fi.Size()
	if size < off {
		off = 0
	}
	if off == 0 && size > LogTail {
		off = size - LogTail
	}
	if size == off {
		return nil, off, nil
	}
	buf := make([]byte, min(size-off, LogChunk))
	n, err := f.ReadAt(buf, off)
	if n > 0 {
		err = nil // a file that shrank meanwhile: keep what was read
	}
	return buf[:n], off + int64(n), err
}

// ReadJob reads the events of job from byte offset off of its journal in
// dir (progress's JOB.jsonl files): see progress.ReadFrom.
func ReadJob(dir, job string, off int64) ([]progress.Event, int64, error) {
	return progress.ReadFrom(filepath.Join(dir, job+".jsonl"), off)
}
