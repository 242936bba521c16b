// Command fsprobe is the second kind of file watcher the end-to-end file
// event test runs in a machine: a recursive watcher built on
// github.com/fsnotify/fsnotify, as Go tools use it. It watches DIR and the
// directories below it (and those created later), prints "READY" once
// the watches are set, then one line per event: the fsnotify operations
// (e.g. CREATE, WRITE, REMOVE, RENAME, CHMOD, joined by "|") and the path
// relative to DIR.
//
// Usage: fsprobe DIR
package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/fsnotify/fsnotify"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: fsprobe DIR")
		os.Exit(2)
	}
	dir := os.Args[1]
	w, err := fsnotify.NewWatcher()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fsprobe:", err)
		os.Exit(1)
	}
	add := func(root string) {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				if err := w.Add(p); err != nil {
					fmt.Fprintln(os.Stderr, "fsprobe:", p, err)
				}
			}
			return nil
		})
	}
	add(dir)
	fmt.Println("READY")
	for {
		select {
		case ev := <-w.Events:
			rel, _ := filepath.Rel(dir, ev.Name)
			fmt.Println(ev.Op.String(), rel)
			if ev.Has(fsnotify.Create) {
				if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
					add(ev.Name)
				}
			}
		case err := <-w.Errors:
			fmt.Fprintln(os.Stderr, "fsprobe:", err)
		}
	}
}
