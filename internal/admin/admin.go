// Package admin is the proxy's admin HTTP endpoint: /metrics (Prometheus),
// /healthz, /readyz and, when enabled, the status page (/status,
// /status.json) and Go's /debug/pprof/. It is given
// what it serves as values and functions (a metrics gatherer, probes, a
// logger) and knows nothing of the proxy's internals.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
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
}

// New returns the admin endpoint for o.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Server{mux: http.NewServeMux(), ready: newReadiness(o.Checks, ReadyInterval, o.Logger)}
	if o.Gatherer != nil {
		s.mux.Handle("/metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	}
	s.mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	s.mux.HandleFunc("/readyz", s.readyz)
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
	s.http = &http.Server{Handler: s.mux, ReadHeaderTimeout: 5 * time.Second}
	return s
}

// ServeHTTP serves the admin endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

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
