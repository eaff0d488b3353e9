package app

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mqtt-authproxy/mqtt-authproxy/proxy"
)

// dashboardFile is the Grafana dashboard shipped in deploy/.
var dashboardFile = filepath.Join("..", "..", "deploy", "grafana", "mqtt-authproxy.json")

// targetLabels are the labels Prometheus adds to every series it scrapes.
var targetLabels = []string{"instance", "job"}

// exportedSeries is every series name the proxy's /metrics can hold, with
// its label names: the registry Start builds (the Go and process
// collectors, the decision log's drop counter) with the proxy's series on
// it. A histogram stands as its _bucket (with le), _sum and _count series,
// a summary as itself (with quantile), _sum and _count.
func exportedSeries(t *testing.T) map[string][]string {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	newDecisionLogDropped(reg)
	proxy.NewMetrics(reg)

	// Names and labels from the descriptors: a vector without a child yet
	// gathers nothing, but it is described.
	descs := make(chan *prometheus.Desc)
	go func() { reg.Describe(descs); close(descs) }()
	descRE := regexp.MustCompile(`^Desc\{fqName: "([^"]+)", .*constLabels: \{([^}]*)\}, variableLabels: \{([^}]*)\}\}$`)
	labelsOf := map[string][]string{}
	for d := range descs {
		m := descRE.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read the descriptor %s", d)
		}
		var labels []string
		for _, kv := range strings.Split(m[2], ",") {
			if name, _, ok := strings.Cut(kv, "="); ok {
				labels = append(labels, name)
			}
		}
		for _, l := range strings.Split(m[3], ",") {
			if l = strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")"); l != "" {
				labels = append(labels, l)
			}
		}
		labelsOf[m[1]] = labels
	}
	// Types from what is gathered (histograms without labels always are).
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]string{}
	for _, f := range families {
		types[f.GetName()] = f.GetType().String()
	}
	series := map[string][]string{}
	for name, labels := range labelsOf {
		switch types[name] {
		case "HISTOGRAM":
			series[name+"_bucket"] = append(slices.Clone(labels), "le")
			series[name+"_sum"], series[name+"_count"] = labels, labels
		case "SUMMARY":
			series[name] = append(slices.Clone(labels), "quantile")
			series[name+"_sum"], series[name+"_count"] = labels, labels
		default:
			series[name] = labels
		}
	}
	_, goroutines := series["go_goroutines"]
	if !slices.Equal(series["authproxy_connects_total"], []string{"outcome"}) || !slices.Equal(series["authproxy_auth_duration_seconds_bucket"], []string{"le"}) || !goroutines {
		t.Fatalf("the exported series were not read: %v", series)
	}
	return series
}

var (
	// seriesRE finds a series name of ours or of the Go and process
	// collectors, with its label matchers if any.
	seriesRE  = regexp.MustCompile(`\b((?:authproxy|go|process)_[a-zA-Z0-9_:]*)\s*(\{[^}]*\})?`)
	matcherRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"`)
	groupRE   = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	// labelValuesRE is a label_values(series, label) variable query.
	labelValuesRE = regexp.MustCompile(`label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)`)
	variableRE    = regexp.MustCompile(`\$\{?([a-zA-Z_][a-zA-Z0-9_]*)`)
)

// exprProblems checks one PromQL expression against the exported series:
// every series it names exists, every label it matches on or groups by is
// one of theirs (or a label Prometheus adds), its brackets balance.
func exprProblems(expr string, series map[string][]string) []string {
	var problems []string
	used := map[string]bool{}
	for _, l := range targetLabels {
		used[l] = true
	}
	found := seriesRE.FindAllStringSubmatch(expr, -1)
	if len(found) == 0 {
		problems = append(problems, fmt.Sprintf("%q names no series of the proxy", expr))
	}
	for _, m := range found {
		labels, ok := series[m[1]]
		if !ok {
			problems = append(problems, fmt.Sprintf("%q: %s is not a series the proxy exports", expr, m[1]))
			continue
		}
		for _, l := range labels {
			used[l] = true
		}
		for _, mm := range matcherRE.FindAllStringSubmatch(m[2], -1) {
			if !slices.Contains(labels, mm[1]) && !slices.Contains(targetLabels, mm[1]) {
				problems = append(problems, fmt.Sprintf("%q: %s has no label %s (it has %v)", expr, m[1], mm[1], labels))
			}
		}
	}
	for _, g := range groupRE.FindAllStringSubmatch(expr, -1) {
		for l := range strings.SplitSeq(g[1], ",") {
			if l = strings.TrimSpace(l); l != "" && !used[l] {
				problems = append(problems, fmt.Sprintf("%q: grouped by %s, a label none of its series has", expr, l))
			}
		}
	}
	depth := map[rune]int{}
	for _, r := range expr {
		switch r {
		case '(', '[', '{':
			depth[r]++
		case ')':
			depth['(']--
		case ']':
			depth['[']--
		case '}':
			depth['{']--
		}
	}
	for open, d := range depth {
		if d != 0 {
			problems = append(problems, fmt.Sprintf("%q: unbalanced %c", expr, open))
		}
	}
	return problems
}

// grafanaVariables are Grafana's own variables an expression may use.
var grafanaVariables = []string{"__rate_interval", "__interval", "__range", "__range_s"}

// panel is what the test reads of a dashboard panel.
type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		RefID      string `json:"refId"`
		Expr       string `json:"expr"`
		Datasource *struct {
			Type string `json:"type"`
			UID  string `json:"uid"`
		} `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

// dashboardProblems checks a dashboard model: importable (a uid, a title,
// a schema version, no fixed id, a Prometheus datasource variable every
// panel and query uses, unique panel ids on the 24-column grid), and every
// expression (targets and variable queries) right against series.
func dashboardProblems(raw []byte, series map[string][]string) []string {
	var d struct {
		ID            *int   `json:"id"`
		UID           string `json:"uid"`
		Title         string `json:"title"`
		SchemaVersion int    `json:"schemaVersion"`
		Templating    struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Query      any    `json:"query"`
				Definition string `json:"definition"`
				Datasource *struct {
					UID string `json:"uid"`
				} `json:"datasource"`
			} `json:"list"`
		} `json:"templating"`
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return []string{"not JSON: " + err.Error()}
	}
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if d.ID != nil || d.UID == "" || len(d.UID) > 40 || d.Title == "" || d.SchemaVersion < 30 {
		add("dashboard header: id %v (want null), uid %q, title %q, schemaVersion %d", d.ID, d.UID, d.Title, d.SchemaVersion)
	}
	dsVar := ""
	variables := slices.Clone(grafanaVariables)
	for _, v := range d.Templating.List {
		variables = append(variables, v.Name)
		switch v.Type {
		case "datasource":
			if v.Query == "prometheus" {
				dsVar = "${" + v.Name + "}"
			}
		case "query":
			if v.Datasource == nil || v.Datasource.UID != "${datasource}" {
				add("variable %s: datasource %+v, want the variable ${datasource}", v.Name, v.Datasource)
			}
			q := v.Definition
			if m, ok := v.Query.(map[string]any); ok {
				q, _ = m["query"].(string)
			}
			if lv := labelValuesRE.FindStringSubmatch(q); lv == nil {
				add("variable %s: query %q is not label_values(series, label)", v.Name, q)
			} else if labels, ok := series[lv[1]]; !ok {
				add("variable %s: %s is not a series the proxy exports", v.Name, lv[1])
			} else if !slices.Contains(labels, lv[2]) && !slices.Contains(targetLabels, lv[2]) {
				add("variable %s: %s has no label %s", v.Name, lv[1], lv[2])
			}
		}
	}
	if dsVar == "" {
		add("no Prometheus datasource variable")
	}
	ids := map[int]bool{}
	var check func(ps []panel)
	check = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] || p.ID == 0 {
				add("panel %q: id %d is missing or not unique", p.Title, p.ID)
			}
			ids[p.ID] = true
			if p.Title == "" || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X < 0 || p.GridPos.X+p.GridPos.W > 24 {
				add("panel %d %q: no title, or gridPos %+v off the 24-column grid", p.ID, p.Title, p.GridPos)
			}
			if p.Type == "row" {
				check(p.Panels)
				continue
			}
			if !slices.Contains([]string{"timeseries", "stat", "gauge", "bargauge", "table"}, p.Type) {
				add("panel %q: type %q", p.Title, p.Type)
			}
			if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != dsVar {
				add("panel %q: datasource %+v, want the variable %s", p.Title, p.Datasource, dsVar)
			}
			if len(p.Targets) == 0 {
				add("panel %q: no query", p.Title)
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				if tg.RefID == "" || refs[tg.RefID] {
					add("panel %q: refId %q missing or repeated", p.Title, tg.RefID)
				}
				refs[tg.RefID] = true
				if tg.Datasource != nil && tg.Datasource.UID != dsVar {
					add("panel %q: query %s uses datasource %q", p.Title, tg.RefID, tg.Datasource.UID)
				}
				problems = append(problems, exprProblems(tg.Expr, series)...)
				for _, v := range variableRE.FindAllStringSubmatch(tg.Expr, -1) {
					if !slices.Contains(variables, v[1]) {
						add("panel %q: $%s is no variable", p.Title, v[1])
					}
				}
			}
		}
	}
	check(d.Panels)
	return problems
}

// TestGrafanaDashboard: deploy/grafana/mqtt-authproxy.json is an
// importable dashboard whose every expression names series (and labels)
// the proxy exports, and it covers what operators watch.
func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	series := exportedSeries(t)
	for _, p := range dashboardProblems(raw, series) {
		t.Error(p)
	}
	for _, want := range []string{"authproxy_connects_total", "authproxy_auth_duration_seconds_bucket", `authproxy_tls_handshakes_total{instance=~\"$instance\",resumed=\"true\"}`,
		"authproxy_connections_active", "authproxy_acl_denied_total", "authproxy_disconnects_total", "authproxy_revalidations_total",
		"authproxy_decision_log_dropped_total", "authproxy_throttled_seconds_total", "authproxy_limit_refusals_total"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("the dashboard does not show %s", want)
		}
	}
}

// TestGrafanaDashboardCheckFails: the check catches a misspelled series,
// a label a series does not have, a grouping by such a label, an unknown
// variable and a panel off the datasource variable.
func TestGrafanaDashboardCheckFails(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	series := exportedSeries(t) // the raw file holds expressions JSON-escaped: \" for "
	for _, c := range []struct{ from, to, want string }{
		{"authproxy_acl_denied_total", "authproxy_acl_denies_total", "authproxy_acl_denies_total is not a series the proxy exports"},
		{"authproxy_auth_duration_seconds_bucket", "authproxy_auth_duration_bucket", "authproxy_auth_duration_bucket is not a series"},
		{"authproxy_decision_log_dropped_total", "authproxy_decisions_dropped_total", "authproxy_decisions_dropped_total is not a series"},
		{`resumed=\"true\"`, `resume=\"true\"`, "has no label resume"},
		{"sum by (outcome)", "sum by (result)", "grouped by result"},
		{"$__rate_interval", "$rate_interval", "$rate_interval is no variable"},
		{`"uid": "${datasource}"`, `"uid": "prometheus"`, "want the variable ${datasource}"},
		{"label_values(authproxy_connections_active, instance)", "label_values(authproxy_connection_active, instance)", "authproxy_connection_active is not a series"},
	} {
		if !strings.Contains(string(raw), c.from) {
			t.Fatalf("the dashboard no longer holds %s: update this test", c.from)
		}
		broken := strings.ReplaceAll(string(raw), c.from, c.to) // descriptions name series too
		problems := strings.Join(dashboardProblems([]byte(broken), series), "\n")
		if !strings.Contains(problems, c.want) {
			t.Errorf("%s -> %s: the check says %q, want %q", c.from, c.to, problems, c.want)
		}
	}
	if p := exprProblems(`sum(rate(authproxy_connects_total{outcome="accepted"}[5m])`, series); len(p) != 1 || !strings.Contains(p[0], "unbalanced (") {
		t.Errorf("an unbalanced expression: %v", p)
	}
}
