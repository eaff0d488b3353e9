package admin

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSource is a StatusSource with fixed data; Decisions applies the
// query's user filter, as the decision log does, and remembers the query.
type fakeSource struct {
	sessions  []Session
	decisions []Decision
	err       error
	counters  Counters
	last      time.Time

	mu      sync.Mutex
	queries []DecisionQuery
}

func (f *fakeSource) Sessions() []Session { return f.sessions }
func (f *fakeSource) Counters() Counters  { return f.counters }
func (f *fakeSource) LastChange() time.Time {
	return f.last
}

func (f *fakeSource) Decisions(_ context.Context, q DecisionQuery) ([]Decision, error) {
	f.mu.Lock()
	f.queries = append(f.queries, q)
	f.mu.Unlock()
	var out []Decision
	for _, d := range f.decisions {
		if q.User == "" || d.Username == q.User {
			out = append(out, d)
		}
	}
	return out, f.err
}

func (f *fakeSource) lastQuery(t *testing.T) DecisionQuery {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.queries) == 0 {
		t.Fatal("the decision log was not read")
	}
	return f.queries[len(f.queries)-1]
}

const xssName = `<img src=x onerror=alert(1)>`

var t0 = time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)

func sampleSource() *fakeSource {
	return &fakeSource{
		sessions: []Session{
			{Username: "alice", ClientID: "alice-1", Remote: "10.0.0.7:50001", Since: t0.Add(-time.Hour), Protocol: 4, TLS: "TLS 1.3", TopicRules: true, BytesUp: 10, BytesDown: 20},
			{Username: "bob", ClientID: "bob", Remote: "10.0.0.8:50002", Since: t0.Add(-time.Minute), Protocol: 5, TLS: "TLS 1.2", Resumed: true, BytesUp: 1, BytesDown: 2},
			{Username: xssName, ClientID: xssName, Remote: "10.0.0.9:50003", Since: t0.Add(-30 * time.Minute), Protocol: 4, TLS: "none"},
		},
		decisions: []Decision{ // oldest first, as the decision log returns them
			{Time: t0.Add(-50 * time.Minute), Replica: "a", Kind: "connect", Username: "alice", Outcome: "bad_credentials", Reason: "password does not match"},
			{Time: t0.Add(-40 * time.Minute), Replica: "b", Kind: "connect", Username: "alice", Outcome: "accepted", Reason: "allowed", Resumed: true},
			{Time: t0.Add(-30 * time.Minute), Replica: "a", Kind: "connect", Username: "bob", Outcome: "accepted", Reason: "allowed"},
			{Time: t0.Add(-20 * time.Minute), Replica: "a", Kind: "revalidate", Username: "alice", Outcome: "disabled", Reason: "disabled"},
			{Time: t0.Add(-10 * time.Minute), Replica: "b", Kind: "connect", Username: xssName, Outcome: "bad_credentials", Reason: "password does not match " + xssName},
		},
		counters: Counters{Connects: map[string]float64{"accepted": 7, "bad_credentials": 2, "disabled": 0}, HandshakesFull: 3, HandshakesResumed: 1},
		last:     t0.Add(-5 * time.Second),
	}
}

const testToken = "0123456789abcdef-token"

// request is a GET of target that reached the listener on local (nil: no
// local address known), with the Host a browser on this machine sends
// (127.0.0.1:9090) unless header sets one.
func request(target string, local net.Addr, header ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.Host = "127.0.0.1:9090"
	if local != nil {
		r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, local))
	}
	for i := 0; i+1 < len(header); i += 2 {
		if http.CanonicalHeaderKey(header[i]) == "Host" {
			r.Host = header[i+1]
			continue
		}
		r.Header.Set(header[i], header[i+1])
	}
	return r
}

func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

var (
	public   = &net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 9090}
	loopback = &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 9090}
	ipv6Lo   = &net.TCPAddr{IP: net.IPv6loopback, Port: 9090}
)

// TestStatusOffByDefault: without StatusOptions neither path is served.
func TestStatusOffByDefault(t *testing.T) {
	h := New(Options{})
	for _, p := range []string{"/status", "/status.json"} {
		if rec := serve(h, request(p, loopback)); rec.Code != http.StatusNotFound {
			t.Errorf("%s without StatusOptions: %d", p, rec.Code)
		}
	}
}

// TestStatusAuth: with a token, every request must present it (Bearer or
// ?token=), on loopback too; without one, only requests that reached a
// loopback address are served. Refusals are 401 with WWW-Authenticate and
// say nothing of the data.
func TestStatusAuth(t *testing.T) {
	withToken := New(Options{Status: &StatusOptions{Source: sampleSource(), Replica: "r1", Token: testToken}})
	without := New(Options{Status: &StatusOptions{Source: sampleSource(), Replica: "r1"}})
	for _, c := range []struct {
		name   string
		h      http.Handler
		target string
		local  net.Addr
		header []string
		want   int
	}{
		{"token set, none given", withToken, "/status", public, nil, 401},
		{"token set, none given, json", withToken, "/status.json", public, nil, 401},
		{"token set, none given, on loopback", withToken, "/status.json", loopback, nil, 401},
		{"Bearer", withToken, "/status", public, []string{"Authorization", "Bearer " + testToken}, 200},
		{"Bearer, json", withToken, "/status.json", public, []string{"Authorization", "Bearer " + testToken}, 200},
		{"bearer in lower case", withToken, "/status.json", public, []string{"Authorization", "bearer " + testToken}, 200},
		{"?token=", withToken, "/status?token=" + testToken, public, nil, 200},
		{"?token=, json", withToken, "/status.json?user=alice&token=" + testToken, public, nil, 200},
		{"wrong Bearer", withToken, "/status.json", public, []string{"Authorization", "Bearer " + testToken + "x"}, 401},
		{"a prefix of the token", withToken, "/status.json", public, []string{"Authorization", "Bearer " + testToken[:10]}, 401},
		{"empty Bearer", withToken, "/status.json", public, []string{"Authorization", "Bearer "}, 401},
		{"Basic", withToken, "/status.json", public, []string{"Authorization", "Basic " + testToken}, 401},
		{"wrong ?token=", withToken, "/status?token=nope", public, nil, 401},
		{"wrong Bearer beats a right ?token=", withToken, "/status?token=" + testToken, public, []string{"Authorization", "Bearer nope"}, 401},
		{"no token, loopback", without, "/status", loopback, nil, 200},
		{"no token, loopback, json", without, "/status.json", loopback, nil, 200},
		{"no token, IPv6 loopback", without, "/status.json", ipv6Lo, nil, 200},
		{"no token, not loopback", without, "/status", public, nil, 401},
		{"no token, not loopback, json", without, "/status.json", public, nil, 401},
		{"no token, local address unknown", without, "/status.json", nil, nil, 401},
		{"no token, a token given anyway, not loopback", without, "/status.json", public, []string{"Authorization", "Bearer "}, 401},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := serve(c.h, request(c.target, c.local, c.header...))
			if rec.Code != c.want {
				t.Fatalf("%d, want %d: %s", rec.Code, c.want, rec.Body)
			}
			if got := rec.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control %q", got)
			}
			body := rec.Body.String()
			if c.want == 401 {
				if !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer ") {
					t.Errorf("401 without WWW-Authenticate: %v", rec.Header())
				}
				if strings.Contains(body, "alice") || strings.Contains(body, "10.0.0.7") || strings.Contains(body, "<script>") {
					t.Errorf("a 401 shows data: %q", body)
				}
				return
			}
			if strings.HasPrefix(c.target, "/status.json") {
				if !strings.Contains(body, `"replica":"r1"`) {
					t.Errorf("json body %q", body)
				}
			} else if !strings.Contains(body, "<script>") || rec.Header().Get("Content-Security-Policy") == "" {
				t.Errorf("page: %v %q", rec.Header(), body[:min(len(body), 200)])
			}
		})
	}
}

// TestStatusLoopbackOnRealListeners: the local address the server puts in
// the request's context is what the check reads: a listener on 127.0.0.1
// serves without a token; one on an address of this machine that is not
// loopback answers 401 (to a request with a loopback Host; its own address
// as Host is refused before, with 421).
func TestStatusLoopbackOnRealListeners(t *testing.T) {
	h := New(Options{Status: &StatusOptions{Source: sampleSource(), Replica: "r1"}})
	lo := httptest.NewServer(h)
	defer lo.Close()
	if code := httpGet(t, lo.URL+"/status.json"); code != 200 {
		t.Fatalf("on %s without a token: %d", lo.URL, code)
	}
	ip := nonLoopbackIP(t)
	l, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		t.Fatalf("listen on %s: %v", ip, err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	defer srv.Close()
	if code := httpGet(t, srv.URL+"/status.json"); code != 421 {
		t.Fatalf("on %s without a token: %d, want 421", srv.URL, code)
	}
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/status.json", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "localhost"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("on %s without a token, Host localhost: %d, want 401", srv.URL, resp.StatusCode)
	}
}

// nonLoopbackIP is an address of this machine that is not loopback; the
// test is skipped on a machine without one.
func nonLoopbackIP(t *testing.T) net.IP {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil && !n.IP.IsLinkLocalUnicast() {
			return n.IP
		}
	}
	t.Skip("this machine has no IPv4 address other than loopback")
	return nil
}

func httpGet(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestStatusMethods: only GET (and HEAD) are served.
func TestStatusMethods(t *testing.T) {
	h := New(Options{Status: &StatusOptions{Source: sampleSource(), Replica: "r1", Token: testToken}})
	r := httptest.NewRequest(http.MethodPost, "/status.json", nil)
	r.Header.Set("Authorization", "Bearer "+testToken)
	if rec := serve(h, r); rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", rec.Code)
	}
}

// statusJSON fetches /status.json (on loopback, no token) and decodes it
// both as a Status and as a generic map (the JSON shape).
func statusJSON(t *testing.T, h http.Handler, target string) (Status, map[string]any) {
	t.Helper()
	rec := serve(h, request(target, loopback))
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("%s: %d %v %s", target, rec.Code, rec.Header(), rec.Body)
	}
	var st Status
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	return st, m
}

// TestStatusJSON: the shape of /status.json and where each number comes
// from: sessions newest first, decisions newest first, the summary's
// accepted and refused from the window's CONNECT decisions, counts by
// kind and outcome, connects_total and the resumption rate from the
// counters, health from the readiness checks, the last change.
func TestStatusJSON(t *testing.T) {
	src := sampleSource()
	h := New(Options{Checks: []Check{
		{Name: "redis", Probe: func(context.Context) error { return nil }},
		{Name: "backend", Probe: func(context.Context) error { return errors.New("refused") }},
	}, Status: &StatusOptions{Source: src, Replica: "r1"}})
	st, m := statusJSON(t, h, "/status.json")

	for _, k := range []string{"replica", "time", "user", "summary", "health", "change_feed", "sessions", "decisions", "window", "outcomes", "connects_total", "tls_handshakes"} {
		if _, ok := m[k]; !ok {
			t.Errorf("/status.json lacks %q: %v", k, m)
		}
	}
	if _, ok := m["decisions_error"]; ok {
		t.Errorf("decisions_error without an error")
	}
	sess := m["sessions"].([]any)[0].(map[string]any)
	for _, k := range []string{"username", "client_id", "remote", "since", "protocol", "tls", "resumed", "topic_rules", "bytes_up", "bytes_down"} {
		if _, ok := sess[k]; !ok {
			t.Errorf("a session lacks %q: %v", k, sess)
		}
	}
	dec := m["decisions"].([]any)[0].(map[string]any)
	for _, k := range []string{"time", "replica", "kind", "remote", "username", "client_id", "protocol", "tls", "resumed", "cert_sha256", "outcome", "reason", "duration_ms"} {
		if _, ok := dec[k]; !ok {
			t.Errorf("a decision lacks %q: %v", k, dec)
		}
	}

	if st.Replica != "r1" || st.User != "" {
		t.Errorf("replica %q user %q", st.Replica, st.User)
	}
	var users []string
	for _, s := range st.Sessions {
		users = append(users, s.Username)
	}
	if strings.Join(users, ",") != "bob,"+xssName+",alice" {
		t.Errorf("sessions not newest first: %v", users)
	}
	for i := 1; i < len(st.Decisions); i++ {
		if st.Decisions[i].Time.After(st.Decisions[i-1].Time) {
			t.Errorf("decisions not newest first: %v", st.Decisions)
		}
	}
	if st.Decisions[0].Username != xssName || st.Decisions[4].Outcome != "bad_credentials" {
		t.Errorf("decisions: %+v", st.Decisions)
	}
	want := Summary{Sessions: 3, Accepted: 2, Refused: 2}
	if st.Summary.Sessions != want.Sessions || st.Summary.Accepted != want.Accepted || st.Summary.Refused != want.Refused {
		t.Errorf("summary %+v, want %+v", st.Summary, want)
	}
	if st.Summary.ResumptionRate == nil || *st.Summary.ResumptionRate != 0.25 ||
		st.Handshakes.Full != 3 || st.Handshakes.Resumed != 1 || *st.Handshakes.ResumptionRate != 0.25 {
		t.Errorf("resumption: %+v %+v", st.Summary, st.Handshakes)
	}
	if st.Health["redis"] != "ok" || st.Health["backend"] != "unavailable" || len(st.Health) != 2 {
		t.Errorf("health %v", st.Health)
	}
	if st.ChangeFeed.LastChange == nil || !st.ChangeFeed.LastChange.Equal(src.last) {
		t.Errorf("change feed %+v", st.ChangeFeed)
	}
	if st.Window.Limit != StatusDecisionLimit || st.Window.MaxAgeSeconds != 3600 || st.Window.Count != 5 || !st.Window.Oldest.Equal(t0.Add(-50*time.Minute)) {
		t.Errorf("window %+v", st.Window)
	}
	var outcomes []string
	for _, o := range st.Outcomes {
		outcomes = append(outcomes, o.Kind+"/"+o.Outcome+"="+fmtCount(o.Count))
	}
	if got := strings.Join(outcomes, " "); got != "connect/accepted=2 connect/bad_credentials=2 revalidate/disabled=1" {
		t.Errorf("outcomes %s", got)
	}
	var connects []string
	for _, o := range st.Connects {
		connects = append(connects, o.Outcome+"="+fmtCount(o.Count))
	}
	if got := strings.Join(connects, " "); got != "accepted=7 bad_credentials=2" {
		t.Errorf("connects_total %s (a zero count is left out)", got)
	}
	q := src.lastQuery(t)
	if q.User != "" || q.Limit != StatusDecisionLimit || time.Since(q.Since) < StatusDecisionAge-time.Minute || time.Since(q.Since) > StatusDecisionAge+time.Minute {
		t.Errorf("decision query %+v", q)
	}
}

func fmtCount(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// TestStatusJSONEmptyAndFailing: nothing yet is empty lists (never null)
// and null rates and times; a decision log that cannot be read is said in
// decisions_error, and the rest is still served.
func TestStatusJSONEmptyAndFailing(t *testing.T) {
	src := &fakeSource{err: errors.New("dial tcp 127.0.0.1:6379: connection refused")}
	h := New(Options{Status: &StatusOptions{Source: src, Replica: "r1"}})
	_, m := statusJSON(t, h, "/status.json")
	for _, k := range []string{"sessions", "decisions", "outcomes", "connects_total"} {
		if l, ok := m[k].([]any); !ok || len(l) != 0 {
			t.Errorf("%s = %#v, want []", k, m[k])
		}
	}
	if m["change_feed"].(map[string]any)["last_change"] != nil || m["summary"].(map[string]any)["resumption_rate"] != nil ||
		m["window"].(map[string]any)["oldest"] != nil {
		t.Errorf("want nulls: %v", m)
	}
	if e, _ := m["decisions_error"].(string); !strings.Contains(e, "connection refused") {
		t.Errorf("decisions_error %q", e)
	}
}

// TestStatusUserFilter: ?user= is passed to the decision log's read and
// filters the live sessions; the summary counts what is shown.
func TestStatusUserFilter(t *testing.T) {
	src := sampleSource()
	h := New(Options{Status: &StatusOptions{Source: src, Replica: "r1"}})
	st, _ := statusJSON(t, h, "/status.json?user=alice")
	if q := src.lastQuery(t); q.User != "alice" {
		t.Fatalf("the decision log was read for %q", q.User)
	}
	if st.User != "alice" || len(st.Sessions) != 1 || st.Sessions[0].ClientID != "alice-1" || st.Summary.Sessions != 1 {
		t.Errorf("sessions for alice: %+v", st.Sessions)
	}
	if len(st.Decisions) != 3 || st.Summary.Accepted != 1 || st.Summary.Refused != 1 {
		t.Errorf("decisions for alice: %+v %+v", st.Decisions, st.Summary)
	}
	for _, d := range st.Decisions {
		if d.Username != "alice" {
			t.Errorf("decision of %q shown for alice", d.Username)
		}
	}
	st, _ = statusJSON(t, h, "/status.json?user="+strings.ReplaceAll(xssName, " ", "%20"))
	if q := src.lastQuery(t); q.User != xssName || len(st.Sessions) != 1 || len(st.Decisions) != 1 {
		t.Errorf("filter by %q: query %+v, %d sessions, %d decisions", xssName, q, len(st.Sessions), len(st.Decisions))
	}
	st, _ = statusJSON(t, h, "/status.json?user=nobody")
	if len(st.Sessions) != 0 || len(st.Decisions) != 0 || st.Summary.Accepted+st.Summary.Refused != 0 {
		t.Errorf("nobody: %+v", st)
	}
}

// TestStatusEscaping: what devices send never reaches the page as markup.
// The HTML is static (data arrives only as JSON), the JSON escapes <, >
// and &, and the page's script builds DOM nodes with textContent only:
// it never assigns markup (innerHTML, outerHTML, insertAdjacentHTML,
// document.write). The browser test (internal/app) checks the rendered
// DOM.
func TestStatusEscaping(t *testing.T) {
	h := New(Options{Status: &StatusOptions{Source: sampleSource(), Replica: "r1"}})
	page := serve(h, request("/status", loopback)).Body.String()
	if strings.Contains(page, "alice") || strings.Contains(page, xssName) {
		t.Fatal("the HTML carries data: it must be static")
	}
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
		if strings.Contains(page, sink) {
			t.Errorf("the page's script uses %s", sink)
		}
	}
	js := serve(h, request("/status.json", loopback)).Body.String()
	if strings.Contains(js, "<img") || !strings.Contains(js, `\u003cimg src=x onerror=alert(1)\u003e`) {
		t.Errorf("the JSON does not escape %q: %s", xssName, js)
	}
}

// TestStatusPageIsSelfContained: one page with its style and script
// inline, nothing loaded from elsewhere, and a Content-Security-Policy
// that allows exactly that inline style and script (by hash) and fetches
// from its own origin.
func TestStatusPageIsSelfContained(t *testing.T) {
	h := New(Options{Status: &StatusOptions{Source: sampleSource(), Replica: "r1"}})
	rec := serve(h, request("/status", loopback))
	page := rec.Body.String()
	if rec.Header().Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", rec.Header().Get("Content-Type"))
	}
	if n := strings.Count(page, "<script"); n != 1 {
		t.Errorf("%d script elements", n)
	}
	if n := strings.Count(page, "<style"); n != 1 {
		t.Errorf("%d style elements", n)
	}
	if regexp.MustCompile(`(?i)\s(src|srcset)\s*=`).MatchString(page) || regexp.MustCompile(`(?i)(https?:)?//[a-z0-9]`).MatchString(stripComments(page)) ||
		strings.Contains(page, "@import") || strings.Contains(page, "url(") {
		t.Error("the page refers to something outside itself")
	}
	for _, href := range regexp.MustCompile(`href="([^"]*)"`).FindAllStringSubmatch(page, -1) {
		if href[1] != "data:," && href[1] != "status.json" {
			t.Errorf("href %q", href[1])
		}
	}
	csp := rec.Header().Get("Content-Security-Policy")
	for _, tag := range []string{"style", "script"} {
		m := regexp.MustCompile(`(?s)<` + tag + `>(.*?)</` + tag + `>`).FindStringSubmatch(page)
		sum := sha256.Sum256([]byte(m[1]))
		if want := tag + "-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	for _, want := range []string{"default-src 'none'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe") {
		t.Errorf("CSP %q allows unsafe sources", csp)
	}
}

// stripComments removes the script's // comments, so that the search for
// URLs looks at code and markup only.
func stripComments(s string) string {
	return regexp.MustCompile(`(?m)^\s*//.*$`).ReplaceAllString(s, "")
}

// TestStatusSessionLimit: the page lists the newest StatusSessionLimit
// live sessions and counts them all.
func TestStatusSessionLimit(t *testing.T) {
	src := &fakeSource{}
	for i := range StatusSessionLimit + 50 {
		src.sessions = append(src.sessions, Session{Username: "u" + strconv.Itoa(i), Since: t0.Add(time.Duration(i) * time.Second)})
	}
	st, _ := statusJSON(t, New(Options{Status: &StatusOptions{Source: src, Replica: "r1"}}), "/status.json")
	if len(st.Sessions) != StatusSessionLimit || st.Summary.Sessions != StatusSessionLimit+50 {
		t.Fatalf("%d sessions listed, %d counted", len(st.Sessions), st.Summary.Sessions)
	}
	if st.Sessions[0].Username != "u"+strconv.Itoa(StatusSessionLimit+49) || st.Sessions[StatusSessionLimit-1].Username != "u50" {
		t.Fatalf("not the newest: first %s, last %s", st.Sessions[0].Username, st.Sessions[StatusSessionLimit-1].Username)
	}
}
