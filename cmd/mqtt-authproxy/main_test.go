package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/passwords"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/pki"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// binary is the command built once for the tests, with the Dockerfile's
// build flags (see dockerfileBuild).
var binary string

// demoBin is the command built with the Dockerfile's flags but the demo
// (without -tags nodemo), as go run builds it; demoBinary builds it once.
var (
	demoBin     string
	demoBinOnce sync.Once
	demoBinErr  error
)

func demoBinary(t *testing.T) string {
	t.Helper()
	demoBinOnce.Do(func() {
		env, flags, err := dockerfileBuild("test")
		if err != nil {
			demoBinErr = err
			return
		}
		demoBin = binary + "-demo"
		args := append(append([]string{"build"}, withoutTag(flags, "nodemo")...), "-o", demoBin, ".")
		cmd := exec.Command("go", args...)
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			demoBinErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if demoBinErr != nil {
		t.Fatal(demoBinErr)
	}
	return demoBin
}

// withoutTag is go build flags without one build tag.
func withoutTag(flags []string, tag string) []string {
	var out []string
	for i := 0; i < len(flags); i++ {
		if flags[i] == "-tags" && i+1 < len(flags) {
			var keep []string
			for _, t := range strings.Split(flags[i+1], ",") {
				if t != tag {
					keep = append(keep, t)
				}
			}
			i++
			if len(keep) > 0 {
				out = append(out, "-tags", strings.Join(keep, ","))
			}
			continue
		}
		out = append(out, flags[i])
	}
	return out
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mqtt-authproxy-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "mqtt-authproxy")
	// Exactly the Dockerfile's build flags and environment.
	env, flags, err := dockerfileBuild("test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	args := append(append([]string{"build"}, flags...), "-o", binary, ".")
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

// runBin runs the binary with only the given environment (plus PATH).
func runBin(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, out.String(), errb.String()}
}

// certs writes a CA, a server certificate and a second, unrelated key.
func certs(t *testing.T) (pki.Files, *pki.CA, string) {
	t.Helper()
	ca, err := pki.NewCA("t")
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := ca.Server("localhost", "127.0.0.1")
	dir := t.TempDir()
	f, err := pki.WriteFiles(dir, ca, srv)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := ca.Server("other")
	otherKey := filepath.Join(dir, "other-key.pem")
	if err := os.WriteFile(otherKey, other.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return f, ca, otherKey
}

func TestBadConfigExits2NamingTheVariable(t *testing.T) {
	f, _, otherKey := certs(t)
	good := map[string]string{
		"AUTHPROXY_TLS_CERT_FILE": f.ServerCert, "AUTHPROXY_TLS_KEY_FILE": f.ServerKey,
		"AUTHPROXY_BACKEND_ADDR": "127.0.0.1:1883", "AUTHPROXY_LISTEN": "127.0.0.1:0", "AUTHPROXY_METRICS_LISTEN": "127.0.0.1:0",
	}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range good {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "<unset>" {
				delete(m, kv[i])
			} else {
				m[kv[i]] = kv[i+1]
			}
		}
		return m
	}
	cases := []struct {
		name string
		env  map[string]string
		want string // in stderr
	}{
		{"missing backend", with("AUTHPROXY_BACKEND_ADDR", "<unset>"), "AUTHPROXY_BACKEND_ADDR: is required"},
		{"backend not host:port", with("AUTHPROXY_BACKEND_ADDR", "broker"), "AUTHPROXY_BACKEND_ADDR: \"broker\" is not host:port"},
		{"missing certificate", with("AUTHPROXY_TLS_CERT_FILE", "<unset>"), "AUTHPROXY_TLS_CERT_FILE: is required"},
		{"unreadable certificate", with("AUTHPROXY_TLS_CERT_FILE", "/nonexistent/cert.pem"), "AUTHPROXY_TLS_CERT_FILE: cannot read certificate"},
		{"key that does not match", with("AUTHPROXY_TLS_KEY_FILE", otherKey), "AUTHPROXY_TLS_KEY_FILE: " + otherKey + " does not match"},
		{"bad duration", with("AUTHPROXY_REDIS_TIMEOUT", "soon"), "AUTHPROXY_REDIS_TIMEOUT: unable to parse duration: time: invalid duration \"soon\""},
		{"negative duration", with("AUTHPROXY_CONNECT_TIMEOUT", "-1s"), "AUTHPROXY_CONNECT_TIMEOUT: must be positive"},
		{"unknown TLS version", with("AUTHPROXY_TLS_MIN_VERSION", "1.1"), "AUTHPROXY_TLS_MIN_VERSION: \"1.1\" is not 1.2 or 1.3"},
		{"bad client auth", with("AUTHPROXY_TLS_CLIENT_AUTH", "maybe"), "AUTHPROXY_TLS_CLIENT_AUTH: \"maybe\" is not none, request or require"},
		{"client auth without CA", with("AUTHPROXY_TLS_CLIENT_AUTH", "require"), "AUTHPROXY_TLS_CLIENT_CA_FILE is not set"},
		{"unreadable CA", with("AUTHPROXY_TLS_CLIENT_CA_FILE", "/nonexistent/ca.pem"), "AUTHPROXY_TLS_CLIENT_CA_FILE:"},
		{"bad number", with("AUTHPROXY_MAX_CONNECTIONS", "many"), "AUTHPROXY_MAX_CONNECTIONS:"},
		{"bad bool", with("AUTHPROXY_BACKEND_TLS", "perhaps"), "AUTHPROXY_BACKEND_TLS:"},
		{"bad TLS12_CBC", with("AUTHPROXY_TLS12_CBC", "sometimes"), "AUTHPROXY_TLS12_CBC:"},
		{"bad redis URL", with("AUTHPROXY_REDIS_URL", "http://x"), "AUTHPROXY_REDIS_URL:"},
		{"bad log level", with("AUTHPROXY_LOG_LEVEL", "loud"), "AUTHPROXY_LOG_LEVEL:"},
		{"bad log format", with("AUTHPROXY_LOG_FORMAT", "xml"), "AUTHPROXY_LOG_FORMAT:"},
		{"backend TLS file without BACKEND_TLS", with("AUTHPROXY_BACKEND_TLS_CA_FILE", f.CA), "AUTHPROXY_BACKEND_TLS_CA_FILE: is set but AUTHPROXY_BACKEND_TLS is not true"},
		{"nothing to serve", with("AUTHPROXY_LISTEN", "off"), "AUTHPROXY_LISTEN: is off"},
		{"bad ticket key file", with("AUTHPROXY_TLS_TICKET_KEY_FILE", f.CA), "AUTHPROXY_TLS_TICKET_KEY_FILE: ticket keys:"},
		{"CONNECT cap too small", with("AUTHPROXY_MAX_CONNECT_BYTES", "3"), "AUTHPROXY_MAX_CONNECT_BYTES:"},
		{"handshake longer than CONNECT", with("AUTHPROXY_TLS_HANDSHAKE_TIMEOUT", "20s"), "AUTHPROXY_TLS_HANDSHAKE_TIMEOUT: 20s is longer than AUTHPROXY_CONNECT_TIMEOUT"},
		{"negative pending", with("AUTHPROXY_MAX_PENDING", "-1"), "AUTHPROXY_MAX_PENDING:"},
		{"pending over the cap", with("AUTHPROXY_MAX_CONNECTIONS", "10", "AUTHPROXY_MAX_PENDING", "11"), "AUTHPROXY_MAX_PENDING: 11 is out of range"},
		{"no default client ids", with("AUTHPROXY_CLIENTIDS_DEFAULT", "  "), "AUTHPROXY_CLIENTIDS_DEFAULT: is empty"},
		{"bad ACL", with("AUTHPROXY_ACL", "maybe"), "AUTHPROXY_ACL: \"maybe\" is not on or off"},
		{"bad deny action", with("AUTHPROXY_ACL_DENY_ACTION", "kick"), "AUTHPROXY_ACL_DENY_ACTION: \"kick\" is not drop or disconnect"},
		{"packet cap too small", with("AUTHPROXY_MAX_PACKET_BYTES", "10"), "AUTHPROXY_MAX_PACKET_BYTES:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, cmd := range [][]string{{"serve"}, {"check"}} {
				r := runBin(t, c.env, "", cmd...)
				if r.code != 2 || !strings.Contains(r.stderr, c.want) {
					t.Fatalf("%s: exit %d, stderr %q; want exit 2 and %q", cmd[0], r.code, r.stderr, c.want)
				}
			}
		})
	}
	if r := runBin(t, nil, "", "bogus"); r.code != 2 || !strings.Contains(r.stderr, "unknown command") {
		t.Fatalf("unknown command: %+v", r)
	}
	if r := runBin(t, nil, "", "user", "set"); r.code != 2 {
		t.Fatalf("user set without a name: %+v", r)
	}
	if r := runBin(t, nil, "", "hash", "secret-in-argv"); r.code != 2 || strings.Contains(r.stdout, "$argon2id$") {
		t.Fatalf("hash must refuse a password in argv: %+v", r)
	}
}

func TestHelpEverywhere(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"serve", "--help"}, {"demo", "--help"}, {"check", "--help"}, {"user", "--help"},
		{"user", "set", "--help"}, {"user", "show", "--help"}, {"user", "list", "--help"}, {"hash", "--help"}, {"healthcheck", "--help"}} {
		r := runBin(t, nil, "", args...)
		if r.code != 0 || !strings.Contains(r.stderr, "Usage") {
			t.Errorf("%v: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
	if r := runBin(t, nil, "", "version"); r.code != 0 || strings.TrimSpace(r.stdout) != "mqtt-authproxy test" {
		t.Errorf("version: %+v", r)
	}
}

func TestHashOutputVerifies(t *testing.T) {
	r := runBin(t, nil, "correct horse\n", "hash")
	if r.code != 0 {
		t.Fatalf("hash: %+v", r)
	}
	h := strings.TrimSpace(r.stdout)
	if err := passwords.CheckHashFormat(h); err != nil || !strings.HasPrefix(h, "$argon2id$") {
		t.Fatalf("hash printed %q: %v", h, err)
	}
	// Store it as redis-cli would and let the store decide.
	m := miniredis.RunT(t)
	m.HSet("mqtt:user:op", "password", h)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()
	s := authstore.New(rdb, authstore.Options{})
	for pw, want := range map[string]bool{"correct horse": true, "correct horse\n": false, "wrong": false} {
		d, err := s.Authenticate(context.Background(), policy.Request{Username: "op", HasPassword: true, Password: pw})
		if err != nil || d.Allowed() != want {
			t.Errorf("password %q: %+v %v, want allowed=%v", pw, d, err, want)
		}
	}
	if r := runBin(t, nil, "", "hash"); r.code != 2 || !strings.Contains(r.stderr, "no password on standard input") {
		t.Fatalf("hash with empty stdin: %+v", r)
	}
}

// proc is the binary running in the background.
type proc struct {
	cmd    *exec.Cmd
	stdout *testenv.SyncBuffer
	stderr *testenv.SyncBuffer
	done   chan struct{} // closed when the process has exited
}

func startBin(t *testing.T, env map[string]string, args ...string) *proc {
	t.Helper()
	return startBinAt(t, binary, env, args...)
}

// startBinAt is startBin with another build of the command.
func startBinAt(t *testing.T, bin string, env map[string]string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &proc{cmd: cmd, stdout: &testenv.SyncBuffer{}, stderr: &testenv.SyncBuffer{}}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	p.done = done
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return p
}

func dialMQTT(t *testing.T, addr string, pool *tls.Config, c packets.Connect) (*mqtttest.Client, packets.Connack) {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, pool)
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	cl, ack, err := mqtttest.Connect(conn, c)
	if err != nil {
		t.Fatalf("CONNECT: %v", err)
	}
	return cl, ack
}

func TestOperatorCLIChangesDecisions(t *testing.T) {
	rs := testenv.Redis(t)
	broker := testenv.Mosquitto(t, testenv.MosquittoOptions{})
	f, ca, _ := certs(t)
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	metrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	env := map[string]string{
		"AUTHPROXY_TLS_CERT_FILE": f.ServerCert, "AUTHPROXY_TLS_KEY_FILE": f.ServerKey, "AUTHPROXY_LISTEN": listen,
		"AUTHPROXY_BACKEND_ADDR": broker.Addr(), "AUTHPROXY_REDIS_URL": testenv.RedisURL(rs), "AUTHPROXY_METRICS_LISTEN": metrics,
		"AUTHPROXY_LOG_FORMAT": "json",
	}
	p := startBin(t, env, "serve")
	waitHTTP(t, "http://"+metrics+"/healthz", 200)
	if r := runBin(t, env, "", "check"); r.code != 0 || strings.Count(r.stdout, "ok ") != 4 {
		t.Fatalf("check with everything up: %+v", r)
	}
	tlsCfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}

	// Create with a password on stdin, then connect.
	r := runBin(t, env, "s3cret\n", "user", "set", "alice", "--clientids", "dev-*, %u", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"action":"created"`) {
		t.Fatalf("user set: %+v", r)
	}
	if _, ack := dialMQTT(t, listen, tlsCfg, mqtttest.Creds(packets.V311, "dev-1", "alice", "s3cret")); ack.Code != 0 {
		t.Fatalf("after user set: 0x%02X", ack.Code)
	}
	if _, ack := dialMQTT(t, listen, tlsCfg, mqtttest.Creds(packets.V311, "other", "alice", "s3cret")); ack.Code != 0x02 {
		t.Fatalf("client id outside the globs: 0x%02X", ack.Code)
	}
	r = runBin(t, env, "", "user", "disable", "alice")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "user alice disabled" {
		t.Fatalf("disable: %+v", r)
	}
	if _, ack := dialMQTT(t, listen, tlsCfg, mqtttest.Creds(packets.V311, "dev-1", "alice", "s3cret")); ack.Code != 0x05 {
		t.Fatalf("after disable: 0x%02X, want 0x05", ack.Code)
	}
	r = runBin(t, env, "", "user", "show", "alice", "--json")
	var u operator.User
	if err := json.Unmarshal([]byte(r.stdout), &u); err != nil || u.Enabled || !u.HasPassword || len(u.ClientIDs) != 2 {
		t.Fatalf("show --json: %+v %v", r, err)
	}
	if strings.Contains(r.stdout, "argon2id$") || strings.Contains(r.stdout, "s3cret") {
		t.Fatal("show printed the hash or the password")
	}
	r = runBin(t, env, "", "user", "show", "alice")
	if !regexp.MustCompile(`(?m)^enabled:\s+false$`).MatchString(r.stdout) {
		t.Fatalf("show: %+v", r)
	}
	runBin(t, env, "", "user", "enable", "alice")
	live, ack := dialMQTT(t, listen, tlsCfg, mqtttest.Creds(packets.V5, "dev-1", "alice", "s3cret"))
	if ack.Code != 0 {
		t.Fatalf("after enable: 0x%02X", ack.Code)
	}
	// A live connection: "user kick" closes it with DISCONNECT 0x98, the
	// user may come back; "user disable" closes the next one too.
	if r := runBin(t, env, "", "user", "kick", "alice"); r.code != 0 || !strings.Contains(r.stdout, "(1 proxies listening)") {
		t.Fatalf("kick: %+v", r)
	}
	if h, pkt, err := live.ReadPacket(5 * time.Second); err != nil || h.Type != packets.DISCONNECT || pkt[2] != 0x98 {
		t.Fatalf("kicked connection got %x %v, want DISCONNECT 0x98", pkt, err)
	}
	live, ack = dialMQTT(t, listen, tlsCfg, mqtttest.Creds(packets.V311, "dev-2", "alice", "s3cret"))
	if ack.Code != 0 {
		t.Fatalf("after kick: 0x%02X", ack.Code)
	}
	runBin(t, env, "", "user", "disable", "alice")
	if _, _, err := live.ReadPacket(5 * time.Second); err == nil {
		t.Fatal("disable did not close the live v3.1.1 connection")
	}
	runBin(t, env, "", "user", "enable", "alice")
	// --generate prints a password once; it works.
	r = runBin(t, env, "", "user", "set", "bob", "--generate", "--json")
	var gen map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &gen); err != nil || len(gen["password"]) < 20 {
		t.Fatalf("--generate: %+v", r)
	}
	if _, ack := dialMQTT(t, listen, tlsCfg, mqtttest.Creds(packets.V311, "bob", "bob", gen["password"])); ack.Code != 0 {
		t.Fatalf("generated password: 0x%02X", ack.Code)
	}
	// Rotate: the old password stops working on the next CONNECT.
	runBin(t, env, "n3w\n", "user", "set", "bob", "--password")
	if _, ack := dialMQTT(t, listen, tlsCfg, mqtttest.Creds(packets.V311, "bob", "bob", gen["password"])); ack.Code != 0x04 {
		t.Fatalf("old password after rotation: 0x%02X", ack.Code)
	}
	r = runBin(t, env, "", "user", "list", "--json")
	if strings.TrimSpace(r.stdout) != `["alice","bob"]` {
		t.Fatalf("list: %+v", r)
	}
	if r = runBin(t, env, "", "user", "delete", "bob"); r.code != 0 {
		t.Fatalf("delete: %+v", r)
	}
	if _, ack := dialMQTT(t, listen, tlsCfg, mqtttest.Creds(packets.V311, "bob", "bob", "n3w")); ack.Code != 0x04 {
		t.Fatalf("deleted user: 0x%02X", ack.Code)
	}
	if r = runBin(t, env, "", "user", "delete", "bob"); r.code != 1 || !strings.Contains(r.stderr, "no such user") {
		t.Fatalf("delete twice: %+v", r)
	}
	if r = runBin(t, env, "", "user", "set", "carol", "--cidrs", "300.0.0.0/8", "--password-hash", "$2b$04$.MyMYYEjToFnNHnw3bpEqeesH5ElAsqBHvBxHoVFgBFxhAGLw8lwy"); r.code != 2 {
		t.Fatalf("invalid cidr: %+v", r)
	}

	// The decision log names the outcome and never the password.
	logs := p.stderr.String()
	for _, want := range []string{`"outcome":"accepted"`, `"outcome":"disabled"`, `"outcome":"clientid_not_allowed"`, `"resumed":false`, `"tls":"TLS 1.3"`,
		`"msg":"kicked"`, `"msg":"revoked"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s", want)
		}
	}
	for _, secret := range []string{"s3cret", "n3w", gen["password"]} {
		if strings.Contains(logs, secret) {
			t.Fatalf("a password is in the log")
		}
	}

	// /readyz follows Redis; check fails clearly with Redis down.
	waitHTTP(t, "http://"+metrics+"/readyz", 200)
	rs.Stop()
	waitHTTP(t, "http://"+metrics+"/readyz", 503)
	r = runBin(t, env, "", "check")
	if r.code != 1 || !strings.Contains(r.stdout, "FAIL  redis") || !strings.Contains(r.stdout, "ok    backend") {
		t.Fatalf("check with Redis down: %+v", r)
	}
	if _, ack := dialMQTT(t, listen, tlsCfg, mqtttest.Creds(packets.V311, "dev-1", "alice", "s3cret")); ack.Code != 0x03 {
		t.Fatalf("Redis down: 0x%02X, want 0x03", ack.Code)
	}
	rs.Start()
	waitHTTP(t, "http://"+metrics+"/readyz", 200)
	broker.Stop()
	r = runBin(t, env, "", "check")
	if r.code != 1 || !strings.Contains(r.stdout, "FAIL  backend") {
		t.Fatalf("check with the broker down: %+v", r)
	}
	if r := runBin(t, map[string]string{"AUTHPROXY_METRICS_LISTEN": metrics}, "", "healthcheck"); r.code != 0 {
		t.Fatalf("healthcheck: %+v", r)
	}
}

func waitHTTP(t *testing.T, url string, status int) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, fmt.Sprintf("%s to answer %d", url, status), func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == status
	})
}

func TestDemo(t *testing.T) {
	port := testenv.FreePort(t)
	redisPort := testenv.FreePort(t)
	metrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	p := startBinAt(t, demoBinary(t), nil, "demo", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--redis", fmt.Sprintf("127.0.0.1:%d", redisPort),
		"--broker", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "--metrics", metrics, "--dir", t.TempDir())
	testenv.WaitFor(t, 30*time.Second, "the demo to print its commands", func() bool {
		return strings.Contains(p.stdout.String(), "Ctrl-C stops the demo.")
	})
	out := p.stdout.String()
	field := func(name string) string {
		m := regexp.MustCompile(`(?m)^\s+` + name + `:\s+(\S+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("demo output lacks %q:\n%s", name, out)
		}
		return m[1]
	}
	caFile, addr, user, password := field("CA certificate"), field(`proxy \(TLS\)`), field("user"), field("password")
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg := &tls.Config{RootCAs: poolOf(t, pem), ServerName: "localhost"}
	_, p2, _ := net.SplitHostPort(addr)
	addr = net.JoinHostPort("127.0.0.1", p2)

	sub, ack := dialMQTT(t, addr, tlsCfg, mqtttest.Creds(packets.V311, "demo:sub", user, password))
	if ack.Code != 0 {
		t.Fatalf("seeded user: 0x%02X", ack.Code)
	}
	pub, ack := dialMQTT(t, addr, tlsCfg, mqtttest.Creds(packets.V5, "demo:pub", user, password))
	if ack.Code != 0 {
		t.Fatalf("seeded user v5: 0x%02X", ack.Code)
	}
	if err := sub.Subscribe("demo/#", 1); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish("demo/hello", []byte("hi"), 1, false); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.ReadPublish(5 * time.Second); err != nil || string(m.Payload) != "hi" {
		t.Fatalf("message: %+v %v", m, err)
	}

	// The printed CLI command against the embedded Redis.
	cli := regexp.MustCompile(`(?m)^\s+AUTHPROXY_REDIS_URL=(\S+) \S+ user disable`).FindStringSubmatch(out)
	if cli == nil {
		t.Fatalf("no disable command printed:\n%s", out)
	}
	// The seeded user holds the topics of the printed commands (topic
	// rules are on by default).
	r := runBin(t, map[string]string{"AUTHPROXY_REDIS_URL": cli[1]}, "", "user", "show", user, "--json")
	var seeded operator.User
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &seeded) != nil ||
		!slices.Equal(seeded.Publish, []string{"demo/#"}) || !slices.Equal(seeded.Subscribe, []string{"demo/#"}) {
		t.Fatalf("seeded user: %+v", r)
	}
	if !strings.Contains(out, "-t 'demo/#'") || !strings.Contains(out, "-t demo/hello") {
		t.Fatalf("printed commands use topics outside demo/#:\n%s", out)
	}
	if r := runBin(t, map[string]string{"AUTHPROXY_REDIS_URL": cli[1]}, "", "user", "disable", user); r.code != 0 {
		t.Fatalf("user disable: %+v", r)
	}
	// The live connections are closed (the v5 one with DISCONNECT 0x98)...
	if h, pkt, err := pub.ReadPacket(5 * time.Second); err != nil || h.Type != packets.DISCONNECT || pkt[2] != 0x98 {
		t.Fatalf("live v5 connection after disable: %x %v", pkt, err)
	}
	if _, _, err := sub.ReadPacket(5 * time.Second); err == nil {
		t.Fatal("live v3.1.1 connection not closed after disable")
	}
	// ...and the reconnect is refused.
	if _, ack := dialMQTT(t, addr, tlsCfg, mqtttest.Creds(packets.V311, "demo:sub", user, password)); ack.Code != 0x05 {
		t.Fatalf("after disable: 0x%02X, want 0x05", ack.Code)
	}
	wants := []string{`authproxy_connects_total{outcome="accepted"} 2`, `authproxy_connects_total{outcome="disabled"} 1`,
		`authproxy_tls_handshakes_total{resumed="false"}`, "authproxy_connections_active 0", `authproxy_bytes_relayed_total{direction="upstream"}`,
		`authproxy_disconnects_total{cause="revoked"} 2`, `authproxy_revalidations_total{result="revoked"} 2`}
	var body []byte
	missing := func() []string {
		resp, err := http.Get("http://" + metrics + "/metrics")
		if err != nil {
			return []string{err.Error()}
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		var out []string
		for _, w := range wants {
			if !bytes.Contains(body, []byte(w)) {
				out = append(out, w)
			}
		}
		return out
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(missing()) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if m := missing(); len(m) > 0 {
		t.Errorf("/metrics lacks %v", m)
	}
	// Ctrl-C stops it cleanly.
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
		if !p.cmd.ProcessState.Success() {
			t.Fatalf("demo exit: %v\n%s", p.cmd.ProcessState, p.stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("demo did not stop on SIGINT")
	}
	// Its embedded Redis cannot answer CONFIG GET, which the demo needs
	// not: no line about keyspace notifications worries a newcomer.
	if strings.Contains(p.stderr.String(), "keyspace") {
		t.Errorf("the demo's log speaks of keyspace notifications:\n%s", p.stderr.String())
	}
}

func poolOf(t *testing.T, pem []byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		t.Fatal("no CA in the printed file")
	}
	return p
}
