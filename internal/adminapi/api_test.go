package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/passwords"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/adminapi/apitest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

const (
	changeToken = "change-token-0123456789"
	readToken   = "read-token-0123456789ab"
)

// records is a decision log that keeps what it is given.
type records struct {
	mu sync.Mutex
	rs []policy.Record
}

func (r *records) Record(rec policy.Record) {
	r.mu.Lock()
	r.rs = append(r.rs, rec)
	r.mu.Unlock()
}

func (r *records) all() []policy.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.rs)
}

// fixture is the API over a real Redis, served by httptest.
type fixture struct {
	t     *testing.T
	srv   *httptest.Server
	redis *testenv.Server
	rdb   *redis.Client // the test's own client
	log   *records
	check *apitest.Checker
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	rs := testenv.Redis(t)
	rdb, err := redisconn.NewClient(testenv.RedisURL(rs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	store := authstore.New(rdb, authstore.Options{Timeout: time.Second})
	log := &records{}
	api, err := New(Options{Store: store, Token: changeToken, ReadToken: readToken, Recorder: log, Replica: "r1", Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(Prefix, api)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	own := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	t.Cleanup(func() { own.Close() })
	return &fixture{t: t, srv: srv, redis: rs, rdb: own, log: log, check: apitest.New(t, OpenAPI)}
}

// do sends a request (token "" none, contentType "" none) and checks its
// answer against the OpenAPI document.
func (f *fixture) do(method, path, token, contentType string, body []byte) (int, []byte) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("Content-Type") != "application/json" {
		f.t.Errorf("%s %s: Content-Type %q", method, path, resp.Header.Get("Content-Type"))
	}
	f.check.Check(method, f.srv.URL+path, resp.StatusCode, resp.Header, b)
	return resp.StatusCode, b
}

// json sends a JSON body with the change token.
func (f *fixture) json(method, path, body string) (int, []byte) {
	f.t.Helper()
	return f.do(method, path, changeToken, "application/json", []byte(body))
}

// keys is every key of the Redis, with its value's dump, for "nothing
// written".
func (f *fixture) keys() map[string]string {
	f.t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for _, k := range f.rdb.Keys(ctx, "mqtt:user:*").Val() {
		out[k] = fmt.Sprint(f.rdb.HGetAll(ctx, k).Val())
	}
	for _, k := range f.rdb.Keys(ctx, "mqtt:role:*").Val() {
		out[k] = fmt.Sprint(f.rdb.HGetAll(ctx, k).Val())
	}
	return out
}

func errorOf(b []byte) string {
	var e Error
	_ = json.Unmarshal(b, &e)
	return e.Error
}

// TestAPIRefusesBadInput: malformed JSON, unknown fields, a body of 10 MB,
// a user name with ':' or a newline, a role that does not exist, a
// rotation of a user without a password, a body that is not JSON: each a
// 4xx whose message names the problem, and nothing written.
func TestAPIRefusesBadInput(t *testing.T) {
	f := newFixture(t)
	if s, b := f.json("PUT", "/api/v1/users/dev", `{"password": "pw", "publish": "d/%u/#"}`); s != 201 {
		t.Fatalf("create: %d %s", s, b)
	}
	if s, b := f.json("PUT", "/api/v1/users/cert", `{"certs": "cn:cert"}`); s != 201 {
		t.Fatalf("create a certificate-only user: %d %s", s, b)
	}
	before := f.keys()
	big := `{"publish": "` + strings.Repeat("a", 10<<20) + `"}`
	for _, c := range []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"PUT", "/api/v1/users/dev", `{"password": "x",`, 400, "not a JSON object"},
		{"PUT", "/api/v1/users/dev", `{"publsh": "x"}`, 400, `unknown field "publsh"`},
		{"PUT", "/api/v1/users/dev", `{"publish": 7}`, 400, `"publish" must be a string`},
		{"PATCH", "/api/v1/users/dev", `{"enabled": "maybe"}`, 400, `"enabled"`},
		{"PATCH", "/api/v1/users/dev", `{"nope": "x"}`, 400, `unknown field "nope"`},
		{"PATCH", "/api/v1/users/dev", `{}`, 400, "no field to change"},
		{"PUT", "/api/v1/users/dev", big, 413, "larger than 1048576 bytes"},
		{"PUT", "/api/v1/users/new:one", `{"password": "pw"}`, 400, "':' is not allowed in a new user name"},
		{"PUT", "/api/v1/users/" + url.PathEscape("a\nb"), `{"password": "pw"}`, 400, "white space or a control character"},
		{"PUT", "/api/v1/users/dev", `{"name": "other", "password": "pw"}`, 400, `not the path's user name "dev"`},
		{"PUT", "/api/v1/users/dev", `{"password": "pw", "roles": "ghost"}`, 422, "no such role: ghost"},
		{"PATCH", "/api/v1/users/dev", `{"roles": "ghost"}`, 422, "no such role: ghost"},
		{"POST", "/api/v1/users/cert/rotate", ``, 422, "has no password to rotate"},
		{"POST", "/api/v1/users/dev/rotate", `{"overlap": "soon"}`, 400, `overlap "soon" is not a duration`},
		{"POST", "/api/v1/users/dev/rotate", `{"overlap": "1h", "extra": 1}`, 400, `unknown field "extra"`},
		{"PATCH", "/api/v1/users/ghost", `{"enabled": "false"}`, 404, "no such user"},
		{"POST", "/api/v1/bans", `{"kind": "ip", "value": "300.1.2.3"}`, 400, "not an address or a CIDR"},
		{"POST", "/api/v1/explain", `{"user": "dev", "protocol": 9}`, 400, "protocol 9"},
		{"GET", "/api/v1/decisions?limit=x", ``, 400, `limit "x"`},
	} {
		s, b := f.json(c.method, c.path, c.body)
		if s != c.status || !strings.Contains(errorOf(b), c.want) {
			t.Errorf("%s %s %.60s: %d %s, want %d naming %q", c.method, c.path, c.body, s, b, c.status, c.want)
		}
	}
	if s, b := f.do("PUT", "/api/v1/users/dev", changeToken, "text/plain", []byte(`{"password": "pw"}`)); s != 415 || !strings.Contains(errorOf(b), "Content-Type: application/json") {
		t.Errorf("a body that is not JSON: %d %s", s, b)
	}
	if after := f.keys(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a refused request wrote:\nbefore %v\nafter  %v", before, after)
	}
}

// TestAPITokens: no token 401, an unknown one 401, a token in the URL
// 401 naming the header, the read token reads and gets 403 on a change,
// the change token does both; a path or method the API lacks answers a
// JSON 404 or 405.
func TestAPITokens(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		method, path, token string
		status              int
		want                string
	}{
		{"GET", "/api/v1/users", "", 401, "no token"},
		{"GET", "/api/v1/users", "wrong-token-0123456789", 401, "unknown token"},
		{"GET", "/api/v1/users?token=" + readToken, "", 401, "Authorization header only"},
		{"GET", "/api/v1/users", readToken, 200, ""},
		{"GET", "/api/v1/openapi.json", readToken, 200, ""},
		{"DELETE", "/api/v1/users/x", readToken, 403, "may only read"},
		{"POST", "/api/v1/users/x/kick", readToken, 403, "may only read"},
		{"GET", "/api/v1/nothing", readToken, 404, "no such endpoint"},
		{"POST", "/api/v1/users", changeToken, 405, "method not allowed"},
		{"GET", "/api/v1/users/ghost", changeToken, 404, "no such user"},
	} {
		s, b := f.do(c.method, c.path, c.token, "", nil)
		if s != c.status || !strings.Contains(errorOf(b), c.want) {
			t.Errorf("%s %s with %q: %d %s, want %d naming %q", c.method, c.path, c.token, s, b, c.status, c.want)
		}
	}
}

// TestAPIChangesAndTheirLog: every change answers what it did and is in
// the decision log with the token's fingerprint and the fields it wrote,
// never a password, a hash or a token; the rotation's answer alone
// carries the new password, once.
func TestAPIChangesAndTheirLog(t *testing.T) {
	f := newFixture(t)
	gen := passwords.HashGenerated(strings.Repeat("q", 26))
	steps := []struct {
		method, path, body string
		status             int
	}{
		{"PUT", "/api/v1/roles/fleet", `{"publish": "fleet/#"}`, 201},
		{"PATCH", "/api/v1/roles/fleet", `{"subscribe": "cmd/#"}`, 200},
		{"PUT", "/api/v1/users/dev", `{"password": "s3cret-pw", "roles": "fleet", "other": {"note": "rack 4"}}`, 201},
		{"PUT", "/api/v1/users/dev", `{"password_hash": "` + gen + `", "roles": "fleet"}`, 200},
		{"PATCH", "/api/v1/users/dev", `{"publish": "d/%u/#", "enabled": "true"}`, 200},
		{"POST", "/api/v1/users/dev/rotate", `{"overlap": "2h"}`, 200},
		{"POST", "/api/v1/users/dev/kick", ``, 200},
		{"POST", "/api/v1/sessions/kick", `{"user": "dev"}`, 200},
		{"POST", "/api/v1/bans", `{"kind": "clientid", "value": "bad-1", "for": "1h", "reason": "test"}`, 201},
		{"DELETE", "/api/v1/bans/clientid/bad-1", ``, 200},
		{"POST", "/api/v1/explain", `{"user": "dev", "password": "s3cret-pw", "publish": ["d/dev/x", "z"]}`, 200},
		{"DELETE", "/api/v1/roles/fleet", ``, 200},
		{"DELETE", "/api/v1/users/dev", ``, 200},
		{"POST", "/api/v1/tokens/revoke", `{"jti": "abc"}`, 501},
	}
	var rotated []byte
	for _, st := range steps {
		s, b := f.json(st.method, st.path, st.body)
		if s != st.status {
			t.Fatalf("%s %s: %d %s, want %d", st.method, st.path, s, b, st.status)
		}
		if strings.HasSuffix(st.path, "/rotate") {
			rotated = b
		}
	}
	var rot struct{ Password string }
	if json.Unmarshal(rotated, &rot); len(rot.Password) != 26 {
		t.Fatalf("rotation answer: %s", rotated)
	}
	changes := 0
	for _, r := range f.log.all() {
		if r.Kind != KindAdmin {
			continue
		}
		changes++
		for _, secret := range []string{"s3cret-pw", gen, rot.Password, changeToken, readToken} {
			if strings.Contains(r.Reason, secret) {
				t.Errorf("the decision log holds a secret: %+v", r)
			}
		}
		if !strings.Contains(r.Reason, "ADMIN_TOKEN sha256:") || r.Replica != "r1" || r.Remote != "127.0.0.1" {
			t.Errorf("entry without its token, replica or remote: %+v", r)
		}
	}
	if changes != 12 {
		t.Errorf("%d changes in the decision log, want 12: %+v", changes, f.log.all())
	}
	if rs := f.log.all(); !strings.Contains(rs[2].Reason, "user dev created (fields note, roles, password (plain, hashed))") {
		t.Errorf("the PUT's entry: %q", rs[2].Reason)
	}
}

// TestAPIStatusTable: every status the OpenAPI document lists is
// answered by some request, and every answer matched the document; Redis
// down is 503.
func TestAPIStatusTable(t *testing.T) {
	f := newFixture(t)
	f.json("PUT", "/api/v1/users/u1", `{"password": "pw"}`)                            // 201
	f.json("PUT", "/api/v1/users/u1", `{"password": "pw"}`)                            // 200
	f.json("PUT", "/api/v1/users/u1", `{`)                                             // 400
	f.do("GET", "/api/v1/users", "", "", nil)                                          // 401
	f.do("DELETE", "/api/v1/users/u1", readToken, "", nil)                             // 403
	f.json("GET", "/api/v1/roles/none", "")                                            // 404
	f.json("PUT", "/api/v1/users/u1", `{"publish": "`+strings.Repeat("x", 2<<20)+`"}`) // 413
	f.do("PUT", "/api/v1/users/u1", changeToken, "text/plain", []byte("{}"))           // 415
	f.json("PUT", "/api/v1/users/u1", `{"roles": "ghost"}`)                            // 422
	f.json("POST", "/api/v1/certs/revoke", `{"serial": "1f"}`)                         // 501
	for _, path := range []string{"/api/v1/users", "/api/v1/users/u1", "/api/v1/roles", "/api/v1/bans", "/api/v1/sessions", "/api/v1/decisions?since=1h"} {
		if s, b := f.do("GET", path, readToken, "", nil); s != 200 {
			t.Errorf("GET %s: %d %s", path, s, b)
		}
	}
	f.redis.Stop()
	if s, b := f.do("GET", "/api/v1/users/u1", readToken, "", nil); s != 503 || !strings.Contains(errorOf(b), "Redis") {
		t.Errorf("Redis down: %d %s", s, b)
	}
	f.check.Require(f.check.Statuses()...)
}
