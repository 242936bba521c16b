//go:build !unix

package fswatch

import "io/fs"

// inode returns 0: the platform gives no inode number.
func inode(fs.FileInfo) uint64 { return 0 }
