package admin

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestLoopbackHostOnlyWithoutToken: without a token, the status page and
// pprof (and any other path but /metrics, /healthz and /readyz) answer
// only a Host that is a loopback literal or localhost, even on a loopback
// listener; any other Host (a DNS rebinding page's name for 127.0.0.1 or
// a port-forward) gets 421 with a plain text reason and no data.
// /metrics, /healthz and /readyz answer any Host.
func TestLoopbackHostOnlyWithoutToken(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := New(Options{Gatherer: reg, Pprof: true, Status: &StatusOptions{Source: sampleSource(), Replica: "r1"}})
	restricted := []string{"/status", "/status.json", "/status.json?user=alice", "/debug/pprof/", "/debug/pprof/heap", "/api/v1/users"}
	for _, host := range []string{
		"evil.example.com:9090", "evil.example.com", "EVIL.example.com:9090",
		"127.0.0.1.nip.io:9090", "localhost.evil.example.com:9090", "localhost.:9090", "localhost:http",
		"10.1.2.3:9090", "[fe80::1]:9090", "[::2]:9090", "127.1:9090", "0x7f000001:9090", "2130706433:9090", "[::1%25lo]:9090", "",
	} {
		for _, target := range restricted {
			rec := serve(h, request(target, loopback, "Host", host))
			body := rec.Body.String()
			if rec.Code != http.StatusMisdirectedRequest {
				t.Errorf("Host %q, %s: %d, want 421", host, target, rec.Code)
				continue
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Host %q, %s: Content-Type %q", host, target, ct)
			}
			if !strings.Contains(body, "DNS rebinding") || !strings.Contains(body, "AUTHPROXY_ADMIN_TOKEN") {
				t.Errorf("Host %q, %s: the 421 does not say why: %q", host, target, body)
			}
			if strings.Contains(body, "alice") || strings.Contains(body, "10.0.0.7") || strings.Contains(body, "goroutine") {
				t.Errorf("Host %q, %s: the 421 shows data: %q", host, target, body)
			}
		}
	}
	for _, host := range []string{
		"127.0.0.1:9090", "127.0.0.1", "127.8.9.10:9090", "[::1]:9090", "[::1]", "::1",
		"localhost:9090", "localhost", "LocalHost:9090", "[::ffff:127.0.0.1]:9090",
	} {
		for _, target := range []string{"/status", "/status.json", "/debug/pprof/"} {
			if rec := serve(h, request(target, loopback, "Host", host)); rec.Code != http.StatusOK {
				t.Errorf("Host %q, %s: %d, want 200", host, target, rec.Code)
			}
		}
		// Unknown paths keep their 404 on a loopback Host.
		if rec := serve(h, request("/nothing", loopback, "Host", host)); rec.Code != http.StatusNotFound {
			t.Errorf("Host %q, /nothing: %d, want 404", host, rec.Code)
		}
	}
	// The listener check stays: a loopback Host on a public listener is 401.
	if rec := serve(h, request("/status.json", public, "Host", "127.0.0.1:9090")); rec.Code != http.StatusUnauthorized {
		t.Errorf("loopback Host on a public listener: %d, want 401", rec.Code)
	}
	for _, target := range []string{"/metrics", "/healthz", "/readyz"} {
		for _, local := range []net.Addr{loopback, public} {
			if rec := serve(h, request(target, local, "Host", "evil.example.com:9090")); rec.Code != http.StatusOK {
				t.Errorf("%s with Host evil.example.com:9090 on %v: %d, want 200", target, local, rec.Code)
			}
		}
		if rec := serve(h, request(target, public, "Host", "10.1.2.3:9090")); rec.Code != http.StatusOK {
			t.Errorf("%s with the pod's address as Host: %d, want 200", target, rec.Code)
		}
	}
}

// TestTokenGovernsWhateverTheHost: with a token (the status page's or
// the admin one), the Host is not checked: the token decides, as before.
func TestTokenGovernsWhateverTheHost(t *testing.T) {
	for name, o := range map[string]Options{
		"status token": {Pprof: true, Status: &StatusOptions{Source: sampleSource(), Replica: "r1", Token: testToken}},
		"admin token":  {Pprof: true, Token: testToken, Status: &StatusOptions{Source: sampleSource(), Replica: "r1", Token: testToken}},
	} {
		h := New(o)
		// With a token, pprof requires it too.
		for header, want := range map[string]int{"": 401, "Bearer wrong": 401, "Bearer " + testToken: 200} {
			if rec := serve(h, request("/debug/pprof/", public, "Host", "10.1.2.3:9090", "Authorization", header)); rec.Code != want {
				t.Errorf("%s: pprof with %q: %d, want %d", name, header, rec.Code, want)
			}
		}
		for _, c := range []struct {
			host   string
			local  net.Addr
			header []string
			want   int
		}{
			{"evil.example.com:9090", loopback, []string{"Authorization", "Bearer " + testToken}, 200},
			{"evil.example.com:9090", public, []string{"Authorization", "Bearer " + testToken}, 200},
			{"status.internal.example:9090", public, []string{"Authorization", "Bearer " + testToken}, 200},
			{"evil.example.com:9090", loopback, nil, 401},
			{"127.0.0.1:9090", loopback, nil, 401},
			{"evil.example.com:9090", loopback, []string{"Authorization", "Bearer wrong"}, 401},
		} {
			rec := serve(h, request("/status.json", c.local, append([]string{"Host", c.host}, c.header...)...))
			if rec.Code != c.want {
				t.Errorf("%s: Host %q on %v, header %q: %d, want %d", name, c.host, c.local, c.header, rec.Code, c.want)
			}
		}
	}
}

// TestLoopbackHostOnServe: the check is the Server's, on Serve's requests
// too: over a real loopback listener, a request whose Host header is
// another name gets 421, one with the listener's address 200.
func TestLoopbackHostOnServe(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{Pprof: true, Status: &StatusOptions{Source: sampleSource(), Replica: "r1"}})
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	defer func() {
		_ = s.Shutdown(context.Background())
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	}()
	for _, c := range []struct {
		host, path string
		want       int
	}{
		{"evil.example.com:" + port(l), "/status.json", 421},
		{"evil.example.com:" + port(l), "/debug/pprof/", 421},
		{"evil.example.com:" + port(l), "/healthz", 200},
		{l.Addr().String(), "/status.json", 200},
		{"localhost:" + port(l), "/debug/pprof/", 200},
	} {
		req, err := http.NewRequest(http.MethodGet, "http://"+l.Addr().String()+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = c.host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("Host %s, %s: %d %q, want %d", c.host, c.path, resp.StatusCode, body, c.want)
		}
	}
}

func port(l net.Listener) string {
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p
}
