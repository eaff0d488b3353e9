package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/passwords"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/adminapi"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/adminapi/apitest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/pki"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

const (
	apiToken     = "api-change-token-0123456789"
	apiReadToken = "api-read-token-0123456789"
)

// httpClient trusts ca (the admin listener's certificate).
func httpClient(ca *pki.CA) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
}

// apiClient drives the admin API over HTTPS with Go's net/http or with
// curl, and checks every answer against the OpenAPI document.
type apiClient struct {
	t      *testing.T
	base   string
	http   *http.Client
	caFile string
	check  *apitest.Checker
}

func (c *apiClient) do(method, path, token, contentType string, body []byte) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	c.check.Check(method, c.base+path, resp.StatusCode, resp.Header, b)
	return resp.StatusCode, b
}

func (c *apiClient) json(method, path, body string) (int, []byte) {
	c.t.Helper()
	return c.do(method, path, apiToken, "application/json", []byte(body))
}

// curl sends a request with curl: the token from a header file, the body
// (if any) on standard input, nothing secret in its arguments.
func (c *apiClient) curl(method, path, token, body string) (int, []byte) {
	c.t.Helper()
	dir := c.t.TempDir()
	hdr := filepath.Join(dir, "headers")
	_ = os.WriteFile(hdr, []byte("Authorization: Bearer "+token+"\nContent-Type: application/json\n"), 0o600)
	out := filepath.Join(dir, "body")
	args := []string{"-sS", "--cacert", c.caFile, "-X", method, "-H", "@" + hdr, "-o", out, "-w", "%{http_code}", c.base + path}
	if body != "" {
		args = append(args, "--data-binary", "@-")
	}
	cmd := exec.Command(testenv.LookPath(c.t, "curl"), args...)
	cmd.Stdin = strings.NewReader(body)
	code, err := cmd.Output()
	if err != nil {
		c.t.Fatalf("curl %s %s: %v", method, path, err)
	}
	status, _ := strconv.Atoi(string(code))
	b, _ := os.ReadFile(out)
	c.check.Check(method, c.base+path, status, http.Header{"Content-Type": []string{"application/json"}}, b)
	return status, b
}

// TestAdminAPIEndToEnd: the admin API of a running proxy, over TLS,
// driven by Go's net/http and by curl: users created, changed and rotated
// reach CONNECTs; the live sessions of the replica are listed and kicked;
// every status of the API's table is answered, and every answer matches
// the OpenAPI document; the status page takes the read token alone in its
// URL; without TLS on a non-loopback listener the API refuses to start.
func TestAdminAPIEndToEnd(t *testing.T) {
	rs := testenv.Redis(t)
	broker := testenv.Mosquitto(t, testenv.MosquittoOptions{})
	f, ca, _ := certs(t)
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	admin := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	env := map[string]string{
		"AUTHPROXY_TLS_CERT_FILE": f.ServerCert, "AUTHPROXY_TLS_KEY_FILE": f.ServerKey, "AUTHPROXY_LISTEN": listen,
		"AUTHPROXY_BACKEND_ADDR": broker.Addr(), "AUTHPROXY_REDIS_URL": testenv.RedisURL(rs), "AUTHPROXY_METRICS_LISTEN": admin,
		"AUTHPROXY_ADMIN_API": "true", "AUTHPROXY_ADMIN_TOKEN": apiToken, "AUTHPROXY_ADMIN_READ_TOKEN": apiReadToken,
		"AUTHPROXY_ADMIN_TLS_CERT_FILE": f.ServerCert, "AUTHPROXY_ADMIN_TLS_KEY_FILE": f.ServerKey, "AUTHPROXY_STATUS": "true",
		"AUTHPROXY_LOG_FORMAT": "json",
	}
	p := startBin(t, env, "serve")
	base := "https://" + admin
	waitReady(t, base+"/healthz", ca)
	c := &apiClient{t: t, base: base, http: httpClient(ca), caFile: f.CA, check: apitest.New(t, adminapi.OpenAPI)}
	tlsCfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
	if r := runBin(t, env, "", "healthcheck"); r.code != 0 {
		t.Fatalf("healthcheck over TLS: %+v", r)
	}

	// Roles and users through the API (curl and net/http), used by CONNECTs.
	if s, b := c.curl("PUT", "/api/v1/roles/fleet", apiToken, `{"publish": "fleet/#"}`); s != 201 {
		t.Fatalf("curl PUT role: %d %s", s, b)
	}
	if s, b := c.curl("PUT", "/api/v1/users/dev-1", apiToken, `{"password": "first-pw", "roles": "fleet", "publish": "devices/%u/#"}`); s != 201 {
		t.Fatalf("curl PUT user: %d %s", s, b)
	}
	dev, ack := dialMQTT(t, listen, tlsCfg, mqtttest.Creds(packets.V5, "dev-1", "dev-1", "first-pw"))
	if ack.Code != 0 {
		t.Fatalf("a user the API created: 0x%02X", ack.Code)
	}
	if s, b := c.json("PATCH", "/api/v1/users/dev-1", `{"clientids": "dev-1 dev-1:*"}`); s != 200 {
		t.Fatalf("PATCH: %d %s", s, b)
	}
	var sessions adminapi.Sessions
	testenv.WaitFor(t, 10*time.Second, "the session listed", func() bool {
		_, b := c.do("GET", "/api/v1/sessions?user=dev-1", apiReadToken, "", nil)
		return json.Unmarshal(b, &sessions) == nil && len(sessions.Sessions) == 1
	})
	if s := sessions.Sessions[0]; s.ClientID != "dev-1" || s.Credential != "password" || s.Replica == "" || s.TLS != "TLS 1.3" {
		t.Fatalf("the listed session: %+v", s)
	}
	if s, b := c.curl("POST", "/api/v1/sessions/kick", apiToken, `{"user": "dev-1"}`); s != 200 || !strings.Contains(string(b), `"proxies":1`) {
		t.Fatalf("kick: %d %s", s, b)
	}
	if h, pkt, err := dev.ReadPacket(5 * time.Second); err != nil || h.Type != packets.DISCONNECT || pkt[2] != 0x98 {
		t.Fatalf("the kicked session: %v %x", err, pkt)
	}
	s, b := c.json("POST", "/api/v1/users/dev-1/rotate", `{"overlap": "1h"}`)
	var rot struct{ Password string }
	if s != 200 || json.Unmarshal(b, &rot) != nil || len(rot.Password) != 26 {
		t.Fatalf("rotate: %d %s", s, b)
	}
	for pw, want := range map[string]byte{rot.Password: 0, "first-pw": 0, "wrong": 0x86} {
		if _, ack := dialMQTT(t, listen, tlsCfg, mqtttest.Creds(packets.V5, "dev-1:x", "dev-1", pw)); ack.Code != want {
			t.Errorf("after the rotation, a CONNECT with a password: 0x%02X, want 0x%02X", ack.Code, want)
		}
	}
	var x struct {
		Allowed     bool   `json:"allowed"`
		PasswordOld string `json:"password_old"`
	}
	if s, b := c.curl("POST", "/api/v1/explain", apiReadToken, `{"user": "dev-1", "client_id": "dev-1:y", "password": "first-pw"}`); s != 200 ||
		json.Unmarshal(b, &x) != nil || !x.Allowed || !strings.Contains(x.PasswordOld, "still use the old password") {
		t.Fatalf("explain: %d %s", s, b)
	}

	// Every status of the table.
	c.do("GET", "/api/v1/users", "", "", nil)                                                           // 401
	c.curl("DELETE", "/api/v1/users/dev-1", apiReadToken, "")                                           // 403
	c.json("GET", "/api/v1/users/nobody", "")                                                           // 404
	c.json("POST", "/api/v1/users", `{}`)                                                               // 405
	c.json("PUT", "/api/v1/users/x", `{"password": "`+strings.Repeat("p", 10<<20)+`"}`)                 // 413
	c.do("PUT", "/api/v1/users/x", apiToken, "application/x-www-form-urlencoded", []byte("password=x")) // 415
	c.curl("PUT", "/api/v1/users/dev-2", apiToken, `{"password": "x", "roles": "ghost"}`)               // 422
	c.curl("PUT", "/api/v1/users/dev-2", apiToken, `{"password": "x", "rolez": "fleet"}`)               // 400
	c.json("POST", "/api/v1/bans", `{"kind": "user", "value": "mallory", "for": "1h"}`)                 // 201
	c.json("POST", "/api/v1/certs/revoke", `{"serial": "1f2a"}`)                                        // 201
	for _, path := range []string{"/api/v1/users/dev-1", "/api/v1/roles", "/api/v1/bans", "/api/v1/decisions?user=dev-1&limit=50", "/api/v1/openapi.json"} {
		if s, b := c.do("GET", path, apiReadToken, "", nil); s != 200 {
			t.Errorf("GET %s: %d %s", path, s, b)
		}
	}
	var ds adminapi.Decisions
	_, b = c.do("GET", "/api/v1/decisions?limit=200", apiReadToken, "", nil)
	if json.Unmarshal(b, &ds) != nil || !hasAdminEntry(ds, "PUT user dev-1 created") || !hasAdminEntry(ds, "POST user dev-1 rotated") {
		t.Errorf("the decision log lacks the API's changes: %s", b)
	}

	// The status page: the read token in its URL, never the change token.
	for token, want := range map[string]int{apiReadToken: 200, apiToken: 401} {
		resp, err := c.http.Get(base + "/status.json?user=dev-1&token=" + token)
		if err != nil {
			t.Fatal(err)
		}
		sb, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || (want == 200 && !strings.Contains(string(sb), "still use the old password")) {
			t.Errorf("/status.json?token=: %d %s, want %d", resp.StatusCode, sb, want)
		}
	}

	rs.Stop()
	c.do("GET", "/api/v1/users/dev-1", apiReadToken, "", nil) // 503
	c.check.Require(200, 201, 400, 401, 403, 404, 405, 413, 415, 422, 503)
	for _, secret := range []string{"first-pw", rot.Password, apiToken, apiReadToken} {
		if strings.Contains(p.stderr.String(), secret) {
			t.Fatal("a password or a token is in the proxy's log")
		}
	}

	// The API refuses to start on a listener that is not loopback
	// without TLS.
	bad := map[string]string{"AUTHPROXY_BACKEND_ADDR": "127.0.0.1:1", "AUTHPROXY_LISTEN": "off", "AUTHPROXY_PLAIN_LISTEN": "127.0.0.1:0",
		"AUTHPROXY_METRICS_LISTEN": "0.0.0.0:0", "AUTHPROXY_ADMIN_API": "true", "AUTHPROXY_ADMIN_TOKEN": apiToken}
	if r := runBin(t, bad, "", "serve"); r.code != 2 || !strings.Contains(r.stderr, "AUTHPROXY_ADMIN_TLS_CERT_FILE: and AUTHPROXY_ADMIN_TLS_KEY_FILE are required") {
		t.Fatalf("ADMIN_API on 0.0.0.0 without TLS: %+v", r)
	}
}

// hasAdminEntry: the log holds an admin API change whose reason says what.
func hasAdminEntry(ds adminapi.Decisions, what string) bool {
	for _, d := range ds.Decisions {
		if d.Kind == adminapi.KindAdmin && strings.Contains(d.Reason, what) {
			return true
		}
	}
	return false
}

// TestAdminAPISoak: concurrent API writes of a user, replacing it whole
// with one of two records, while devices CONNECT with every pairing of
// the two records' passwords and client ids: no decision ever sees half
// a user (a password of one record with the client id of the other is
// never accepted), and each record's own pairing is accepted. It runs 3 s;
// LIFECYCLE_SOAK=30s runs it longer.
func TestAdminAPISoak(t *testing.T) {
	soak := 3 * time.Second
	if v := os.Getenv("LIFECYCLE_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("LIFECYCLE_SOAK=%q: %v", v, err)
		}
		soak = d
	}
	env, listen, tlsCfg, _, ca := lifecycleProxy(t, map[string]string{"AUTHPROXY_ADMIN_API": "true", "AUTHPROXY_ADMIN_TOKEN": apiToken,
		"AUTHPROXY_AUTH_FAIL_LIMIT_USER": "0", "AUTHPROXY_AUTH_FAIL_LIMIT_IP": "0"}, true)
	c := &apiClient{t: t, base: "https://" + env["AUTHPROXY_METRICS_LISTEN"], http: httpClient(ca), check: apitest.New(t, adminapi.OpenAPI)}
	const secretA, secretB = "soak-secret-of-record-a-0123456789", "soak-secret-of-record-b-0123456789"
	records := [2]string{ // generated-format hashes: verifying costs microseconds, so CONNECTs and writes interleave densely
		fmt.Sprintf(`{"password_hash": %q, "clientids": "client-a", "publish": "a/#"}`, passwords.HashGenerated(secretA)),
		fmt.Sprintf(`{"password_hash": %q, "clientids": "client-b", "publish": "b/#"}`, passwords.HashGenerated(secretB)),
	}
	if s, b := c.json("PUT", "/api/v1/users/soak", records[0]); s != 201 {
		t.Fatalf("create: %d %s", s, b)
	}
	deadline := time.Now().Add(soak)
	var wg sync.WaitGroup
	var writes, connects, accepted, mixed atomic.Int64
	for w := range 2 {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				if s, b := c.json("PUT", "/api/v1/users/soak", records[(w+i)%2]); s != 200 {
					t.Errorf("PUT: %d %s", s, b)
					return
				}
				writes.Add(1)
			}
		})
	}
	pairs := [4][2]string{{secretA, "client-a"}, {secretB, "client-b"}, {secretA, "client-b"}, {secretB, "client-a"}}
	for d := range 4 {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				p := pairs[(d+i)%4]
				conn, err := tls.Dial("tcp", listen, tlsCfg)
				if err != nil {
					t.Error(err)
					return
				}
				_, ack, err := mqtttest.Connect(conn, mqtttest.Creds(packets.V311, p[1], "soak", p[0]))
				conn.Close()
				connects.Add(1)
				switch {
				case err != nil:
					t.Errorf("CONNECT: %v", err)
					return
				case ack.Code == 0 && (d+i)%4 >= 2:
					mixed.Add(1)
				case ack.Code == 0:
					accepted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%v: %d whole writes, %d CONNECTs, %d accepted with one record's pairing, %d with a mix", soak, writes.Load(), connects.Load(), accepted.Load(), mixed.Load())
	if mixed.Load() != 0 {
		t.Fatalf("%d CONNECTs were accepted with half of one record and half of the other", mixed.Load())
	}
	if writes.Load() < 10 || accepted.Load() < 10 {
		t.Fatalf("too little happened: %d writes, %d accepted", writes.Load(), accepted.Load())
	}
}
