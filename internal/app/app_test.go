package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
)

// fakeBroker accepts TCP connections (what the readiness probe needs
// without backend credentials) and closes them.
func fakeBroker(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return l.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestStartServesAndStops: Start opens every listener, serves TLS, the
// admin endpoint and the change feed; Stop closes them all.
func TestStartServesAndStops(t *testing.T) {
	f := testFiles(t)
	mr := miniredis.RunT(t)
	c := Defaults()
	c.Listen, c.PlainListen, c.MetricsListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	c.TLSCertFile, c.TLSKeyFile = f.ServerCert, f.ServerKey
	c.BackendAddr, c.RedisURL, c.ShutdownGrace = fakeBroker(t), "redis://"+mr.Addr()+"/0", time.Second
	logs := &testenv.SyncBuffer{}
	a := startApp(t, c, logs)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			a.Stop()
		}
	})
	addrs := a.Addrs()
	if addrs.TLS == nil || addrs.Plain == nil || addrs.Admin == nil {
		t.Fatalf("Addrs: %+v", addrs)
	}

	// The TLS listener terminates TLS with the configured certificate.
	ca, err := os.ReadFile(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	conn, err := tls.Dial("tcp", addrs.TLS.String(), &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	conn.Close()

	// The admin endpoint.
	base := "http://" + addrs.Admin.String()
	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 200 || strings.TrimSpace(body) != `{"backend":"ok","redis":"ok"}` {
		t.Errorf("/readyz: %d %q", code, body)
	}
	if _, body := get(t, base+"/metrics"); !strings.Contains(body, "authproxy_connections_active") || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics lacks the proxy's or Go's series")
	}
	if code, _ := get(t, base+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("pprof is served without PPROF: %d", code)
	}

	// The change feed is subscribed: a kick reaches at least this proxy.
	testenv.WaitFor(t, 5*time.Second, "the change feed to subscribe", func() bool {
		n, err := a.Store().Kick(context.Background(), "nobody")
		return err == nil && n > 0
	})
	// The startup check of keyspace notifications ran (miniredis has no
	// CONFIG: it says it could not check).
	testenv.WaitFor(t, 5*time.Second, "the keyspace notification check", func() bool {
		return strings.Contains(logs.String(), "keyspace notifications could not be checked")
	})

	a.Stop()
	stopped = true
	for _, addr := range []net.Addr{addrs.TLS, addrs.Plain, addrs.Admin} {
		if c, err := net.Dial("tcp", addr.String()); err == nil {
			c.Close()
			t.Errorf("%s still accepts after Stop", addr)
		}
	}
	a.Stop() // a second Stop returns at once
}

// TestStartFailsCleanly: a listener that cannot be opened is an error
// naming its variable (a runtime failure, not a ConfigError), and what was
// opened before it is closed again.
func TestStartFailsCleanly(t *testing.T) {
	f := testFiles(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tlsPort := testenv.FreePort(t)
	c := Defaults()
	c.Listen, c.PlainListen, c.MetricsListen = fmt.Sprintf("127.0.0.1:%d", tlsPort), busy.Addr().String(), "off"
	c.TLSCertFile, c.TLSKeyFile, c.BackendAddr = f.ServerCert, f.ServerKey, "127.0.0.1:1883"
	s, err := c.Validate()
	if err != nil {
		t.Fatal(err)
	}
	a, err := Start(context.Background(), s, slog.New(slog.DiscardHandler))
	var ce *ConfigError
	if err == nil || a != nil || !strings.Contains(err.Error(), "AUTHPROXY_PLAIN_LISTEN="+busy.Addr().String()) || errors.As(err, &ce) {
		t.Fatalf("Start with a busy port: %v %v", a, err)
	}
	l, err := net.Listen("tcp", c.Listen)
	if err != nil {
		t.Fatalf("the TLS listener opened before the failure is still open: %v", err)
	}
	l.Close()
}

// startApp validates c and starts the proxy as serve does, logging to
// logs; the caller stops it.
func startApp(t *testing.T, c Config, logs io.Writer) *App {
	t.Helper()
	s, err := c.Validate()
	if err != nil {
		t.Fatal(err)
	}
	a, err := Start(context.Background(), s, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return a
}
