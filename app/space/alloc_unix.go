//go:build unix

package space

import (
	"os"
	"syscall"
)

// allocated is the space fi's file takes on disk: st_blocks counts
// 512-byte units (stat(2)), so a sparse disk counts only what is written.
func allocated(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int64(st.Blocks) * 512
	}
	return fi.Size()
}
