// Command crossbuild is the cross-platform step of the test command: it
// type-checks the module for every supported platform the way the compiler
// sees it there (the files the build constraints select, the platform's
// sizes, CGO_ENABLED=0), without compiling. A file missing for one
// platform (the relay's portable path), or a constant that overflows a
// 32-bit int, fails here in seconds, where `GOOS=... go build ./...` first
// compiles the standard library for the platform (about a minute each with
// a cold build cache on a 2-core machine). Packages outside the module are
// checked without their function bodies: only what the module's code sees
// of them.
//
//	go run ./.ci/crossbuild                # every supported platform
//	go run ./.ci/crossbuild darwin/arm64   # one
//
// It lives in a folder the go command's ./... skips: it is a tool of the
// repository, not a package of the module.
package main

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
	"strings"
	"time"
)

// platforms are the supported platforms (docs/architecture.md). The
// relay's fast path is built for linux amd64 and arm64, a portable one
// elsewhere.
var platforms = []string{"linux/amd64", "linux/arm64", "linux/386", "darwin/arm64"}

// pkg is what go list says of one package.
type pkg struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	ImportMap  map[string]string
	Module     *struct{ Main bool }
	Error      *struct{ Err string }
}

func main() {
	targets := os.Args[1:]
	if len(targets) == 0 {
		targets = platforms
	}
	start := time.Now()
	failed := false
	for _, target := range targets {
		if err := check(target); err != nil {
			fmt.Fprintf(os.Stderr, "crossbuild %s: %v\n", target, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
	fmt.Printf("crossbuild: the module type-checks for %s (%v)\n", strings.Join(targets, ", "), time.Since(start).Round(10*time.Millisecond))
}

// check type-checks the module's packages and their dependencies for
// target ("goos/goarch").
func check(target string) error {
	goos, goarch, ok := strings.Cut(target, "/")
	if !ok {
		return errors.New("want goos/goarch")
	}
	pkgs, err := list(goos, goarch)
	if err != nil {
		return err
	}
	sizes := types.SizesFor("gc", goarch)
	if sizes == nil {
		return fmt.Errorf("unknown GOARCH %s", goarch)
	}
	fset := token.NewFileSet()
	checked := map[string]*types.Package{"unsafe": types.Unsafe}
	var errs []error
	for _, p := range pkgs { // dependencies first
		if p.ImportPath == "unsafe" {
			continue
		}
		if p.Error != nil {
			errs = append(errs, fmt.Errorf("%s: %s", p.ImportPath, p.Error.Err))
			continue
		}
		ours := p.Module != nil && p.Module.Main
		tp, err := checkPackage(fset, p, sizes, checked, ours)
		if err != nil {
			errs = append(errs, err)
		}
		checked[p.ImportPath] = tp
	}
	return errors.Join(errs...)
}

// list is `go list -deps` of the module for goos/goarch, dependencies
// before the packages that import them.
func list(goos, goarch string) ([]pkg, error) {
	cmd := exec.Command("go", "list", "-e", "-deps", "-json=ImportPath,Dir,GoFiles,ImportMap,Module,Error", "./...")
	cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			return pkgs, nil
		} else if err != nil {
			return nil, err
		}
		pkgs = append(pkgs, p)
	}
}

// checkPackage parses and type-checks one package; function bodies only
// when it is one of the module's.
func checkPackage(fset *token.FileSet, p pkg, sizes types.Sizes, checked map[string]*types.Package, ours bool) (*types.Package, error) {
	var files []*ast.File
	for _, name := range p.GoFiles {
		f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	var errs []error
	conf := types.Config{
		Importer:         importer{checked, p.ImportMap},
		Sizes:            sizes,
		IgnoreFuncBodies: !ours,
		Error: func(err error) {
			if len(errs) < 10 {
				errs = append(errs, err)
			}
		},
	}
	tp, _ := conf.Check(p.ImportPath, fset, files, nil)
	return tp, errors.Join(errs...)
}

// importer hands out the packages checked so far, by the import paths
// of one package (ImportMap: vendored standard-library paths).
type importer struct {
	checked   map[string]*types.Package
	importMap map[string]string
}

func (im importer) Import(path string) (*types.Package, error) {
	if p, ok := im.importMap[path]; ok {
		path = p
	}
	if tp := im.checked[path]; tp != nil {
		return tp, nil
	}
	return nil, fmt.Errorf("%s not checked", path)
}
