package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/mqtt-authproxy/mqtt-authproxy"

// packageFiles is every package of the module, by its folder in the
// repository ("internal/app"), with its Go files other than tests, whatever
// their build constraints: what one platform or tag leaves out still
// counts. Folders the go command skips (testdata, names starting with "."
// or "_", other modules) are skipped too.
func packageFiles(t *testing.T) map[string][]string {
	t.Helper()
	root := repoRoot(t)
	pkgs := map[string][]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && skipDir(path, d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		if name := d.Name(); strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go") {
			rel, err := filepath.Rel(root, filepath.Dir(path))
			if err != nil {
				return err
			}
			pkg := filepath.ToSlash(rel)
			pkgs[pkg] = append(pkgs[pkg], path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) < 8 {
		t.Fatalf("only %d packages found under %s", len(pkgs), root)
	}
	return pkgs
}

func skipDir(path, name string) bool {
	if name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
		return true
	}
	_, err := os.Stat(filepath.Join(path, "go.mod"))
	return err == nil // another module
}

// parseFile parses one file of the module.
func parseFile(t *testing.T, fset *token.FileSet, path string, mode parser.Mode) *ast.File {
	t.Helper()
	f, err := parser.ParseFile(fset, path, nil, mode|parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s", dir)
	}
	return dir
}
