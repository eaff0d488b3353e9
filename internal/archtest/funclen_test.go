package archtest

import (
	"fmt"
	"go/ast"
	"go/token"
	"maps"
	"path/filepath"
	"slices"
	"testing"
)

// maxLines is the longest a production function may be: a function reads
// as steps, each a call with a name.
const maxLines = 60

// notProduction are the packages the length rule leaves out: the bench and
// the tests' helpers.
var notProduction = []string{
	"cmd/authproxy-bench", "bench/floor",
	"internal/mqtttest", "internal/testenv", "internal/archtest", "authstore/internal/storetest",
}

// longFunctions are the production functions longer than maxLines not yet
// split, each with its length when it was listed, which it may not exceed.
// The list only shrinks: a function split below maxLines (or gone) must
// leave it.
var longFunctions = map[string]int{}

// TestFunctionsAreShort: no production function (tests, the bench and the
// tests' helpers aside) is longer than maxLines, but the ones listed in
// longFunctions, and those no longer than listed.
func TestFunctionsAreShort(t *testing.T) {
	seen := map[string]bool{}
	fset := token.NewFileSet()
	for pkg, files := range packageFiles(t) {
		if slices.Contains(notProduction, pkg) {
			continue
		}
		for _, path := range files {
			for _, d := range parseFile(t, fset, path, 0).Decls {
				fd, ok := d.(*ast.FuncDecl)
				if !ok || fd.Body == nil {
					continue
				}
				name := pkg + "." + funcName(fd)
				lines := fset.Position(fd.End()).Line - fset.Position(fd.Pos()).Line + 1
				seen[name] = seen[name] || lines > maxLines // a name may have one declaration per platform
				switch excepted, listed := longFunctions[name]; {
				case listed && lines > excepted:
					t.Errorf("%s: %s grew to %d lines (listed at %d, at most %d): split it", filepath.Base(path), name, lines, excepted, maxLines)
				case !listed && lines > maxLines:
					t.Errorf("%s: %s is %d lines (at most %d): split it", filepath.Base(path), name, lines, maxLines)
				}
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(longFunctions)) {
		if long, found := seen[name]; !found || !long {
			t.Errorf("%s is listed in longFunctions but is no longer a function over %d lines: remove it from the list", name, maxLines)
		}
	}
}

// funcName is a declaration's name as its package calls it: "Start",
// "(*Store).Authenticate", "Set[T].Add".
func funcName(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return fd.Name.Name
	}
	return recvName(fd.Recv.List[0].Type) + "." + fd.Name.Name
}

func recvName(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.StarExpr:
		return "(*" + recvName(e.X) + ")"
	case *ast.IndexExpr:
		return recvName(e.X) + "[" + recvName(e.Index) + "]"
	case *ast.IndexListExpr:
		return recvName(e.X) + "[...]"
	case *ast.Ident:
		return e.Name
	case *ast.ParenExpr:
		return recvName(e.X)
	}
	return fmt.Sprintf("%T", e)
}
