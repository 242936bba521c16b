//go:build !unix

package space

import "os"

// allocated is fi's size where the allocation cannot be told.
func allocated(fi os.FileInfo) int64 { return fi.Size() }
