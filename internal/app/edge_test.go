package app

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/eclipse/paho.golang/paho"
	paholog "github.com/eclipse/paho.golang/paho/log"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// edgeForwarder sits in front of the broker and counts the connections
// that reach it: the proof that a refused device reaches nothing.
type edgeForwarder struct {
	l       net.Listener
	accepts atomic.Int64
	wg      sync.WaitGroup
}

func newEdgeForwarder(t *testing.T, target string) *edgeForwarder {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &edgeForwarder{l: l}
	t.Cleanup(func() { l.Close(); f.wg.Wait() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			f.accepts.Add(1)
			f.wg.Go(func() {
				defer c.Close()
				b, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer b.Close()
				go func() { _, _ = io.Copy(c, b); c.Close() }()
				_, _ = io.Copy(b, c)
			})
		}
	}()
	return f
}

// edgeStack is the proxy as serve runs it (Start), with its TLS and
// WebSocket listeners, in front of a real mosquitto and a real Redis.
type edgeStack struct {
	t     *testing.T
	app   *App
	files files
	pool  *x509.CertPool
	logs  *testenv.SyncBuffer
	front *edgeForwarder
}

func startEdge(t *testing.T, change func(*Config)) *edgeStack {
	t.Helper()
	redis := testenv.Redis(t)
	broker := testenv.Mosquitto(t, testenv.MosquittoOptions{})
	e := &edgeStack{t: t, files: testFiles(t), logs: &testenv.SyncBuffer{}, front: newEdgeForwarder(t, broker.Addr())}
	c := Defaults()
	c.Listen, c.WSListen, c.MetricsListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	c.TLSCertFile, c.TLSKeyFile = e.files.ServerCert, e.files.ServerKey
	c.RedisURL, c.BackendAddr, c.ShutdownGrace = testenv.RedisURL(redis), e.front.l.Addr().String(), time.Second
	if change != nil {
		change(&c)
	}
	s, err := c.Validate()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("proxy log:\n%s", e.logs.String())
		}
	})
	e.app, err = Start(context.Background(), s, slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.app.Stop)
	ca, err := os.ReadFile(e.files.CA)
	if err != nil {
		t.Fatal(err)
	}
	e.pool = x509.NewCertPool()
	e.pool.AppendCertsFromPEM(ca)
	return e
}

// user creates a user allowed every topic, with the given cidrs rule
// (none when empty).
func (e *edgeStack) user(name, password string, cidrs ...string) {
	e.t.Helper()
	all := []string{"#"}
	u := operator.Update{Password: &password, Publish: &all, Subscribe: &all}
	if len(cidrs) > 0 {
		u.CIDRs = &cidrs
	}
	if err := e.app.Store().SetUser(context.Background(), name, u); err != nil {
		e.t.Fatal(err)
	}
}

func (e *edgeStack) tlsConfig() *tls.Config {
	return &tls.Config{RootCAs: e.pool, ServerName: "localhost"}
}

// handshakes is the sum of authproxy_tls_handshakes_total.
func (e *edgeStack) handshakes() int {
	e.t.Helper()
	_, body := get(e.t, "http://"+e.app.Addrs().Admin.String()+"/metrics")
	n := 0
	for _, m := range regexp.MustCompile(`(?m)^authproxy_tls_handshakes_total\{[^}]*\} (\d+)`).FindAllStringSubmatch(body, -1) {
		v, _ := strconv.Atoi(m[1])
		n += v
	}
	return n
}

// connectLine waits for the proxy's connect log line of a client id and
// returns it.
func (e *edgeStack) connectLine(clientID string) string {
	e.t.Helper()
	var line string
	testenv.WaitFor(e.t, 5*time.Second, "the connect log line of "+clientID, func() bool {
		for _, l := range strings.Split(e.logs.String(), "\n") {
			if strings.Contains(l, "msg=connect ") && strings.Contains(l, "client_id="+clientID+" ") {
				line = l
				return true
			}
		}
		return false
	})
	return line
}

// dialFrom connects to addr from the loopback address src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// mqttOver sends a v3.1.1 CONNECT over TLS on c and returns the CONNACK's
// code.
func (e *edgeStack) mqttOver(c net.Conn, user, password string) byte {
	e.t.Helper()
	tc := tls.Client(c, e.tlsConfig())
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		e.t.Fatalf("TLS handshake: %v", err)
	}
	cl, ack, err := mqtttest.Connect(tc, mqtttest.Creds(packets.V311, user, user, password))
	if err != nil {
		e.t.Fatalf("CONNECT %s: %v", user, err)
	}
	if ack.Code == 0 {
		cl.Disconnect()
	}
	return ack.Code
}

// startHAProxy runs a real HAProxy (mode tcp) on a free loopback port in
// front of target, sending a PROXY v2 header on every connection.
func startHAProxy(t *testing.T, target string) string {
	t.Helper()
	bin := testenv.LookPath(t, "haproxy")
	port := testenv.FreePort(t)
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	conf := fmt.Sprintf(`global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend devices
    bind 127.0.0.1:%d
    default_backend authproxy
backend authproxy
    server authproxy %s send-proxy-v2
`, port, target)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := &testenv.SyncBuffer{}
	cmd := exec.CommandContext(ctx, bin, "-db", "-f", cfg)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out.String())
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	testenv.WaitFor(t, 10*time.Second, "haproxy to listen", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr
}

// TestProxyProtocolEdge: with PROXY_PROTOCOL_FROM=127.0.0.1/32, the
// address in a balancer's header is the device's. Behind a real HAProxy
// (send-proxy-v2), a device connecting from 127.0.0.2 passes a cidrs
// rule of 127.0.0.2/32 and is refused (0x05) by one of 127.0.0.3/32, and
// the connect log line shows 127.0.0.2; a hand-made v1 header from the
// trusted address is honoured (cidrs 192.0.2.0/24); a forged header from
// an untrusted address, and a trusted address without a header, are
// closed before TLS: no handshake is counted and the broker sees nothing.
// (The decision log carries the same address; it is asserted through the
// log line here while the decision log is being built.)
func TestProxyProtocolEdge(t *testing.T) {
	e := startEdge(t, func(c *Config) { c.ProxyProtocolFrom = "127.0.0.1/32" })
	tlsAddr := e.app.Addrs().TLS.String()
	lb := startHAProxy(t, tlsAddr)
	e.user("lb-ok", "pw-ok", "127.0.0.2/32")
	e.user("lb-no", "pw-no", "127.0.0.3/32")
	e.user("v1-dev", "pw-v1", "192.0.2.0/24")

	if code := e.mqttOver(dialFrom(t, "127.0.0.2", lb), "lb-ok", "pw-ok"); code != 0 {
		t.Errorf("through HAProxy from 127.0.0.2, cidrs 127.0.0.2/32: CONNACK 0x%02X, want 0", code)
	}
	if line := e.connectLine("lb-ok"); !strings.Contains(line, "remote=127.0.0.2:") || !strings.Contains(line, "outcome=accepted") {
		t.Errorf("connect line %q: want remote=127.0.0.2 and accepted", line)
	}
	if code := e.mqttOver(dialFrom(t, "127.0.0.2", lb), "lb-no", "pw-no"); code != 0x05 {
		t.Errorf("through HAProxy from 127.0.0.2, cidrs 127.0.0.3/32: CONNACK 0x%02X, want 0x05", code)
	}
	if line := e.connectLine("lb-no"); !strings.Contains(line, "remote=127.0.0.2:") || !strings.Contains(line, "outcome=address_not_allowed") {
		t.Errorf("connect line %q: want remote=127.0.0.2 and address_not_allowed", line)
	}

	// A v1 header written by hand, from the trusted address.
	c := dialFrom(t, "127.0.0.1", tlsAddr)
	if _, err := io.WriteString(c, "PROXY TCP4 192.0.2.7 127.0.0.1 5555 8883\r\n"); err != nil {
		t.Fatal(err)
	}
	if code := e.mqttOver(c, "v1-dev", "pw-v1"); code != 0 {
		t.Errorf("v1 header from 192.0.2.7, cidrs 192.0.2.0/24: CONNACK 0x%02X, want 0", code)
	}
	if line := e.connectLine("v1-dev"); !strings.Contains(line, "remote=192.0.2.7:5555 ") {
		t.Errorf("connect line %q: want remote=192.0.2.7:5555", line)
	}

	// A forged header from an address not trusted, and no header from the
	// trusted one: closed before TLS.
	handshakes, reached := e.handshakes(), e.front.accepts.Load()
	for _, tc := range []struct {
		name, src, send, log string
	}{
		{"forged header from 127.0.0.9", "127.0.0.9", "PROXY TCP4 192.0.2.7 127.0.0.1 5555 8883\r\n", "not trusted to send one"},
		{"no header from the balancer", "127.0.0.1", "", "no PROXY protocol header"},
	} {
		c := dialFrom(t, tc.src, tlsAddr)
		if tc.send != "" {
			if _, err := io.WriteString(c, tc.send); err != nil {
				t.Fatal(err)
			}
		}
		tc2 := tls.Client(c, e.tlsConfig())
		_ = tc2.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc2.Handshake(); err == nil {
			t.Errorf("%s: the TLS handshake succeeded", tc.name)
		}
		testenv.WaitFor(t, 5*time.Second, "the refusal in the log", func() bool { return strings.Contains(e.logs.String(), tc.log) })
	}
	if n := e.handshakes(); n != handshakes {
		t.Errorf("authproxy_tls_handshakes_total moved from %d to %d", handshakes, n)
	}
	if n := e.front.accepts.Load(); n != reached {
		t.Errorf("the broker saw %d new connections", n-reached)
	}
}

// jsDir is where .ci/run installs MQTT.js (npm ci).
func jsDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("testdata", "js"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "mqtt", "dist", "mqtt.min.js")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("MQTT.js is not installed in %s: .ci/run must run npm ci there", dir)
		}
		t.Skipf("MQTT.js is not installed: run npm ci in %s", dir)
	}
	return dir
}

// mqttJS runs client.js with args and returns its stdout, a JSON object a
// line; onLine sees each line as it comes.
func mqttJS(t *testing.T, args map[string]any, onLine func(map[string]any)) []map[string]any {
	t.Helper()
	node := testenv.LookPath(t, "node")
	dir := jsDir(t)
	b, _ := json.Marshal(args)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "client.js"), string(b))
	cmd.Dir = dir
	stderr := &testenv.SyncBuffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []map[string]any
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Errorf("client.js printed %q", sc.Text())
			continue
		}
		lines = append(lines, m)
		if onLine != nil {
			onLine(m)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Logf("client.js %v: %v\nstdout: %v\nstderr: %s", args["scenario"], err, lines, stderr.String())
	}
	return lines
}

// TestWebSocketMQTTjs: MQTT.js (node) over wss through the proxy to
// mosquitto, MQTT 3.1.1 and 5: publish/subscribe round trip, a wrong
// password refused with 4 / 134 (0x86), and a revocation delivered as
// DISCONNECT 152 (0x98) inside a WebSocket frame to the v5 client; the
// 3.1.1 client is closed. Each decision is logged and counted as on the
// TLS listener.
func TestWebSocketMQTTjs(t *testing.T) {
	e := startEdge(t, nil)
	url := "wss://127.0.0.1:" + strconv.Itoa(e.app.Addrs().WS.(*net.TCPAddr).Port) + "/mqtt"
	for _, version := range []int{4, 5} {
		v := strconv.Itoa(version)
		user := "js" + v
		e.user(user, "secret-"+v)
		base := map[string]any{"url": url, "version": version, "ca": e.files.CA, "username": user, "topic": "devices/" + user}

		args := withArgs(base, "scenario", "pubsub", "clientId", user+":pubsub", "password", "secret-"+v, "payload", "hello over wss "+v)
		got := mqttJS(t, args, nil)
		if len(got) != 1 || got[0]["payload"] != "hello over wss "+v || got[0]["topic"] != "devices/"+user {
			t.Errorf("v%s publish/subscribe: %v", v, got)
		}

		wantCode := map[int]float64{4: 4, 5: 134}[version]
		got = mqttJS(t, withArgs(base, "scenario", "badpass", "clientId", user+":bad", "password", "wrong"), nil)
		if len(got) != 1 || got[0]["code"] != wantCode {
			t.Errorf("v%s wrong password: %v, want code %v", v, got, wantCode)
		}
		if line := e.connectLine(user + ":bad"); !strings.Contains(line, "outcome=bad_credentials") {
			t.Errorf("connect line %q", line)
		}

		got = mqttJS(t, withArgs(base, "scenario", "revoke", "clientId", user+":revoke", "password", "secret-"+v), func(m map[string]any) {
			if m["ready"] == true {
				if err := e.app.Store().SetEnabled(context.Background(), user, false); err != nil {
					t.Error(err)
				}
			}
		})
		want := map[string]any{"disconnect": float64(0x98)}
		if version == 4 {
			want = map[string]any{"closed": true}
		}
		if len(got) != 2 || got[0]["ready"] != true || fmt.Sprint(got[1]) != fmt.Sprint(want) {
			t.Errorf("v%s revocation: %v, want ready then %v", v, got, want)
		}
	}
	_, body := get(t, "http://"+e.app.Addrs().Admin.String()+"/metrics")
	for _, series := range []string{`authproxy_connects_total{outcome="accepted"} 4`, `authproxy_connects_total{outcome="bad_credentials"} 2`,
		`authproxy_disconnects_total{cause="revoked"} 2`} {
		if !strings.Contains(body, series) {
			t.Errorf("/metrics lacks %s", series)
		}
	}
}

func withArgs(base map[string]any, kv ...string) map[string]any {
	m := map[string]any{}
	for k, v := range base {
		m[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// quietPinger never pings: the tests are shorter than any keep alive
// (paho.golang's own pinger may write a PINGREQ inside another packet).
type quietPinger struct{}

func (quietPinger) Run(ctx context.Context, _ net.Conn, _ uint16) error { <-ctx.Done(); return nil }
func (quietPinger) PacketSent()                                         {}
func (quietPinger) PacketReceived()                                     {}
func (quietPinger) PingResp()                                           {}
func (quietPinger) SetDebug(paholog.Logger)                             {}

// dialWS opens a WebSocket to the proxy's WebSocket listener, with
// header added to the upgrade request.
func (e *edgeStack) dialWS(header http.Header) (*websocket.Conn, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return websocket.Dial(ctx, "wss://"+e.app.Addrs().WS.String()+"/mqtt", &websocket.DialOptions{
		Subprotocols: []string{"mqtt"}, HTTPHeader: header,
		HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: e.tlsConfig()}}})
}

// TestWebSocketPaho: paho.golang (MQTT 5) over a coder/websocket client
// connection: publish/subscribe through the proxy, then a revocation
// arrives as DISCONNECT 0x98. A browser Origin that is not listed gets
// 403 before any MQTT byte; a listed one is upgraded.
func TestWebSocketPaho(t *testing.T) {
	e := startEdge(t, func(c *Config) { c.WSOrigins = "https://dashboard.example.com" })
	e.user("paho", "paho-pw")
	ws, _, err := e.dialWS(nil)
	if err != nil {
		t.Fatal(err)
	}
	nc := websocket.NetConn(context.Background(), ws, websocket.MessageBinary)
	defer nc.Close()
	msgs := make(chan *paho.Publish, 1)
	disconnected := make(chan *paho.Disconnect, 1)
	pc := paho.NewClient(paho.ClientConfig{Conn: nc, PingHandler: quietPinger{},
		OnServerDisconnect: func(d *paho.Disconnect) { disconnected <- d },
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			msgs <- pr.Packet
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ack, err := pc.Connect(ctx, &paho.Connect{ClientID: "paho:ws", CleanStart: true, KeepAlive: 30,
		UsernameFlag: true, Username: "paho", PasswordFlag: true, Password: []byte("paho-pw")})
	if err != nil || ack.ReasonCode != 0 {
		t.Fatalf("CONNECT over WebSocket: %v %v", ack, err)
	}
	if _, err := pc.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "paho/ws", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Publish(ctx, &paho.Publish{Topic: "paho/ws", QoS: 1, Payload: []byte("from paho over wss")}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-msgs:
		if string(m.Payload) != "from paho over wss" {
			t.Errorf("received %q", m.Payload)
		}
	case <-ctx.Done():
		t.Fatal("no message")
	}
	if line := e.connectLine("paho:ws"); !strings.Contains(line, "remote=127.0.0.1:") || !strings.Contains(line, `tls="TLS 1.3"`) {
		t.Errorf("connect line %q", line)
	}
	if err := e.app.Store().SetEnabled(context.Background(), "paho", false); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-disconnected:
		if d.ReasonCode != 0x98 {
			t.Errorf("DISCONNECT 0x%02X, want 0x98", d.ReasonCode)
		}
	case <-ctx.Done():
		t.Fatal("no DISCONNECT after the revocation")
	}

	// Origins: one not listed is refused before the upgrade.
	handshakes := e.handshakes()
	_, resp, err := e.dialWS(http.Header{"Origin": {"https://evil.example.net"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("origin not listed: %v %v, want 403", resp, err)
	}
	ws2, resp, err := e.dialWS(http.Header{"Origin": {"https://dashboard.example.com"}})
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Errorf("listed origin: %v %v", resp, err)
	} else {
		ws2.CloseNow()
	}
	// authproxy_tls_handshakes_total counts the connections whose transport
	// was terminated: the upgraded one, not the one refused at its upgrade.
	// The server counts after it has sent 101, so the count is awaited.
	n := e.handshakes()
	for deadline := time.Now().Add(5 * time.Second); n < handshakes+1 && time.Now().Before(deadline); n = e.handshakes() {
		time.Sleep(10 * time.Millisecond)
	}
	if n != handshakes+1 {
		t.Errorf("handshakes %d -> %d, want one more", handshakes, n)
	}
}

// TestValidateEdge: the edge variables are checked and derived in one
// place: a WebSocket listener alone needs (and gets) the TLS settings, its
// message cap follows MAX_CONNECT_BYTES and MAX_PACKET_BYTES, a bare
// address in PROXY_PROTOCOL_FROM is one host, and each bad value is a
// ConfigError naming its variable. The terminators wrap as configured.
func TestValidateEdge(t *testing.T) {
	f := testFiles(t)
	c := validConfig(f)
	c.PlainListen, c.WSListen, c.WSOrigins = "", "127.0.0.1:8884", "https://App.example.com *"
	c.ProxyProtocolFrom, c.MaxPacketBytes = "10.1.2.0/24 192.0.2.7 2001:db8::/32", 2<<20
	s, err := c.Validate()
	if err != nil {
		t.Fatal(err)
	}
	if s.TLS == nil || s.Edge.WSListen != "127.0.0.1:8884" || s.Edge.WSMaxMessage != 2<<20 || s.Edge.WSPath != "/mqtt" ||
		fmt.Sprint(s.Edge.WSOrigins) != "[https://app.example.com *]" ||
		fmt.Sprint(s.Edge.ProxyProtocolFrom) != "[10.1.2.0/24 192.0.2.7/32 2001:db8::/32]" {
		t.Fatalf("Settings %+v, edge %+v", s, s.Edge)
	}
	wrapped := fmt.Sprintf("%T %T %T", deviceTerminator(tlsDevice, nil, s.Edge), deviceTerminator(wsDevice, nil, s.Edge),
		deviceTerminator(plainDevice, nil, EdgeSettings{}))
	if wrapped != "*transport.ProxyProtocol *transport.ProxyProtocol transport.Plain" {
		t.Errorf("terminators %s", wrapped)
	}

	for _, tc := range []struct {
		change  func(*Config)
		wantVar string
	}{
		{func(c *Config) { c.WSListen = "8884" }, "AUTHPROXY_WS_LISTEN"},
		{func(c *Config) { c.WSPath = "mqtt" }, "AUTHPROXY_WS_PATH"},
		{func(c *Config) { c.WSPath = "/mqtt?x=1" }, "AUTHPROXY_WS_PATH"},
		{func(c *Config) { c.WSOrigins = "app.example.com" }, "AUTHPROXY_WS_ORIGINS"},
		{func(c *Config) { c.WSOrigins = "https://app.example.com/path" }, "AUTHPROXY_WS_ORIGINS"},
		{func(c *Config) { c.WSPingInterval = -time.Second }, "AUTHPROXY_WS_PING_INTERVAL"},
		{func(c *Config) { c.ProxyProtocolFrom = "10.0.0.0/33" }, "AUTHPROXY_PROXY_PROTOCOL_FROM"},
		{func(c *Config) { c.ProxyProtocolFrom = "balancer.internal" }, "AUTHPROXY_PROXY_PROTOCOL_FROM"},
		{func(c *Config) { c.PlainListen, c.WSListen, c.TLSCertFile = "", ":8884", "" }, "AUTHPROXY_TLS_CERT_FILE"},
	} {
		cfg := validConfig(f)
		tc.change(&cfg)
		_, err := cfg.Validate()
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Var != tc.wantVar {
			t.Errorf("got %v; want a ConfigError naming %s", err, tc.wantVar)
		}
	}
	cfg := validConfig(f)
	cfg.PlainListen, cfg.WSListen, cfg.TLSCertFile = "", ":8884", ""
	if _, err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "the WebSocket listener AUTHPROXY_WS_LISTEN=:8884") {
		t.Errorf("a WebSocket listener without a certificate: %v", err)
	}
}

// pahoPython is Debian's python3 with python3-paho-mqtt (1.6): the test
// is skipped where it is not installed, except on CI.
func pahoPython(t *testing.T) string {
	t.Helper()
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import paho.mqtt.client").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s cannot import paho.mqtt (apt-get install python3-paho-mqtt): %v", python, err)
		}
		t.Skipf("%s cannot import paho.mqtt (apt-get install python3-paho-mqtt): %v", python, err)
	}
	return python
}

// pahoPyClient connects with Eclipse paho's Python client over wss
// (transport="websockets", which sends Origin: https://<host>:<port>, its
// own target, on the handshake), MQTT 3.1.1, to args' host and port with
// its CA; with CONNACK 0 it subscribes to the topic, publishes the payload
// at QoS 1 and waits for it to come back. It prints one JSON object: the
// CONNACK code, the message received, or the error.
const pahoPyClient = `
import json, sys, threading
import paho.mqtt.client as mqtt

args = json.loads(sys.argv[1])
out = {}
connected, received = threading.Event(), threading.Event()

def on_connect(client, userdata, flags, rc):
    out["connack"] = rc
    connected.set()
    if rc == 0:
        client.subscribe(args["topic"], qos=1)

def on_subscribe(client, userdata, mid, granted):
    client.publish(args["topic"], args["payload"], qos=1)

def on_message(client, userdata, msg):
    out["topic"], out["payload"] = msg.topic, msg.payload.decode()
    received.set()

c = mqtt.Client(client_id=args["clientId"], protocol=mqtt.MQTTv311, transport="websockets")
c.ws_set_options(path="/mqtt")
c.tls_set(ca_certs=args["ca"])
c.username_pw_set(args["username"], args["password"])
c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
try:
    c.connect(args["host"], args["port"], keepalive=30)
except Exception as e:
    out["error"] = type(e).__name__ + ": " + str(e)
    print(json.dumps(out))
    sys.exit(0)
c.loop_start()
if connected.wait(20) and out.get("connack") == 0:
    received.wait(20)
c.disconnect()
c.loop_stop()
print(json.dumps(out))
`

// runPahoPy runs pahoPyClient with args and returns what it printed.
func runPahoPy(t *testing.T, python string, args map[string]any) map[string]any {
	t.Helper()
	b, _ := json.Marshal(args)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-c", pahoPyClient, string(b))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("paho (python): %v\nstdout: %s\nstderr: %s", err, stdout, stderr.String())
	}
	var got map[string]any
	if err := json.Unmarshal(stdout, &got); err != nil {
		t.Fatalf("paho (python) printed %q (%v)\nstderr: %s", stdout, err, stderr.String())
	}
	return got
}

// TestWebSocketPahoPython: Eclipse paho's Python client (1.6, as Debian
// ships it) sends Origin: https://<host>:<port> on every WebSocket
// handshake; with WS_ORIGINS unset that same-origin request is upgraded:
// CONNACK 0 and a publish round trip through the proxy and mosquitto, a
// wrong password refused with 4. A foreign Origin (a Go client's) still
// gets 403, as do the same host under another name or scheme.
func TestWebSocketPahoPython(t *testing.T) {
	python := pahoPython(t)
	e := startEdge(t, nil)
	e.user("pypaho", "pypaho-pw")
	e.user("pybad", "pybad-pw")
	port := e.app.Addrs().WS.(*net.TCPAddr).Port
	base := map[string]any{"host": "127.0.0.1", "port": port, "ca": e.files.CA, "username": "pypaho", "topic": "devices/pypaho"}

	got := runPahoPy(t, python, withArgs(base, "clientId", "pypaho", "password", "pypaho-pw", "payload", "hello from paho python"))
	if got["connack"] != float64(0) || got["payload"] != "hello from paho python" || got["topic"] != "devices/pypaho" {
		t.Errorf("paho (python) over wss: %v, want CONNACK 0 and the message back", got)
	}
	if line := e.connectLine("pypaho"); !strings.Contains(line, "outcome=accepted") {
		t.Errorf("connect line %q", line)
	}
	got = runPahoPy(t, python, withArgs(base, "clientId", "pybad", "username", "pybad", "password", "wrong"))
	if got["connack"] != float64(4) {
		t.Errorf("paho (python), wrong password: %v, want CONNACK 4", got)
	}
	if line := e.connectLine("pybad"); !strings.Contains(line, "outcome=bad_credentials") {
		t.Errorf("connect line %q", line)
	}

	self := "https://127.0.0.1:" + strconv.Itoa(port)
	for _, c := range []struct {
		origin string
		want   int
	}{
		{self, http.StatusSwitchingProtocols},
		{"https://evil.example.net", http.StatusForbidden},
		{"https://evil.example.net:" + strconv.Itoa(port), http.StatusForbidden},
		{"https://localhost:" + strconv.Itoa(port), http.StatusForbidden}, // Host is 127.0.0.1:<port>
		{"http://127.0.0.1:" + strconv.Itoa(port), http.StatusForbidden},
	} {
		ws, resp, err := e.dialWS(http.Header{"Origin": {c.origin}})
		if ws != nil {
			ws.CloseNow()
		}
		if resp == nil || resp.StatusCode != c.want {
			t.Errorf("Origin %s: %v %v, want %d", c.origin, resp, err, c.want)
		}
	}
}
