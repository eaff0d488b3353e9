package admin

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// counted is a check that counts its probes and fails with err.
func counted(name, target string, n *atomic.Int64, err error) Check {
	return Check{Name: name, Target: target, Probe: func(context.Context) error { n.Add(1); return err }}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// get is a GET of path with Host localhost:9090.
func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.Host = "localhost:9090"
	h.ServeHTTP(rec, r)
	return rec.Code, rec.Body.String()
}

// TestReadyzProbesAtMostOncePerInterval: concurrent and repeated requests
// within the interval share one probe of each check and its answer.
func TestReadyzProbesAtMostOncePerInterval(t *testing.T) {
	var redis, backend atomic.Int64
	srv := httptest.NewServer(New(Options{Checks: []Check{counted("redis", "r", &redis, nil), counted("backend", "b", &backend, nil)}}))
	defer srv.Close()
	start := time.Now()
	const concurrent, sequential = 50, 20
	bodies := make([]string, concurrent+sequential)
	codes := make([]int, concurrent+sequential)
	fetch := func(i int) {
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			bodies[i] = err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		codes[i], bodies[i] = resp.StatusCode, string(b)
	}
	var wg sync.WaitGroup
	for i := range concurrent {
		wg.Go(func() { fetch(i) })
	}
	wg.Wait()
	for i := range sequential {
		fetch(concurrent + i)
	}
	allowed := int64(time.Since(start)/ReadyInterval) + 1
	for name, n := range map[string]int64{"redis": redis.Load(), "backend": backend.Load()} {
		if n < 1 || n > allowed {
			t.Errorf("%s probed %d times by %d requests, want 1..%d", name, n, len(codes), allowed)
		}
	}
	for i := range codes {
		if codes[i] != 200 || strings.TrimSpace(bodies[i]) != `{"backend":"ok","redis":"ok"}` {
			t.Fatalf("request %d: %d %q", i, codes[i], bodies[i])
		}
	}
}

// TestReadyzFailureNamesNothing: a failing check makes /readyz 503 with
// "unavailable" for it and nothing more; its target and error go to the
// log at warn.
func TestReadyzFailureNamesNothing(t *testing.T) {
	var n atomic.Int64
	logs := &syncBuffer{}
	h := New(Options{Logger: slog.New(slog.NewJSONHandler(logs, nil)), Checks: []Check{
		counted("redis", "redis://u:xxxxx@10.1.2.3:6379/0", &n, nil),
		counted("backend", "broker.internal:1883", &n, errors.New("dial tcp 10.9.9.9:1883: connection refused")),
	}})
	code, body := get(t, h, "/readyz")
	if code != http.StatusServiceUnavailable || strings.TrimSpace(body) != `{"backend":"unavailable","redis":"ok"}` {
		t.Fatalf("/readyz: %d %q", code, body)
	}
	line := logs.String()
	for _, want := range []string{`"level":"WARN"`, `"backend":"broker.internal:1883"`, `"backend_error":"dial tcp 10.9.9.9:1883: connection refused"`} {
		if !strings.Contains(line, want) {
			t.Errorf("log %q lacks %s", line, want)
		}
	}
	if strings.Contains(line, "redis_error") {
		t.Errorf("the passing check is logged as failing: %s", line)
	}
	// Within the interval: the same answer, no new probe, no new log line.
	if code2, body2 := get(t, h, "/readyz"); code2 != code || body2 != body || n.Load() != 2 || strings.Count(logs.String(), "not ready") != 1 {
		t.Fatalf("second request: %d %q, %d probes, log %q", code2, body2, n.Load(), logs.String())
	}
}

// TestReadinessInterval: an answer older than the interval is probed
// again; a younger one is not.
func TestReadinessInterval(t *testing.T) {
	for _, c := range []struct {
		interval time.Duration
		want     int64
	}{{0, 3}, {time.Hour, 1}} {
		var n atomic.Int64
		r := newReadiness([]Check{counted("redis", "r", &n, nil)}, c.interval, slog.New(slog.DiscardHandler))
		for range 3 {
			if st := r.get(context.Background()); st["redis"] != ok {
				t.Fatalf("status %v", st)
			}
		}
		if n.Load() != c.want {
			t.Errorf("interval %v: %d probes for 3 requests, want %d", c.interval, n.Load(), c.want)
		}
	}
}

// TestReadinessRequestGoesAway: a request that ends before the shared
// probe gets every check as unavailable; the probe goes on and its answer
// serves the next request.
func TestReadinessRequestGoesAway(t *testing.T) {
	release, started := make(chan struct{}), make(chan struct{})
	r := newReadiness([]Check{{Name: "redis", Probe: func(context.Context) error { close(started); <-release; return nil }},
		{Name: "backend", Probe: func(context.Context) error { return nil }}}, time.Hour, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan map[string]string)
	go func() { got <- r.get(ctx) }()
	<-started
	cancel()
	if st := <-got; st["redis"] != unavailable || st["backend"] != unavailable {
		t.Fatalf("abandoned request: %v", st)
	}
	close(release)
	if st := r.get(context.Background()); st["redis"] != ok || st["backend"] != ok {
		t.Fatalf("after the probe: %v", st)
	}
}

// TestEndpoints: /metrics serves the gatherer, /healthz answers, pprof
// only when enabled.
func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "admin_test_total", Help: "t"})
	reg.MustRegister(c)
	c.Add(3)
	for _, pprof := range []bool{false, true} {
		h := New(Options{Gatherer: reg, Pprof: pprof})
		if code, body := get(t, h, "/metrics"); code != 200 || !strings.Contains(body, "admin_test_total 3") {
			t.Errorf("/metrics: %d %q", code, body)
		}
		if code, body := get(t, h, "/healthz"); code != 200 || body != "ok\n" {
			t.Errorf("/healthz: %d %q", code, body)
		}
		if code, body := get(t, h, "/readyz"); code != 200 || strings.TrimSpace(body) != "{}" {
			t.Errorf("/readyz without checks: %d %q", code, body)
		}
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap"} {
			want := http.StatusNotFound
			if pprof {
				want = http.StatusOK
			}
			if code, _ := get(t, h, path); code != want {
				t.Errorf("pprof %v: %s answers %d, want %d", pprof, path, code, want)
			}
		}
	}
}

// TestServeAndShutdown: Serve serves until Shutdown, then returns
// http.ErrServerClosed.
func TestServeAndShutdown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{})
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	resp, err := http.Get("http://" + l.Addr().String() + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve returned %v", err)
	}
	if _, err := net.Dial("tcp", l.Addr().String()); err == nil {
		t.Fatal("the listener is open after Shutdown")
	}
}
