//go:build linux

package vz

// The vz backend needs cgo and Apple's SDK, so it cannot be built on Linux.
// This test stands in for the build: it type-checks this package and the
// machinetop command for darwin, together with every package they depend
// on (the standard library, github.com/Code-Hex/vz/v3 and its internal
// packages, machinetop's own), from source, with go/types. cgo's `import "C"` is faked
// (types.Config.FakeImportC), so vz's own sources type-check and every call
// this package makes into vz is checked against vz's real declarations. A
// misspelt function, a wrong argument or result type, or a call to an API
// that a different vz version lacks fails the test.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// listedPackage is the part of `go list -json` output the loader needs.
type listedPackage struct {
	ImportPath string
	Dir        string
	Standard   bool
	GoFiles    []string
	CgoFiles   []string
	ImportMap  map[string]string
	Deps       []string
	Module     *struct {
		Path      string
		Version   string
		Main      bool
		GoVersion string
	}
	Error *struct{ Err string }
}

func TestTypeCheckDarwin(t *testing.T) {
	for _, arch := range []string{"arm64", "amd64"} {
		t.Run(arch, func(t *testing.T) {
			start := time.Now()
			self, pkgs, failed := typeCheck(t, "darwin", arch)
			t.Logf("type-checked %d packages for darwin/%s in %v", len(pkgs), arch, time.Since(start).Round(time.Millisecond))
			backend := map[string]bool{self.ImportPath: true}
			for _, d := range self.Deps {
				backend[d] = true
			}
			// Errors in this package and what it imports belong to the
			// backend; errors in the rest of the command (which only
			// the darwin build, absent here, would otherwise find) are
			// reported apart so that a failure names the right owner.
			t.Run("backend", func(t *testing.T) {
				for _, p := range pkgs {
					if msg, ok := failed[p.ImportPath]; ok && backend[p.ImportPath] {
						t.Errorf("%s does not type-check for darwin/%s:%s", p.ImportPath, arch, msg)
					}
				}
			})
			t.Run("command", func(t *testing.T) {
				for _, p := range pkgs {
					if msg, ok := failed[p.ImportPath]; ok && !backend[p.ImportPath] {
						t.Errorf("%s does not type-check for darwin/%s:%s", p.ImportPath, arch, msg)
					}
				}
			})
		})
	}
}

// typeCheck type-checks this package, the machinetop command and their
// dependencies for goos and goarch. It returns this package, every package
// checked (dependencies first) and, by import path, the errors of those
// that do not type-check.
func typeCheck(t *testing.T, goos, goarch string) (self *listedPackage, pkgs []*listedPackage, failed map[string]string) {
	pkgs = goList(t, goos, goarch)
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkgs {
		if p.Dir == wd {
			self = p
		}
	}
	if self == nil {
		t.Fatalf("go list did not return the package in %s", wd)
	}
	if len(self.GoFiles) == 0 {
		t.Fatalf("no Go files in %s for %s/%s", self.ImportPath, goos, goarch)
	}
	var vzSeen bool
	for _, p := range pkgs {
		if p.Error != nil {
			t.Fatalf("go list: %s: %s", p.ImportPath, p.Error.Err)
		}
		if p.ImportPath == "github.com/Code-Hex/vz/v3" {
			vzSeen = true
			if p.Module != nil {
				t.Logf("vz module: %s %s", p.Module.Path, p.Module.Version)
			}
		}
	}
	if !vzSeen {
		t.Fatalf("%s does not import github.com/Code-Hex/vz/v3 for %s/%s", self.ImportPath, goos, goarch)
	}

	fset := token.NewFileSet()
	files := parseAll(t, fset, pkgs)

	failed = map[string]string{}
	sizes := types.SizesFor("gc", goarch)
	done := map[string]*types.Package{"unsafe": types.Unsafe}
	for _, p := range pkgs {
		if p.ImportPath == "unsafe" {
			continue
		}
		var errs []error
		conf := types.Config{
			Importer:    importerFunc(func(path string) (*types.Package, error) { return lookup(done, p, path) }),
			FakeImportC: true,
			Sizes:       sizes,
			Error: func(err error) {
				// With C faked, declarations whose types come from C are
				// invalid, and go/types reports some uses of them (for
				// example converting a *C.char result of another
				// package). Such errors in other modules are artefacts
				// of faking cgo; machinetop does not use cgo, so every
				// error in its own packages counts.
				var te types.Error
				own := p.Module != nil && p.Module.Main
				if !own && errors.As(err, &te) && strings.Contains(te.Msg, "invalid type") {
					return
				}
				errs = append(errs, err)
			},
		}
		if p.Module != nil && p.Module.GoVersion != "" {
			conf.GoVersion = "go" + p.Module.GoVersion
		}
		tp, _ := conf.Check(p.ImportPath, fset, files[p.ImportPath], nil)
		if len(errs) > 0 {
			var b strings.Builder
			for i, err := range errs {
				if i == 20 {
					fmt.Fprintf(&b, "\n\t… and %d more", len(errs)-i)
					break
				}
				fmt.Fprintf(&b, "\n\t%v", err)
			}
			failed[p.ImportPath] = b.String()
		}
		done[p.ImportPath] = tp
	}
	return self, pkgs, failed
}

// goList returns this package, the machinetop command (the module root)
// and their dependencies for goos/goarch with cgo enabled, dependencies
// first. Missing modules are downloaded into the
// module cache by the go command.
func goList(t *testing.T, goos, goarch string) []*listedPackage {
	goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goCmd); err != nil {
		goCmd = "go"
	}
	cmd := exec.Command(goCmd, "list", "-e", "-deps", "-json=ImportPath,Dir,Standard,GoFiles,CgoFiles,ImportMap,Deps,Module,Error", ".", "../..")
	cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list for %s/%s: %v\n%s", goos, goarch, err, stderr.Bytes())
	}
	var pkgs []*listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		p := new(listedPackage)
		if err := dec.Decode(p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatal("go list returned no packages")
	}
	return pkgs
}

// parseAll parses every package's Go and cgo files, in parallel.
func parseAll(t *testing.T, fset *token.FileSet, pkgs []*listedPackage) map[string][]*ast.File {
	type job struct {
		pkg  string
		i    int
		path string
	}
	var jobs []job
	files := map[string][]*ast.File{}
	for _, p := range pkgs {
		names := append(append([]string(nil), p.GoFiles...), p.CgoFiles...)
		files[p.ImportPath] = make([]*ast.File, len(names))
		for i, name := range names {
			jobs = append(jobs, job{p.ImportPath, i, filepath.Join(p.Dir, name)})
		}
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		next = make(chan job)
	)
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				f, err := parser.ParseFile(fset, j.path, nil, parser.SkipObjectResolution)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				files[j.pkg][j.i] = f
				mu.Unlock()
			}
		}()
	}
	for _, j := range jobs {
		next <- j
	}
	close(next)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("parsing: %v", errors.Join(errs...))
	}
	return files
}

type importerFunc func(path string) (*types.Package, error)

func (f importerFunc) Import(path string) (*types.Package, error) { return f(path) }

// lookup resolves an import of path by package p through p's ImportMap
// (vendored standard library packages) among the packages checked so far.
func lookup(done map[string]*types.Package, p *listedPackage, path string) (*types.Package, error) {
	if mapped, ok := p.ImportMap[path]; ok {
		path = mapped
	}
	if tp := done[path]; tp != nil {
		return tp, nil
	}
	return nil, fmt.Errorf("package %s (imported by %s) was not checked before its importer", path, p.ImportPath)
}
