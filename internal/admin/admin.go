// Package admin is the proxy's admin HTTP endpoint: /metrics (Prometheus),
// /healthz, /readyz and, when enabled, the status page (/status,
// /status.json) and Go's /debug/pprof/. Without an admin token, every path
// but /metrics, /healthz and /readyz answers only a request whose Host is
// a loopback address or localhost (see Options.Token). It is given
// what it serves as values and functions (a metrics gatherer, probes, a
// logger) and knows nothing of the proxy's internals.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one dependency that /readyz reports on.
type Check struct {
	// Name is its key in /readyz's body ("redis", "backend").
	Name string
	// Target says what is probed (a redacted URL, an address). It goes to
	// the log when the probe fails, never into a response.
	Target string
	// Probe returns nil when the dependency is usable. It is called at
	// most once per ReadyInterval, with a context bounded by
	// ReadyProbeTimeout.
	Probe func(context.Context) error
}

// Options configure a Server.
type Options struct {
	Gatherer prometheus.Gatherer // served on /metrics; nil: no /metrics
	Checks   []Check             // /readyz's; none: /readyz is always 200
	Pprof    bool                // serve /debug/pprof/ (keep the listener private)
	Status   *StatusOptions      // serve /status and /status.json; nil: not served
	Logger   *slog.Logger        // nil: slog.Default()
	// Token is AUTHPROXY_ADMIN_TOKEN; Status.Token counts as one too.
	// Without a token, every path but /metrics, /healthz and /readyz
	// (the status page, pprof, any other path) answers only a request whose
	// Host header is a loopback literal (127.0.0.0/8, ::1, with or without
	// a port, IPv6 in brackets) or localhost, and 421 Misdirected Request
	// to any other before anything else: a web page the operator opens
	// cannot read them through DNS rebinding (a name of the attacker's that
	// resolves to 127.0.0.1, or to a kubectl port-forward, is in the Host
	// the browser sends). /metrics, /healthz and /readyz answer any Host:
	// Prometheus and the kubelet address the pod by its IP. With a token,
	// the Host is not checked (the status page checks the token).
	Token string
	// API, when set, is the admin API (internal/adminapi), served under
	// /api/v1/; it checks its own tokens.
	API http.Handler
}

// ReadyInterval: /readyz probes at most once per this interval; the
// requests in between (and the concurrent ones) get the last answer.
const ReadyInterval = 5 * time.Second

// ReadyProbeTimeout bounds one round of probes (the Kubernetes sample's
// readiness probe waits 6 s).
const ReadyProbeTimeout = 5 * time.Second

// Server is the admin endpoint. It is an http.Handler; Serve and Shutdown
// run it on a listener.
type Server struct {
	mux   *http.ServeMux
	ready *readiness
	http  *http.Server
	// loopbackHosts: no token is configured, so the paths not in anyHost
	// answer only a loopback Host.
	loopbackHosts bool
	// token is the SHA-256 of the admin token, when one is configured:
	// pprof then requires it (Authorization: Bearer).
	token *[sha256.Size]byte
}

// anyHost are the paths served whatever the request's Host.
var anyHost = map[string]bool{"/metrics": true, "/healthz": true, "/readyz": true}

// New returns the admin endpoint for o.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Token == "" && o.Status != nil {
		o.Token = o.Status.Token
	}
	s := &Server{mux: http.NewServeMux(), ready: newReadiness(o.Checks, ReadyInterval, o.Logger), loopbackHosts: o.Token == ""}
	if o.Token != "" {
		sum := sha256.Sum256([]byte(o.Token))
		s.token = &sum
	}
	if o.Gatherer != nil {
		s.mux.Handle("/metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	}
	s.mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	s.mux.HandleFunc("/readyz", s.readyz)
	if o.API != nil {
		s.mux.Handle("/api/v1/", o.API)
	}
	if o.Status != nil {
		h := newStatusHandler(*o.Status, s.ready)
		s.mux.HandleFunc("GET /status", h.page)
		s.mux.HandleFunc("GET /status.json", h.json)
	}
	if o.Pprof {
		s.mux.HandleFunc("/debug/pprof/", pprof.Index)
		s.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		s.mux.HandleFunc("/debug/pprof/heap", pprof.Index)
	}
	s.http = &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	return s
}

// ServeHTTP serves the admin endpoints: without a token, a path not in
// anyHost is answered 421 unless the request's Host is a loopback one.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.loopbackHosts && !anyHost[r.URL.Path] && !loopbackHost(r.Host) {
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "421 misdirected request: without AUTHPROXY_ADMIN_TOKEN this path answers only a Host that is a loopback address or localhost "+
			"(a defence against DNS rebinding): open it as http://127.0.0.1:<port>/ or http://localhost:<port>/ (kubectl port-forward included), "+
			"or set AUTHPROXY_ADMIN_TOKEN\n", http.StatusMisdirectedRequest)
		return
	}
	if s.token != nil && strings.HasPrefix(r.URL.Path, "/debug/pprof") && !bearer(r, s.token) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mqtt-authproxy pprof"`)
		http.Error(w, "401 unauthorized: send Authorization: Bearer <AUTHPROXY_ADMIN_TOKEN>\n", http.StatusUnauthorized)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// bearer reports whether r carries the token whose SHA-256 is sum in its
// Authorization header (compared in constant time, lengths included: both
// sides are hashed first).
func bearer(r *http.Request, sum *[sha256.Size]byte) bool {
	a := r.Header.Get("Authorization")
	if len(a) <= len("Bearer ") || !strings.EqualFold(a[:len("Bearer ")], "Bearer ") {
		return false
	}
	given := sha256.Sum256([]byte(a[len("Bearer "):]))
	return subtle.ConstantTimeCompare(given[:], sum[:]) == 1
}

// loopbackHost reports whether a Host header names this machine's
// loopback by a literal: an IP address in 127.0.0.0/8 or ::1 (an IPv6
// address in brackets, or bare), or localhost in any case; with or
// without a port. Another name, even one that resolves to 127.0.0.1, is
// not: that is what a DNS rebinding page sends.
func loopbackHost(h string) bool {
	host := h
	if hh, port, err := net.SplitHostPort(h); err == nil {
		if strings.Trim(port, "0123456789") != "" {
			return false
		}
		host = hh
	} else if len(h) > 2 && h[0] == '[' && h[len(h)-1] == ']' {
		host = h[1 : len(h)-1]
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Zone() == "" && ip.Unmap().IsLoopback()
}

// Serve serves on l until Shutdown, and then returns http.ErrServerClosed;
// any other error is the listener's. It closes l.
func (s *Server) Serve(l net.Listener) error {
	err := s.http.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return http.ErrServerClosed
	}
	return err
}

// Shutdown stops Serve at once and waits, until ctx ends, for the requests
// in progress; it returns ctx's error if they outlast it.
func (s *Server) Shutdown(ctx context.Context) error { return s.http.Shutdown(ctx) }

// readyz answers 200 when every check passes, else 503; the body says,
// for each, "ok" or "unavailable", nothing more (the details are logged).
// The checks run at most once per interval, whatever the requests: an
// unauthenticated GET must not turn into a broker login.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	status := s.ready.get(r.Context())
	w.Header().Set("Content-Type", "application/json")
	for _, v := range status {
		if v != ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			break
		}
	}
	_ = json.NewEncoder(w).Encode(status)
}
