//go:build !unix

package images

import "os"

// linkCount is fi's hard link count; 1 where it cannot be told.
func linkCount(os.FileInfo) uint64 { return 1 }
