package cli_test

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/zip"
)

// writeModuleProxy lays out a GOPROXY directory (the module proxy
// protocol's $GOPROXY/<module>/@v/<version>.{info,mod,zip} files, served
// with GOPROXY=file://DIR) holding module mod at version ver, made of the
// files git tracks or would track in the checkout src (committed or not).
func writeModuleProxy(dir, src, mod, ver string) error {
	out, err := exec.Command("git", "-C", src, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		return fmt.Errorf("git ls-files: %w", err)
	}
	var files []zip.File
	for _, p := range strings.Split(string(out), "\x00") {
		abs := filepath.Join(src, p)
		if fi, err := os.Lstat(abs); p == "" || err != nil || !fi.Mode().IsRegular() {
			continue // deleted, or not a file
		}
		files = append(files, srcFile{p, abs})
	}
	esc, err := module.EscapePath(mod)
	if err != nil {
		return err
	}
	v := filepath.Join(dir, filepath.FromSlash(esc), "@v")
	if err := os.MkdirAll(v, 0o755); err != nil {
		return err
	}
	gomod, err := os.ReadFile(filepath.Join(src, "go.mod"))
	if err != nil {
		return err
	}
	info := fmt.Sprintf(`{"Version":%q,"Time":%q}`, ver, time.Now().UTC().Format(time.RFC3339))
	for name, data := range map[string]string{"list": ver + "\n", ver + ".info": info, ver + ".mod": string(gomod)} {
		if err := os.WriteFile(filepath.Join(v, name), []byte(data), 0o644); err != nil {
			return err
		}
	}
	z, err := os.Create(filepath.Join(v, ver+".zip"))
	if err != nil {
		return err
	}
	if err := zip.Create(z, module.Version{Path: mod, Version: ver}, files); err != nil {
		z.Close()
		return err
	}
	return z.Close()
}

// srcFile is a file of the checkout as x/mod/zip wants it.
type srcFile struct{ rel, abs string }

func (f srcFile) Path() string                 { return filepath.ToSlash(f.rel) }
func (f srcFile) Lstat() (fs.FileInfo, error)  { return os.Lstat(f.abs) }
func (f srcFile) Open() (io.ReadCloser, error) { return os.Open(f.abs) }
