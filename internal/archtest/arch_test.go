package archtest

import (
	"bufio"
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/mqtt-authproxy/mqtt-authproxy"

// allowed is README's layout table: which of the module's packages each
// package may import (in non-test files). A package not listed may import
// nothing of ours; a new package must be added here, and to README.
var allowed = map[string][]string{
	"packets":             {},
	"policy":              {"packets", "internal/logsafe"},
	"internal/logsafe":    {},
	"internal/pki":        {},
	"internal/relay":      {"packets"},
	"internal/transport":  {"internal/relay"},
	"authstore":           {"policy", "packets", "internal/logsafe"},
	"proxy":               {"policy", "packets", "internal/relay", "internal/transport", "internal/logsafe"},
	"internal/admin":      {},
	"internal/app":        {"proxy", "authstore", "policy", "packets", "internal/transport", "internal/relay", "internal/admin", "internal/logsafe"},
	"internal/mqtttest":   {"packets"},
	"internal/testenv":    {"packets", "internal/mqtttest", "internal/pki"},
	"internal/archtest":   {},
	"cmd/mqtt-authproxy":  {"internal/app", "internal/admin", "authstore", "policy", "proxy", "packets", "internal/pki", "internal/logsafe", "internal/transport"},
	"cmd/authproxy-bench": {"packets", "internal/mqtttest"},
}

// TestImportsFollowTheLayout fails on an import against the direction of
// README's layout table.
func TestImportsFollowTheLayout(t *testing.T) {
	out := goList(t, "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"/...")
	sc := bufio.NewScanner(bytes.NewReader(out))
	seen := 0
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		pkg := strings.TrimPrefix(strings.TrimPrefix(fields[0], module), "/")
		may, known := allowed[pkg]
		if !known {
			t.Errorf("package %s is not in the layout table (internal/archtest and README)", pkg)
			continue
		}
		seen++
		for _, imp := range fields[1:] {
			ours, ok := strings.CutPrefix(imp, module+"/")
			if !ok {
				continue
			}
			if !slices.Contains(may, ours) {
				t.Errorf("%s imports %s, against the layout (it may import %v)", pkg, ours, may)
			}
		}
	}
	if seen < 8 {
		t.Fatalf("only %d packages listed", seen)
	}
}

// TestProxyFunctionsAreShort: no function in proxy/ (tests aside) is
// longer than maxLines; a connection's life reads as steps.
func TestProxyFunctionsAreShort(t *testing.T) {
	const maxLines = 60
	root := repoRoot(t)
	files, _ := filepath.Glob(filepath.Join(root, "proxy", "*.go"))
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range af.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			lines := fset.Position(fd.End()).Line - fset.Position(fd.Pos()).Line + 1
			if lines > maxLines {
				t.Errorf("%s: %s is %d lines (at most %d)", filepath.Base(f), fd.Name.Name, lines, maxLines)
			}
		}
	}
}

// TestCrossBuild: the module builds for every platform README names; the
// relay's fast path is built only where it is tested (linux amd64 and
// arm64), a portable one elsewhere.
func TestCrossBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	for _, target := range []string{"linux/amd64", "linux/arm64", "linux/386", "darwin/arm64"} {
		goos, goarch, _ := strings.Cut(target, "/")
		cmd := exec.Command(goTool(), "build", "-o", os.DevNull, "./...")
		cmd.Dir = repoRoot(t)
		cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("go build for %s: %v\n%s", target, err, out)
		}
	}
}

// goTool is the go command running the tests: go test puts its GOROOT/bin
// first in PATH.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}

func goList(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(goTool(), append([]string{"list"}, args...)...)
	cmd.Dir = repoRoot(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	return out
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
