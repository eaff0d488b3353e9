package tokens

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
)

// jwksServer is a JWKS served over real HTTPS, whose content and answer the
// test changes.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	body    string
	status  int
	gets    atomic.Int64
	handler func(w http.ResponseWriter, r *http.Request) bool // true: answered
}

func newJWKSServer(t *testing.T, body string) (*jwksServer, string) {
	s := &jwksServer{body: body, status: http.StatusOK}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.gets.Add(1)
		s.mu.Lock()
		body, status, h := s.body, s.status, s.handler
		s.mu.Unlock()
		if h != nil && h(w, r) {
			return
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(s.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	return s, writeFile(t, "ca.pem", string(ca))
}

func (s *jwksServer) serve(body string, status int) {
	s.mu.Lock()
	s.body, s.status = body, status
	s.mu.Unlock()
}

func urlYAML(iss, url, ca string) string {
	return fmt.Sprintf("issuers:\n  - issuer: %s\n    jwks_url: %s\n    ca_file: %s\n    audience: mqtt\n    refresh: 30s\n", iss, url, ca)
}

// TestJWKSOverHTTPSWithRotation: the keys come from a JWKS served over
// HTTPS (verified with the issuer's ca_file); the issuer rotates to a new
// key, and its first token, with a kid not yet held, makes the keys be
// read again at once; a failed read keeps the keys held, counted; an
// unknown kid asks at most every 30 s.
func TestJWKSOverHTTPSWithRotation(t *testing.T) {
	k1, k2 := keyFile(t, "p256"), keyFile(t, "rsa")
	srv, ca := newJWKSServer(t, jwksOf(t, jwksKey{PEM: k1, KID: "k1"}))
	v := newVerifier(t, urlYAML("R", srv.URL+"/jwks", ca), Options{})
	waitReady(t, v)
	ctx := context.Background()
	if _, err := v.VerifyIssued(ctx, token(t, "ES256", k1, claims("R", "mqtt", "a", nil), map[string]any{"kid": "k1"})); err != nil {
		t.Fatal(err)
	}
	// Rotation: the JWKS holds k2 (and still k1) before the first k2 token.
	srv.serve(jwksOf(t, jwksKey{PEM: k2, KID: "k2"}, jwksKey{PEM: k1, KID: "k1"}), http.StatusOK)
	before := srv.gets.Load()
	start := time.Now()
	if _, err := v.VerifyIssued(ctx, token(t, "RS256", k2, claims("R", "mqtt", "a", nil), map[string]any{"kid": "k2"})); err != nil {
		t.Fatalf("first token of the new key: %v", err)
	}
	if srv.gets.Load() != before+1 || time.Since(start) > 5*time.Second {
		t.Fatalf("the unknown kid read the JWKS %d times", srv.gets.Load()-before)
	}
	// A kid nobody has: refused, and the JWKS is not read again within 30 s.
	_, err := v.VerifyIssued(ctx, token(t, "ES256", k1, claims("R", "mqtt", "a", nil), map[string]any{"kid": "nobody"}))
	refusedFor(t, err, CauseUnknownKey)
	if srv.gets.Load() != before+1 {
		t.Fatalf("an unknown kid within 30 s read the JWKS again")
	}
	// The issuer's JWKS fails: the keys held keep verifying; the failure
	// is counted and shown.
	srv.serve("oops", http.StatusInternalServerError)
	is := v.set.Load().byIss["R"]
	if err := is.src.read(ctx); err == nil {
		t.Fatal("a read of an HTTP 500 succeeded")
	}
	if _, err := v.VerifyIssued(ctx, token(t, "RS256", k2, claims("R", "mqtt", "a", nil), map[string]any{"kid": "k2"})); err != nil {
		t.Fatalf("after a failed read: %v", err)
	}
	st := v.States()
	if st[0].FetchFailures != 1 || !strings.Contains(st[0].LastError, "500") || st[0].Keys != 2 {
		t.Fatalf("states %+v", st)
	}
}

// TestJWKSURLThatHangsOrFloods: a JWKS URL that never answers, or serves
// 100 MiB, never loads (and /readyz says so), costs a bounded read, and a
// token of that issuer is refused at once, never waiting on it.
func TestJWKSURLThatHangsOrFloods(t *testing.T) {
	k := keyFile(t, "p256")
	hang, caH := newJWKSServer(t, "")
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	hang.handler = func(w http.ResponseWriter, r *http.Request) bool {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return true
	}
	flood, caF := newJWKSServer(t, "")
	var sent atomic.Int64
	flood.handler = func(w http.ResponseWriter, r *http.Request) bool {
		chunk := []byte(`{"keys":[` + strings.Repeat(" ", 64<<10))
		for i := 0; i < 100*16; i++ { // 100 MiB
			n, err := w.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				break
			}
			chunk = []byte(strings.Repeat(" ", 64<<10))
		}
		return true
	}
	yaml := urlYAML("H", hang.URL, caH) + strings.TrimPrefix(urlYAML("F", flood.URL, caF), "issuers:\n")
	v := newVerifier(t, yaml, Options{})
	testenv.WaitFor(t, 15*time.Second, "the flood's read to fail", func() bool { return v.States()[1].FetchFailures > 0 })
	if err := v.Ready(); err == nil || !strings.Contains(err.Error(), "H (") || !strings.Contains(err.Error(), "F (") {
		t.Fatalf("Ready with keys never loaded: %v", err)
	}
	if got := v.States()[1].LastError; !strings.Contains(got, "more than") {
		t.Fatalf("the flood's error: %q", got)
	}
	if sent.Load() >= 100<<20 {
		t.Fatalf("the whole 100 MiB was read")
	}
	for _, iss := range []string{"H", "F"} {
		start := time.Now()
		_, err := v.VerifyIssued(context.Background(), token(t, "ES256", k, claims(iss, "mqtt", "a", nil), map[string]any{"kid": "x"}))
		refusedFor(t, err, CauseNoKeys)
		if d := time.Since(start); d > time.Second {
			t.Fatalf("%s: refused after %v", iss, d)
		}
	}
}

// TestBoundedTokens: a 64 KiB token, a token of 10,000 claims, deeply
// nested JSON and base64 garbage are refused as malformed, each with a
// bounded allocation.
func TestBoundedTokens(t *testing.T) {
	k := keyFile(t, "p256")
	v := newVerifier(t, issuerYAML("B", writeFile(t, "j.json", jwksOf(t, jwksKey{PEM: k, KID: "k"})), "mqtt", "redis", ""), Options{})
	waitReady(t, v)
	header := b64([]byte(`{"alg":"ES256","kid":"k"}`))
	many := map[string]any{}
	for i := range 10000 {
		many[fmt.Sprintf("c%d", i)] = i
	}
	deep := `{"iss":"B","x":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`
	cases := map[string]string{
		"64 KiB":          header + "." + b64([]byte(`{"iss":"B","pad":"`+strings.Repeat("a", 64<<10)+`"}`)) + ".c2ln",
		"10,000 claims":   token(t, "ES256", k, claims("B", "mqtt", "a", many), map[string]any{"kid": "k"}),
		"deep JSON":       header + "." + b64([]byte(deep)) + ".c2ln",
		"base64 garbage":  "eyJ" + strings.Repeat("!@#$", 100) + ".eyJ.x",
		"garbage base64":  header + ".eyJpc3MiOiJCIn0" + strings.Repeat("A", 3) + ".%%%%",
		"header not JSON": b64([]byte("{nope")) + "." + b64([]byte(`{"iss":"B"}`)) + ".c2ln",
	}
	for name, tok := range cases {
		var m1, m2 runtime.MemStats
		runtime.ReadMemStats(&m1)
		const n = 20
		for range n {
			_, err := v.VerifyIssued(context.Background(), tok)
			if err == nil {
				t.Fatalf("%s: accepted", name)
			}
		}
		runtime.ReadMemStats(&m2)
		if per := (m2.TotalAlloc - m1.TotalAlloc) / n; per > 2<<20 {
			t.Errorf("%s: %d bytes allocated per refusal", name, per)
		}
		if v.IssuerOf(tok) != "" && len(tok) > MaxTokenBytes {
			t.Errorf("%s: a token of %d bytes was read", name, len(tok))
		}
	}
	if v.IssuerOf(cases["deep JSON"]) != "B" {
		t.Fatalf("the deep token is one of B's, refused by its parser")
	}
}

// TestIssuersFileReloads: the issuers file is read again when it changes
// (and on Reload, what SIGHUP calls): a new issuer is listed and its keys
// read; a file that no longer parses keeps the issuers held; an issuer
// whose keys are read the same way keeps them.
func TestIssuersFileReloads(t *testing.T) {
	k := keyFile(t, "p256")
	jwks := writeFile(t, "j.json", jwksOf(t, jwksKey{PEM: k, KID: "k"}))
	file := writeFile(t, "issuers.yaml", issuerYAML("A", jwks, "mqtt", "redis", ""))
	v := newVerifier(t, "", Options{File: file, WatchInterval: 20 * time.Millisecond})
	waitReady(t, v)
	srcA := v.set.Load().byIss["A"].src
	both := issuerYAML("A", jwks, "mqtt", "redis", "") + "  - issuer: B\n    jwks_file: " + jwks + "\n    audience: mqtt\n"
	if err := os.WriteFile(file, []byte(both), 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "issuer B listed", func() bool { return v.Listed("B") })
	waitReady(t, v)
	if v.set.Load().byIss["A"].src != srcA {
		t.Fatal("A's key source was replaced though its keys are read the same way")
	}
	if _, err := v.VerifyIssued(context.Background(), token(t, "ES256", k, claims("B", "mqtt", "x", nil), map[string]any{"kid": "k"})); err != nil {
		t.Fatalf("a token of the new issuer: %v", err)
	}
	if err := os.WriteFile(file, []byte("issuers: [nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := v.Reload(); err == nil {
		t.Fatal("a file that does not parse was loaded")
	}
	if !v.Listed("A") || !v.Listed("B") {
		t.Fatal("a bad file dropped the issuers held")
	}
}
