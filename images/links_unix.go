//go:build unix

package images

import (
	"os"
	"syscall"
)

// linkCount is fi's hard link count (1 where it cannot be told).
func linkCount(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}
