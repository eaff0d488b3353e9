package main

// Regression tests of the outside security review (issue 13): /readyz,
// the metrics listener's default, secrets in Redis URL errors, keyspace
// notification checks and the TLS 1.2 cipher suites.

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/app"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// fakeBroker is a loopback listener acting as the broker: it answers every
// CONNECT with CONNACK 0 and counts the connections it accepts.
type fakeBroker struct {
	l       net.Listener
	accepts atomic.Int64
}

func newFakeBroker(t *testing.T) *fakeBroker {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeBroker{l: l}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			b.accepts.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if h, _, err := packets.ReadPacket(c, 1<<16); err != nil || h.Type != packets.CONNECT {
					return
				}
				_, _ = c.Write([]byte{0x20, 2, 0, 0})
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return b
}

func (b *fakeBroker) Addr() string { return b.l.Addr().String() }

// readyzInterval is the promise of the fix: the broker is probed (and
// Redis pinged) at most once per this interval, whatever the requests.
const readyzTestInterval = 5 * time.Second

// getBody fetches url and returns the status and the body.
func getBody(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// redisCalls is how many times Redis ran cmd, from INFO commandstats.
func redisCalls(t *testing.T, rdb *redis.Client, cmd string) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^cmdstat_` + cmd + `:calls=(\d+)`).FindStringSubmatch(info)
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

// TestReadyzProbesAtMostOncePerInterval: concurrent and repeated GET
// /readyz within the interval make at most one Redis PING and no broker
// connection of their own: the broker pools' probes (one per address and
// BACKEND_HEALTH_INTERVAL, with the backend credentials) answer for the
// broker; every request gets the shared answer.
func TestReadyzProbesAtMostOncePerInterval(t *testing.T) {
	rs := testenv.Redis(t)
	admin := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	t.Cleanup(func() { admin.Close() })
	broker := newFakeBroker(t)
	f, _, _ := certs(t)
	metrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	env := map[string]string{
		"AUTHPROXY_TLS_CERT_FILE": f.ServerCert, "AUTHPROXY_TLS_KEY_FILE": f.ServerKey,
		"AUTHPROXY_LISTEN": fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "AUTHPROXY_BACKEND_ADDR": broker.Addr(),
		"AUTHPROXY_BACKEND_USERNAME": "proxy", "AUTHPROXY_BACKEND_PASSWORD": "backend-secret",
		"AUTHPROXY_REDIS_URL": testenv.RedisURL(rs), "AUTHPROXY_METRICS_LISTEN": metrics, "AUTHPROXY_LOG_FORMAT": "json",
	}
	startBin(t, env, "serve")
	waitHTTP(t, "http://"+metrics+"/healthz", 200)
	url := "http://" + metrics + "/readyz"

	acceptsBefore, pingsBefore := broker.accepts.Load(), redisCalls(t, admin, "ping")
	start := time.Now()
	const concurrent, sequential = 60, 30
	type answer struct {
		code int
		body string
		err  error
	}
	answers := make([]answer, concurrent+sequential)
	var wg sync.WaitGroup
	for i := range concurrent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body, err := getBody(url)
			answers[i] = answer{code, body, err}
		}()
	}
	wg.Wait()
	for i := range sequential {
		code, body, err := getBody(url)
		answers[concurrent+i] = answer{code, body, err}
	}
	elapsed := time.Since(start)
	accepts, pings := broker.accepts.Load()-acceptsBefore, redisCalls(t, admin, "ping")-pingsBefore

	// One probe per interval begun during the burst; the broker's, the
	// pools' own (every 5 s by default), whatever /readyz is asked.
	allowed := int64(elapsed/readyzTestInterval) + 1
	if probes := int64(elapsed/(5*time.Second)) + 1; accepts > probes {
		t.Errorf("%d GET /readyz in %v opened %d broker connections, want at most %d (the pools' probes)", len(answers), elapsed, accepts, probes)
	}
	if broker.accepts.Load() == 0 {
		t.Errorf("the broker was never probed")
	}
	if pings > allowed {
		t.Errorf("%d GET /readyz in %v sent %d PINGs to Redis, want at most %d", len(answers), elapsed, pings, allowed)
	}
	for i, a := range answers {
		if a.err != nil || a.code != 200 || strings.TrimSpace(a.body) != `{"backend":"ok","redis":"ok"}` {
			t.Fatalf("request %d: %d %q %v", i, a.code, a.body, a.err)
		}
	}
}

// TestReadyzBodyNamesNoAddress: with Redis and the broker down, /readyz
// answers 503 with generic words; the addresses and errors go to the log,
// once per interval, at warn.
func TestReadyzBodyNamesNoAddress(t *testing.T) {
	f, _, _ := certs(t)
	redisPort, brokerPort := testenv.FreePort(t), testenv.FreePort(t)
	metrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	env := map[string]string{
		"AUTHPROXY_TLS_CERT_FILE": f.ServerCert, "AUTHPROXY_TLS_KEY_FILE": f.ServerKey,
		"AUTHPROXY_LISTEN": fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "AUTHPROXY_BACKEND_ADDR": fmt.Sprintf("127.0.0.1:%d", brokerPort),
		"AUTHPROXY_REDIS_URL": fmt.Sprintf("redis://127.0.0.1:%d/0", redisPort), "AUTHPROXY_METRICS_LISTEN": metrics, "AUTHPROXY_LOG_FORMAT": "json",
	}
	p := startBin(t, env, "serve")
	waitHTTP(t, "http://"+metrics+"/healthz", 200)
	start := time.Now()
	const requests = 5
	for range requests {
		code, body, err := getBody("http://" + metrics + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		if code != http.StatusServiceUnavailable || strings.TrimSpace(body) != `{"backend":"unavailable","redis":"unavailable"}` {
			t.Fatalf("/readyz with everything down: %d %q", code, body)
		}
		for _, secret := range []string{"127.0.0.1", strconv.Itoa(redisPort), strconv.Itoa(brokerPort), "dial", "refused"} {
			if strings.Contains(body, secret) {
				t.Fatalf("/readyz body %q reveals %q", body, secret)
			}
		}
	}
	elapsed := time.Since(start)
	// The details are in the log, at warn, at most once per interval.
	warnLines := func() []string {
		var out []string
		for _, l := range strings.Split(p.stderr.String(), "\n") {
			if strings.Contains(l, `"level":"WARN"`) && strings.Contains(l, "ready") {
				out = append(out, l)
			}
		}
		return out
	}
	testenv.WaitFor(t, 5*time.Second, "the readiness warning in the log", func() bool { return len(warnLines()) > 0 })
	lines := warnLines()
	if !strings.Contains(lines[0], strconv.Itoa(brokerPort)) || !strings.Contains(lines[0], strconv.Itoa(redisPort)) {
		t.Errorf("the warning does not name the failing addresses: %s", lines[0])
	}
	if allowed := int(elapsed/readyzTestInterval) + 1; len(lines) > allowed {
		t.Errorf("%d requests in %v logged %d readiness warnings, want at most %d:\n%s", requests, elapsed, len(lines), allowed, strings.Join(lines, "\n"))
	}
}

// TestMetricsListenDefaultsToLoopback: without AUTHPROXY_METRICS_LISTEN the
// metrics, health and pprof endpoints listen on loopback only.
func TestMetricsListenDefaultsToLoopback(t *testing.T) {
	t.Setenv("AUTHPROXY_METRICS_LISTEN", "")
	os.Unsetenv("AUTHPROXY_METRICS_LISTEN")
	cfg, err := app.Load(os.Environ())
	if err != nil {
		t.Fatal(err)
	}
	host, _, err := net.SplitHostPort(cfg.MetricsListen)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		t.Fatalf("default METRICS_LISTEN is %q, want a loopback address", cfg.MetricsListen)
	}
	if cfg.MetricsListen != "127.0.0.1:9090" {
		t.Fatalf("default METRICS_LISTEN is %q, want 127.0.0.1:9090", cfg.MetricsListen)
	}
}

// badRedisURLs are REDIS_URLs that do not parse, each with the password
// SECRETpart1SECRETpart2 somewhere, and what must not appear in any output.
var badRedisURLs = []struct {
	name, url string
	leaks     []string // besides the password and its halves
}{
	{"bad port", "redis://user:SECRETpart1SECRETpart2@127.0.0.1:notaport/0", nil},
	{"bad escape in the password", "redis://user:SECRETpart1%zzSECRETpart2@127.0.0.1:6379/0", []string{"%zz"}},
	{"bad escape in the path", "redis://user:SECRETpart1SECRETpart2@127.0.0.1:6379/%zz", nil},
	{"slash in the password", "redis://user:SECRETpart1/SECRETpart2@127.0.0.1:6379/0", nil},
	{"trailing newline", "redis://:SECRETpart1SECRETpart2@127.0.0.1:6379/0\n", nil},
	{"bad IPv6 host", "rediss://user:SECRETpart1SECRETpart2@[::1:6379/0", nil},
	{"no scheme", "user:SECRETpart1SECRETpart2@127.0.0.1:6379", nil},
	{"sentinel password parameter", "redis://127.0.0.1:bad/0?master_name=m&password=SECRETpart1SECRETpart2", nil},
	{"sentinel_password parameter and a control character", "redis://127.0.0.1:26379/0?master_name=m&sentinel_password=SECRETpart1SECRETpart2\x7f", nil},
}

// TestRedisURLPasswordNeverPrinted: a REDIS_URL that does not parse stops
// serve, check and the operator commands with exit 2 naming the variable,
// and its password appears nowhere in what they print.
func TestRedisURLPasswordNeverPrinted(t *testing.T) {
	f, _, _ := certs(t)
	for _, c := range badRedisURLs {
		t.Run(c.name, func(t *testing.T) {
			env := map[string]string{
				"AUTHPROXY_TLS_CERT_FILE": f.ServerCert, "AUTHPROXY_TLS_KEY_FILE": f.ServerKey,
				"AUTHPROXY_BACKEND_ADDR": "127.0.0.1:1883", "AUTHPROXY_LISTEN": "127.0.0.1:0", "AUTHPROXY_METRICS_LISTEN": "127.0.0.1:0",
				"AUTHPROXY_REDIS_URL": c.url,
			}
			for _, args := range [][]string{{"serve"}, {"check"}, {"user", "list"}, {"user", "show", "x"}} {
				r := runBin(t, env, "", args...)
				out := r.stdout + r.stderr
				if r.code != 2 || !strings.Contains(r.stderr, "AUTHPROXY_REDIS_URL:") {
					t.Fatalf("%v: exit %d, stderr %q; want exit 2 naming AUTHPROXY_REDIS_URL", args, r.code, r.stderr)
				}
				for _, leak := range append([]string{"SECRETpart1", "SECRETpart2"}, c.leaks...) {
					if strings.Contains(out, leak) {
						t.Fatalf("%v printed %q of the password: %q", args, leak, out)
					}
				}
			}
		})
	}
	// check, which prints the URL, hides a password of a URL that parses.
	env := map[string]string{
		"AUTHPROXY_TLS_CERT_FILE": f.ServerCert, "AUTHPROXY_TLS_KEY_FILE": f.ServerKey,
		"AUTHPROXY_BACKEND_ADDR": fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "AUTHPROXY_LISTEN": "127.0.0.1:0", "AUTHPROXY_METRICS_LISTEN": "127.0.0.1:0",
		"AUTHPROXY_REDIS_URL": fmt.Sprintf("redis://user:SECRETpart1SECRETpart2@127.0.0.1:%d/0", testenv.FreePort(t)),
	}
	r := runBin(t, env, "", "check")
	if r.code != 1 || !strings.Contains(r.stdout, "FAIL  redis redis://user:xxxxx@127.0.0.1:") || strings.Contains(r.stdout+r.stderr, "SECRETpart") {
		t.Fatalf("check with a password in the URL: %+v", r)
	}
}

// TestServeChecksKeyspaceNotifications: serve reads notify-keyspace-events
// at start and warns, naming the missing classes and the cost, when a
// plain redis-cli change (or an EXPIRE) would not reach live connections;
// where CONFIG is not allowed it says so at info.
func TestServeChecksKeyspaceNotifications(t *testing.T) {
	f, _, _ := certs(t)
	for _, c := range []struct {
		name      string
		redisArgs []string
		want      *regexp.Regexp // a log line
		unwanted  string         // in no log line
	}{
		{"Kgh: expiries are missed", []string{"--notify-keyspace-events", "Kgh"},
			regexp.MustCompile(`"level":"WARN".*keyspace notifications.*"missing":"x".*"revalidate_interval":"45s"`), ""},
		{"none", nil, regexp.MustCompile(`"level":"WARN".*keyspace notifications.*"missing":"Kghx"`), ""},
		{"Kghx", []string{"--notify-keyspace-events", "Kghx"}, regexp.MustCompile(`"level":"INFO","msg":"Redis keyspace notifications on"`), "missing"},
		{"KEA", []string{"--notify-keyspace-events", "KEA"}, regexp.MustCompile(`"level":"INFO","msg":"Redis keyspace notifications on"`), "missing"},
		{"CONFIG renamed", []string{"--notify-keyspace-events", "Kghx", "--rename-command", "CONFIG", ""},
			regexp.MustCompile(`"level":"INFO".*keyspace notifications could not be checked`), "missing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rs := testenv.Redis(t, c.redisArgs...)
			metrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
			env := map[string]string{
				"AUTHPROXY_TLS_CERT_FILE": f.ServerCert, "AUTHPROXY_TLS_KEY_FILE": f.ServerKey,
				"AUTHPROXY_LISTEN": fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "AUTHPROXY_BACKEND_ADDR": "127.0.0.1:1883",
				"AUTHPROXY_REDIS_URL": testenv.RedisURL(rs), "AUTHPROXY_METRICS_LISTEN": metrics, "AUTHPROXY_LOG_FORMAT": "json",
				"AUTHPROXY_REVALIDATE_INTERVAL": "45s",
			}
			p := startBin(t, env, "serve")
			testenv.WaitFor(t, 10*time.Second, "the keyspace notification check in the log", func() bool {
				return c.want.MatchString(p.stderr.String())
			})
			for _, l := range strings.Split(p.stderr.String(), "\n") {
				if c.unwanted != "" && strings.Contains(l, "keyspace") && strings.Contains(l, c.unwanted) {
					t.Fatalf("unexpected log line: %s", l)
				}
			}
		})
	}
}

// tlsServe starts serve with the given extra environment and returns the
// TLS listener's address once the process is up.
func tlsServe(t *testing.T, extra map[string]string) string {
	t.Helper()
	f, _, _ := certs(t)
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	metrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	env := map[string]string{
		"AUTHPROXY_TLS_CERT_FILE": f.ServerCert, "AUTHPROXY_TLS_KEY_FILE": f.ServerKey, "AUTHPROXY_LISTEN": listen,
		"AUTHPROXY_BACKEND_ADDR": "127.0.0.1:1883", "AUTHPROXY_REDIS_URL": fmt.Sprintf("redis://127.0.0.1:%d/0", testenv.FreePort(t)),
		"AUTHPROXY_METRICS_LISTEN": metrics,
	}
	for k, v := range extra {
		env[k] = v
	}
	startBin(t, env, "serve")
	waitHTTP(t, "http://"+metrics+"/healthz", 200)
	return listen
}

// TestTLS12CipherSuites: the device listener offers TLS 1.2 AEAD suites
// only (ECDHE with AES-GCM or ChaCha20-Poly1305); the ECDHE CBC-SHA suites
// only with AUTHPROXY_TLS12_CBC=true. Checked with Go clients restricted to
// one suite and with openssl s_client.
func TestTLS12CipherSuites(t *testing.T) {
	aead := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}
	cbc := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}
	handshake := func(addr string, suite uint16) error {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
			&tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{suite}})
		if err != nil {
			return err
		}
		defer c.Close()
		if got := c.ConnectionState().CipherSuite; got != suite {
			return fmt.Errorf("negotiated %s", tls.CipherSuiteName(got))
		}
		return nil
	}
	openssl := func(addr, cipher string) error {
		bin := testenv.LookPath(t, "openssl")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, "s_client", "-connect", addr, "-servername", "localhost", "-tls1_2", "-cipher", cipher).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	for _, c := range []struct {
		name    string
		env     map[string]string
		withCBC bool
	}{{"default", nil, false}, {"TLS12_CBC=false", map[string]string{"AUTHPROXY_TLS12_CBC": "false"}, false},
		{"TLS12_CBC=true", map[string]string{"AUTHPROXY_TLS12_CBC": "true"}, true}} {
		t.Run(c.name, func(t *testing.T) {
			addr := tlsServe(t, c.env)
			for _, s := range aead {
				if err := handshake(addr, s); err != nil {
					t.Errorf("%s: %v", tls.CipherSuiteName(s), err)
				}
			}
			for _, s := range cbc {
				if err := handshake(addr, s); (err == nil) != c.withCBC {
					t.Errorf("%s: handshake error %v, want success %v", tls.CipherSuiteName(s), err, c.withCBC)
				}
			}
			if err := openssl(addr, "ECDHE-ECDSA-AES128-GCM-SHA256"); err != nil {
				t.Errorf("openssl GCM: %v", err)
			}
			if err := openssl(addr, "ECDHE-ECDSA-AES128-SHA"); (err == nil) != c.withCBC {
				t.Errorf("openssl ECDHE-ECDSA-AES128-SHA: %v, want success %v", err, c.withCBC)
			}
			// TLS 1.3 is untouched.
			c13, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
			if err != nil {
				t.Fatalf("TLS 1.3: %v", err)
			}
			c13.Close()
		})
	}
}
