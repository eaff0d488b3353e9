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
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

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
	store := authstore.New(rdb, authstore.Options{Prefix: cfg.RedisKeyPrefix, Timeout: cfg.RedisTimeout, Logger: log})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := proxy.NewMetrics(reg)
	p, err := proxy.New(proxy.Config{
		Listen: cfg.Listen, TLS: s.tls, PlainListen: cfg.PlainListen,
		Backend: s.backend, Auth: store,
		ConnectTimeout: cfg.ConnectTimeout, MaxConnectBytes: cfg.MaxConnectBytes, MaxConnections: cfg.MaxConnections,
		ShutdownGrace: cfg.ShutdownGrace, Logger: log, Metrics: metrics,
		RevalidateInterval: revalidateInterval(cfg.RevalidateInterval),
	})
	if err != nil {
		rdb.Close()
		return nil, err
	}
	srv := &server{proxy: p, store: store, rdb: rdb, backend: s.backend, log: log}
	// Rule changes close live connections that are no longer allowed.
	followCtx, cancelFollow := context.WithCancel(context.Background())
	followDone := make(chan struct{})
	go func() { _ = p.Follow(followCtx, store); close(followDone) }()
	srv.stopFollow = func() { cancelFollow(); <-followDone }
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
// connection (a real CONNECT when backend credentials are set), else 503
// with the reasons.
func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	status := map[string]string{"redis": "ok", "backend": "ok"}
	ready := true
	if err := s.store.Ping(ctx); err != nil {
		status["redis"], ready = err.Error(), false
	}
	if err := s.backend.Probe(ctx); err != nil {
		status["backend"], ready = err.Error(), false
	}
	w.Header().Set("Content-Type", "application/json")
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(status)
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
