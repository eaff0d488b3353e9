package archtest

import (
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// layout is the import graph of the module's packages (non-test files),
// exactly: for each package, the packages of this module it imports. It is
// the layout table of docs/architecture.md. A package not listed, an import
// not listed, and a listed import that no longer exists all fail, so that
// a new arrow is always a deliberate edit here and in the docs.
var layout = map[string][]string{
	"cmd/mqtt-authproxy":           {"internal/app", "internal/explain", "authstore", "authstore/lastuse", "authstore/operator", "authstore/passwords", "authstore/rules", "authstore/decisionlog", "authstore/redisconn", "policy", "packets", "internal/pki", "internal/logsafe", "authstore/revoked"},
	"internal/app":                 {"proxy", "authstore", "authstore/decisionlog", "authstore/schemas", "authstore/redisconn", "policy", "internal/transport", "internal/admin", "authstore/tokens", "authstore/lastuse", "authstore/revoked", "authstore/sessions", "internal/adminapi", "proxy/pool"},
	"internal/admin":               {},
	"internal/adminapi":            {"authstore", "authstore/decisionlog", "authstore/operator", "authstore/passwords", "authstore/revoked", "authstore/rules", "authstore/sessions", "internal/explain", "internal/logsafe", "packets", "policy"},
	"internal/explain":             {"authstore/operator", "packets", "policy", "proxy"},
	"internal/adminapi/apitest":    {},
	"proxy":                        {"policy", "packets", "internal/relay", "internal/transport", "internal/logsafe", "proxy/mountpoint", "proxy/limits"},
	"proxy/mountpoint":             {"internal/relay", "packets"},
	"proxy/limits":                 {"internal/relay", "packets", "policy"},
	"proxy/pool":                   {"proxy", "packets", "internal/logsafe"},
	"internal/transport":           {"internal/relay"},
	"internal/relay":               {"packets"},
	"authstore":                    {"authstore/changefeed", "authstore/decisionlog", "authstore/lastuse", "authstore/operator", "authstore/passwords", "authstore/ratelimit", "authstore/redisconn", "authstore/rules", "authstore/schemas", "authstore/sessions", "authstore/tickets", "policy", "internal/logsafe", "authstore/revoked", "authstore/tokens"},
	"authstore/changefeed":         {"authstore/redisconn", "authstore/schemas", "policy"},
	"authstore/decisionlog":        {"authstore/redisconn", "policy"},
	"authstore/lastuse":            {"authstore/redisconn"},
	"authstore/operator":           {"authstore/lastuse", "authstore/passwords", "authstore/redisconn", "authstore/rules", "authstore/sessions"},
	"authstore/sessions":           {"authstore/redisconn"},
	"authstore/schemas":            {"authstore/passwords", "authstore/rules", "policy", "internal/logsafe"},
	"authstore/rules":              {"policy", "internal/logsafe"},
	"authstore/passwords":          {"policy"},
	"authstore/tickets":            {"authstore/redisconn"},
	"authstore/ratelimit":          {"authstore/redisconn"},
	"authstore/redisconn":          {},
	"authstore/revoked":            {"authstore/redisconn"},
	"authstore/tokens":             {"policy"},
	"authstore/internal/storetest": {"authstore/redisconn", "internal/testenv", "policy", "packets"},
	"policy":                       {"packets"},
	"packets":                      {},
	"internal/logsafe":             {},
	"internal/mqtttest":            {"packets"},
	"internal/testenv":             {},
	"internal/pki":                 {},
	"internal/archtest":            {},
	"cmd/authproxy-bench":          {"packets", "internal/mqtttest"},
	"bench/floor":                  {"packets"},
}

// TestImportsFollowTheLayout: the module's import graph is the layout
// table, no arrow more and no arrow less.
func TestImportsFollowTheLayout(t *testing.T) {
	graph := importGraph(t)
	for _, pkg := range slices.Sorted(maps.Keys(graph)) {
		may, known := layout[pkg]
		if !known {
			t.Errorf("package %s is not in the layout table (internal/archtest and docs/architecture.md); it imports %v", pkg, graph[pkg])
			continue
		}
		for _, imp := range graph[pkg] {
			if !slices.Contains(may, imp) {
				t.Errorf("%s imports %s, which the layout table does not list (it lists %v): against the layout, or a new arrow to add to the table and the docs", pkg, imp, may)
			}
		}
	}
	for _, pkg := range slices.Sorted(maps.Keys(layout)) {
		imports, exists := graph[pkg]
		if !exists {
			t.Errorf("the layout table lists %s, which is no package: remove its row", pkg)
			continue
		}
		for _, imp := range layout[pkg] {
			if !slices.Contains(imports, imp) {
				t.Errorf("the layout table lets %s import %s, which it does not: remove the arrow (the table is the graph)", pkg, imp)
			}
		}
	}
}

// importGraph is, for each package of the module, the packages of the
// module its non-test files import (on any platform, under any tag).
func importGraph(t *testing.T) map[string][]string {
	t.Helper()
	graph := map[string][]string{}
	fset := token.NewFileSet()
	for pkg, files := range packageFiles(t) {
		imports := []string{}
		for _, path := range files {
			for _, spec := range parseFile(t, fset, path, parser.ImportsOnly).Imports {
				imp, _ := strconv.Unquote(spec.Path.Value)
				if ours, ok := strings.CutPrefix(imp, module+"/"); ok && !slices.Contains(imports, ours) {
					imports = append(imports, ours)
				}
			}
		}
		graph[pkg] = imports
	}
	return graph
}

// TestLayoutTableInDocs: the layout table of docs/architecture.md says what
// the layout table here says: a row for every package, its "may import"
// column ("nothing", or the packages in backquotes) the package's imports.
func TestLayoutTableInDocs(t *testing.T) {
	rows := docsLayout(t)
	for _, pkg := range slices.Sorted(maps.Keys(layout)) {
		imports, ok := rows[pkg]
		if !ok {
			t.Errorf("docs/architecture.md: no row of the layout table names %s", pkg)
			continue
		}
		if want := slices.Sorted(slices.Values(layout[pkg])); !slices.Equal(imports, want) {
			t.Errorf("docs/architecture.md: %s may import %v, the layout table %v", pkg, imports, want)
		}
	}
}

var backquoted = regexp.MustCompile("`([^`]+)`")

// docsLayout reads the table under "## Layout" in docs/architecture.md:
// for each package its first column names, the sorted packages its last
// column names. Paths that are no package (deploy/, docs/) are left out.
func docsLayout(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Layout\n")
	if !ok {
		t.Fatal(`docs/architecture.md has no "## Layout" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	rows := map[string][]string{}
	for line := range strings.Lines(section) {
		cells := strings.Split(strings.TrimSpace(line), "|")
		if len(cells) < 4 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		var imports []string
		for _, m := range backquoted.FindAllStringSubmatch(cells[len(cells)-2], -1) {
			imports = append(imports, strings.TrimSuffix(m[1], "/"))
		}
		slices.Sort(imports)
		for _, m := range backquoted.FindAllStringSubmatch(cells[1], -1) {
			pkg := strings.TrimSuffix(m[1], "/")
			if _, ok := layout[pkg]; ok {
				if _, dup := rows[pkg]; dup {
					t.Errorf("docs/architecture.md: two rows name %s", pkg)
				}
				rows[pkg] = imports
			}
		}
	}
	return rows
}
