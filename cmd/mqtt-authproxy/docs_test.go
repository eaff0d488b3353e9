package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"unicode"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/app"
)

// The documentation is README.md (what a newcomer needs first), docs/ (one
// page per thing an operator looks up) and deploy/README.md. These tests
// hold it and the code together: links and anchors resolve, the
// configuration page has a row for every variable with its default, and
// the tests and files the pages name exist.

// configPage is the page whose table documents every AUTHPROXY_ variable.
const configPage = "docs/configuration.md"

// docFiles returns the documentation's markdown files, relative to repoRoot.
func docFiles(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil || len(pages) == 0 {
		t.Fatalf("no docs/*.md: %v", err)
	}
	files := []string{"README.md", "deploy/README.md"}
	for _, p := range pages {
		rel, _ := filepath.Rel(repoRoot, p)
		files = append(files, filepath.ToSlash(rel))
	}
	return files
}

// readDoc returns a documentation file's text, without its fenced code
// blocks (their lines left empty).
func readDoc(t *testing.T, rel string) string {
	t.Helper()
	lines := strings.Split(string(mustRead(t, filepath.Join(repoRoot, rel))), "\n")
	fenced := false
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimLeft(l, " "), "```") {
			fenced = !fenced
			lines[i] = ""
		} else if fenced {
			lines[i] = ""
		}
	}
	return strings.Join(lines, "\n")
}

var (
	headingRE    = regexp.MustCompile(`^#{1,6} +(.+?)[ #]*$`)
	inlineLinkRE = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
	linkRE       = regexp.MustCompile(`\]\(([^()\s]+)\)`)
	codeSpanRE   = regexp.MustCompile("`[^`]*`")
)

// anchors returns the anchors GitHub gives the headings of a text from
// readDoc: the heading's text lower-cased, without link targets, every
// character but letters, digits, '-' and '_' left out and every space a
// '-'; a repeated anchor gets -1, -2, ...
func anchors(text string) map[string]bool {
	out, seen := map[string]bool{}, map[string]int{}
	for _, l := range strings.Split(text, "\n") {
		m := headingRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		var b strings.Builder
		for _, r := range strings.ToLower(inlineLinkRE.ReplaceAllString(m[1], "$1")) {
			switch {
			case r == ' ':
				b.WriteByte('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			out[fmt.Sprintf("%s-%d", a, n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

// TestDocsLinksResolve: every relative link of README.md, docs/*.md and
// deploy/README.md points at a file or folder of the repository, and an
// anchor at a heading of that page.
func TestDocsLinksResolve(t *testing.T) {
	links := 0
	for _, f := range docFiles(t) {
		text := codeSpanRE.ReplaceAllString(readDoc(t, f), "")
		for _, m := range linkRE.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			links++
			path, anchor, _ := strings.Cut(target, "#")
			file := f
			if path != "" {
				file = filepath.ToSlash(filepath.Join(filepath.Dir(f), path))
			}
			if strings.HasPrefix(file, "../") {
				t.Errorf("%s: link %s leaves the repository", f, target)
				continue
			}
			st, err := os.Stat(filepath.Join(repoRoot, file))
			switch {
			case err != nil:
				t.Errorf("%s: link %s: %s does not exist", f, target, file)
			case anchor == "":
			case st.IsDir() || filepath.Ext(file) != ".md":
				t.Errorf("%s: link %s: an anchor into %s, which is not a markdown page", f, target, file)
			case !anchors(readDoc(t, file))[anchor]:
				t.Errorf("%s: link %s: %s has no heading with anchor #%s", f, target, file, anchor)
			}
		}
	}
	if links < 50 {
		t.Fatalf("found only %d relative links in the docs", links)
	}
}

// tableCells splits a markdown table row into its cells; `\|` is a '|'
// inside a cell.
func tableCells(row string) []string {
	row = strings.TrimSpace(strings.ReplaceAll(row, `\|`, "\x00"))
	cells := strings.Split(strings.Trim(row, "|"), "|")
	for i, c := range cells {
		cells[i] = strings.TrimSpace(strings.ReplaceAll(c, "\x00", "|"))
	}
	return cells
}

// configRows returns the configuration page's variable table: each
// variable named in a row's first cell, without the prefix, with the row's
// default cell.
func configRows(t *testing.T) map[string]string {
	t.Helper()
	rows := map[string]string{}
	inTable := false
	nameRE := regexp.MustCompile("`([A-Z0-9_]+)`")
	for _, l := range strings.Split(readDoc(t, configPage), "\n") {
		switch {
		case strings.HasPrefix(l, "| variable | default |"):
			inTable = true
		case !strings.HasPrefix(l, "|"):
			inTable = false
		case inTable && !strings.HasPrefix(l, "|---"):
			cells := tableCells(l)
			for _, m := range nameRE.FindAllStringSubmatch(cells[0], -1) {
				if _, dup := rows[m[1]]; dup {
					t.Errorf("%s: %s has two rows", configPage, m[1])
				}
				rows[m[1]] = cells[1]
			}
		}
	}
	if len(rows) == 0 {
		t.Fatalf("%s has no table with the header | variable | default |", configPage)
	}
	return rows
}

// TestConfigurationDocumentsEveryVariable: the configuration page has a
// row for every variable the configuration reads, and none for another;
// where the configuration has a default, the row's default cell begins
// with it.
func TestConfigurationDocumentsEveryVariable(t *testing.T) {
	rows := configRows(t)
	typ := reflect.TypeFor[app.Config]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		name := f.Tag.Get("env")
		def, ok := rows[name]
		if !ok {
			t.Errorf("%s%s (Config.%s) has no row in %s", app.EnvPrefix, name, f.Name, configPage)
			continue
		}
		delete(rows, name)
		if want := f.Tag.Get("envDefault"); want != "" && !strings.HasPrefix(def, "`"+want+"`") {
			t.Errorf("%s: %s%s's default reads %q; the configuration's is %q", configPage, app.EnvPrefix, name, def, want)
		}
	}
	for name := range rows {
		t.Errorf("%s documents %s, which the configuration does not read", configPage, name)
	}
}

// testFuncs returns the names of the repository's test functions.
func testFuncs(t *testing.T) map[string]bool {
	t.Helper()
	funcRE := regexp.MustCompile(`(?m)^func (Test\w+)\(`)
	out := map[string]bool{}
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) && path != repoRoot {
			return filepath.SkipDir
		}
		if strings.HasSuffix(path, "_test.go") {
			for _, m := range funcRE.FindAllStringSubmatch(string(mustRead(t, path)), -1) {
				out[m[1]] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDocsNameExistingTests: every test the docs name (`TestX`, or a
// subtest `TestX/...`) is a test function of the repository.
func TestDocsNameExistingTests(t *testing.T) {
	funcs := testFuncs(t)
	nameRE := regexp.MustCompile("`(Test[A-Z0-9]\\w*)[/`]")
	named := 0
	for _, f := range docFiles(t) {
		for _, m := range nameRE.FindAllStringSubmatch(readDoc(t, f), -1) {
			named++
			if !funcs[m[1]] {
				t.Errorf("%s names %s, which no _test.go file defines", f, m[1])
			}
		}
	}
	if named < 10 {
		t.Fatalf("the docs name only %d tests", named)
	}
}

// TestDocsNameExistingPaths: every path of the repository the docs name in
// code spans (`proxy/attempt.go`, `deploy/helm/mqtt-authproxy`, a glob such
// as `authstore/schema*.go`) exists.
func TestDocsNameExistingPaths(t *testing.T) {
	entries, err := os.ReadDir(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	top := map[string]bool{}
	for _, e := range entries {
		if e.IsDir() {
			top[e.Name()] = true
		}
	}
	named := 0
	for _, f := range docFiles(t) {
		for _, m := range codeSpanRE.FindAllString(readDoc(t, f), -1) {
			p := strings.Trim(m, "`")
			first, _, ok := strings.Cut(p, "/")
			if !ok || !top[first] || strings.ContainsAny(p, " %<>#+$?{}") || strings.Contains(p, "...") {
				continue
			}
			named++
			if matches, _ := filepath.Glob(filepath.Join(repoRoot, p)); len(matches) == 0 {
				t.Errorf("%s names %s, which does not exist", f, p)
			}
		}
	}
	if named < 20 {
		t.Fatalf("the docs name only %d paths", named)
	}
}
