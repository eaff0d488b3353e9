package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/proxy"
)

const serveUsage = `Usage: mqtt-authproxy [serve]

Runs the proxy. All configuration comes from AUTHPROXY_* environment
variables (see README.md). SIGTERM or SIGINT shuts down gracefully
(AUTHPROXY_SHUTDOWN_GRACE); SIGHUP reloads the TLS certificate, key and
client CA files.
`

func cmdServe(args []string, io stdio) error {
	fs := newFlags("serve", serveUsage, io)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("serve takes no arguments, got %q", fs.Args())
	}
	cfg, settings, err := serveConfigFromEnv()
	if err != nil {
		return err
	}
	log := newLogger(io.err, cfg.LogFormat, cfg.LogLevel)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv, err := startServer(cfg, settings, log)
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			if err := srv.proxy.ReloadCertificates(); err != nil {
				log.Error("SIGHUP: certificates not reloaded; keeping the previous ones", "error", err)
			} else {
				log.Info("SIGHUP: certificates reloaded")
			}
		case <-ctx.Done():
			log.Info("shutting down", "grace", cfg.ShutdownGrace)
			srv.stop()
			log.Info("stopped")
			return nil
		}
	}
}

// server is a running proxy with its store and metrics endpoint.
type server struct {
	proxy   *proxy.Proxy
	store   *authstore.Store
	rdb     redis.UniversalClient
	http    *http.Server
	httpLn  net.Listener
	backend proxy.Backend
	ready   *readiness
	log     *slog.Logger

	stopFollow func()
}

// revalidateInterval maps the variable (0: off) to proxy.Config (negative: off).
func revalidateInterval(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// startServer wires the store, the proxy and the metrics endpoint and opens
// the listeners. Failing to open one is a runtime failure.
func startServer(cfg Config, s serveSettings, log *slog.Logger) (*server, error) {
	rdb, err := authstore.NewClient(cfg.RedisURL)
	if err != nil {
		return nil, cfgErr("REDIS_URL", "%v", err)
	}
	store := authstore.New(rdb, authstore.Options{Prefix: cfg.RedisKeyPrefix, Timeout: cfg.RedisTimeout, Logger: log,
		ClientIDsDefault: strings.Fields(cfg.ClientIDsDefault)})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := proxy.NewMetrics(reg)
	p, err := proxy.New(proxy.Config{
		Listen: cfg.Listen, TLS: s.tls, PlainListen: cfg.PlainListen,
		Backend: s.backend, Auth: store,
		ConnectTimeout: cfg.ConnectTimeout, HandshakeTimeout: cfg.HandshakeTimeout, MaxConnectBytes: cfg.MaxConnectBytes,
		MaxConnections: cfg.MaxConnections, MaxPending: cfg.MaxPending,
		ShutdownGrace: cfg.ShutdownGrace, Logger: log, Metrics: metrics,
		RevalidateInterval: revalidateInterval(cfg.RevalidateInterval),
	})
	if err != nil {
		rdb.Close()
		return nil, err
	}
	srv := &server{proxy: p, store: store, rdb: rdb, backend: s.backend, log: log}
	srv.ready = &readiness{interval: readyInterval, log: log, redisURL: authstore.RedactURL(cfg.RedisURL), backendAddr: s.backend.Addr,
		pingRedis: store.Ping, probeBackend: s.backend.Probe}
	// Rule changes close live connections that are no longer allowed.
	followCtx, cancelFollow := context.WithCancel(context.Background())
	followDone, checkDone := make(chan struct{}), make(chan struct{})
	go func() { _ = p.Follow(followCtx, store); close(followDone) }()
	go func() { srv.checkNotifications(followCtx, cfg.RevalidateInterval); close(checkDone) }()
	srv.stopFollow = func() { cancelFollow(); <-followDone; <-checkDone }
	if cfg.MetricsListen != "" {
		srv.httpLn, err = net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			rdb.Close()
			p.Shutdown(context.Background())
			return nil, fmt.Errorf("metrics listener %s%s=%s: %w", envPrefix, "METRICS_LISTEN", cfg.MetricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
		mux.HandleFunc("/readyz", srv.readyz)
		if cfg.Pprof {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/heap", pprof.Index)
		}
		srv.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.http.Serve(srv.httpLn) }()
		log.Info("metrics and health", "addr", srv.httpLn.Addr().String())
	}
	if err := p.ListenAndServe(); err != nil {
		srv.stop()
		return nil, err
	}
	return srv, nil
}

// readyz answers 200 when Redis answers and the broker accepts a
// connection (a real CONNECT when backend credentials are set), else 503;
// the body says which part is "ok" or "unavailable", nothing more (the
// details are logged). Redis and the broker are asked at most once per
// readyInterval, whatever the requests: an unauthenticated GET must not
// turn into a broker login.
func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	status := s.ready.get(r.Context())
	w.Header().Set("Content-Type", "application/json")
	if status["redis"] != "ok" || status["backend"] != "ok" {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(status)
}

// checkNotifications reads Redis's notify-keyspace-events at start and
// says in the log what a missing class costs: changes made with plain
// redis-cli (or a hash reaching its EXPIRE time) then reach live
// connections only at the periodic re-validation.
func (s *server) checkNotifications(ctx context.Context, revalidate time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	missing, err := s.store.CheckNotifications(ctx)
	if ctx.Err() != nil && err != nil {
		return // stopping, or Redis never answered: the other logs say so
	}
	want := authstore.NotifyFlags
	switch {
	case err != nil:
		s.log.Info("Redis keyspace notifications could not be checked (CONFIG GET not allowed?); set notify-keyspace-events "+want+
			" on every Redis node so that redis-cli changes and expiries reach live connections at once", "error", err)
	case missing != "":
		var lost []string
		for _, f := range missing {
			lost = append(lost, notifyClassCost[f])
		}
		every := "off: never"
		if revalidate > 0 {
			every = revalidate.String()
		}
		s.log.Warn("Redis keyspace notifications incomplete: these changes reach live connections only at the periodic re-validation; set notify-keyspace-events "+want,
			"missing", missing, "unseen", strings.Join(lost, "; "), "revalidate_interval", every)
	default:
		s.log.Info("Redis keyspace notifications on", "need", want)
	}
}

// notifyClassCost says what goes unseen without a notify-keyspace-events class.
var notifyClassCost = map[rune]string{
	'K': "K: no keyspace notification at all (redis-cli HSET, DEL, EXPIRE)",
	'g': "g: DEL, RENAME, EXPIRE of a user",
	'h': "h: HSET, HDEL of a user's fields",
	'x': "x: a user hash reaching its EXPIRE time",
}

// readyInterval: /readyz asks Redis and the broker at most once per this
// interval; the requests in between get the last answer.
const readyInterval = 5 * time.Second

// readiness is /readyz's probe of Redis and the broker, shared by every
// request and made at most once per interval. Its result names no address
// and no error; a failed probe is logged at warn instead (so at most once
// per interval too).
type readiness struct {
	interval     time.Duration
	log          *slog.Logger
	redisURL     string // redacted, for the log
	backendAddr  string
	pingRedis    func(context.Context) error
	probeBackend func(context.Context) error

	flight singleflight.Group
	mu     sync.Mutex
	at     time.Time // when status was found; zero: never
	status map[string]string
}

// readyProbeTimeout bounds one probe (the Kubernetes sample's readiness
// probe waits 6 s).
const readyProbeTimeout = 5 * time.Second

// get returns the current status, probing when the last one is older than
// the interval; concurrent callers share one probe. The map is shared:
// callers must not change it.
func (r *readiness) get(ctx context.Context) map[string]string {
	if st, ok := r.cached(); ok {
		return st
	}
	ch := r.flight.DoChan("probe", func() (any, error) {
		if st, ok := r.cached(); ok { // a probe just ended
			return st, nil
		}
		st := r.probe()
		r.mu.Lock()
		r.at, r.status = time.Now(), st
		r.mu.Unlock()
		return st, nil
	})
	select {
	case res := <-ch:
		return res.Val.(map[string]string)
	case <-ctx.Done():
		return map[string]string{"redis": "unavailable", "backend": "unavailable"}
	}
}

func (r *readiness) cached() (map[string]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status, !r.at.IsZero() && time.Since(r.at) < r.interval
}

// probe pings Redis and probes the broker, both at once, on a context of
// its own: a request that goes away does not cancel the shared probe.
func (r *readiness) probe() map[string]string {
	ctx, cancel := context.WithTimeout(context.Background(), readyProbeTimeout)
	defer cancel()
	var redisErr, backendErr error
	var wg sync.WaitGroup
	wg.Go(func() { redisErr = r.pingRedis(ctx) })
	wg.Go(func() { backendErr = r.probeBackend(ctx) })
	wg.Wait()
	st := map[string]string{"redis": "ok", "backend": "ok"}
	var attrs []any
	if redisErr != nil {
		st["redis"] = "unavailable"
		attrs = append(attrs, "redis", r.redisURL, "redis_error", redisErr)
	}
	if backendErr != nil {
		st["backend"] = "unavailable"
		attrs = append(attrs, "backend", r.backendAddr, "backend_error", backendErr)
	}
	if attrs != nil {
		r.log.Warn("not ready: /readyz answers 503", attrs...)
	}
	return st
}

// stop shuts the proxy down gracefully, then the metrics endpoint.
func (s *server) stop() {
	s.proxy.Shutdown(context.Background())
	s.stopFollow()
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.http.Shutdown(ctx)
		cancel()
	}
	_ = s.rdb.Close()
}

const healthcheckUsage = `Usage: mqtt-authproxy healthcheck [--url URL]

Queries the health endpoint of a running proxy and exits 0 when it answers
200, 1 otherwise. Meant for container health checks in images without a
shell. The default URL is built from AUTHPROXY_METRICS_LISTEN.
`

func cmdHealthcheck(args []string, io stdio) error {
	fs := newFlags("healthcheck", healthcheckUsage, io)
	url := fs.String("url", "", "URL to query (default http://127.0.0.1:<port of AUTHPROXY_METRICS_LISTEN>/healthz)")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *url == "" {
		cfg, err := loadConfig()
		if err != nil {
			return err
		}
		host, port, err := net.SplitHostPort(cfg.MetricsListen)
		if err != nil {
			return cfgErr("METRICS_LISTEN", "%q is not host:port", cfg.MetricsListen)
		}
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		*url = "http://" + net.JoinHostPort(host, port) + "/healthz"
	}
	c := &http.Client{Timeout: *timeout}
	resp, err := c.Get(*url)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", *url, resp.Status)
	}
	fmt.Fprintln(io.out, "ok")
	return nil
}

var errCheckFailed = errors.New("check failed")
