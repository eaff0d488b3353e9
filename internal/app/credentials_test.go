package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/pki"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// credStack is the proxy with credentials beyond passwords, wired as serve
// wires it, in front of a real mosquitto and Redis: an issuer whose JWKS
// a test server serves over HTTPS (users: token), client certificates
// with CERT_USERNAME=cn, and the key the test's tokens are signed with.
type credStack struct {
	t      *testing.T
	files  files
	ca     *pki.CA
	redis  *testenv.Server
	admin  *redis.Client
	broker *testenv.Server
	logs   *testenv.SyncBuffer
	apps   []*App
	key    string // the issuer's signing key (PEM file)
	jwks   *httptest.Server
	config Config
}

const (
	testIssuer     = "https://idp.test/"
	deviceAudience = "projects/fleet/locations/eu/registries/meters"
)

// pyMint runs the tokens package's minting script with Debian's
// python3-jwt, an implementation independent of the proxy's.
func pyMint(t *testing.T, req map[string]any) string {
	t.Helper()
	b, _ := json.Marshal(req)
	cmd := exec.Command("/usr/bin/python3", filepath.Join("..", "..", "authstore", "tokens", "testdata", "mint.py"))
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mint.py: %v (Debian's python3-jwt is needed: apt-get install python3-jwt)", err)
	}
	return string(out)
}

func startCredStack(t *testing.T) *credStack {
	t.Helper()
	cs := &credStack{t: t, files: testFiles(t), logs: &testenv.SyncBuffer{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("proxy log:\n%s", cs.logs.String())
		}
	})
	cs.redis = testenv.Redis(t)
	cs.admin = redis.NewClient(&redis.Options{Addr: cs.redis.Addr()})
	t.Cleanup(func() { cs.admin.Close() })
	cs.broker = testenv.Mosquitto(t, testenv.MosquittoOptions{})
	var err error
	if cs.ca, err = pki.NewCA("device CA"); err != nil {
		t.Fatal(err)
	}
	clientCA := writeFile(t, t.TempDir(), "client-ca.pem", cs.ca.PEM)
	cs.key = filepath.Join(t.TempDir(), "idp.pem")
	if out, err := exec.Command("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", cs.key).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	body := pyMint(t, map[string]any{"op": "jwks", "keys": []map[string]any{{"pem": cs.key, "kid": "idp-1"}}})
	cs.jwks = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(body)) }))
	t.Cleanup(cs.jwks.Close)
	jwksCA := writeFile(t, t.TempDir(), "jwks-ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cs.jwks.Certificate().Raw}))
	issuers := writeFile(t, t.TempDir(), "issuers.yaml", []byte(fmt.Sprintf(
		"issuers:\n  - issuer: %s\n    jwks_url: %s/jwks.json\n    ca_file: %s\n    audience: mqtt\n    users: token\n", testIssuer, cs.jwks.URL, jwksCA)))
	c := Defaults()
	c.Listen, c.MetricsListen = "127.0.0.1:0", "127.0.0.1:0"
	c.TLSCertFile, c.TLSKeyFile, c.TLSClientCAFile, c.TLSClientAuth = cs.files.ServerCert, cs.files.ServerKey, clientCA, "request"
	c.RedisURL, c.BackendAddr, c.ShutdownGrace = testenv.RedisURL(cs.redis), cs.broker.Addr(), time.Second
	c.JWTIssuersFile, c.JWTLeeway, c.CertUsername = issuers, time.Second, "cn"
	c.JWTDeviceAudience = deviceAudience
	c.AuthFailLimitIP, c.AuthFailLimitUser = "0", "0"
	cs.config = c
	cs.start()
	return cs
}

// start starts one more replica of the stack.
func (cs *credStack) start() *App {
	a := startApp(cs.t, cs.config, cs.logs)
	cs.t.Cleanup(a.Stop)
	cs.apps = append(cs.apps, a)
	testenv.WaitFor(cs.t, 10*time.Second, "the issuer's keys and the change feed", func() bool {
		_, body := get(cs.t, "http://"+a.Addrs().Admin.String()+"/readyz")
		n, err := a.Store().Kick(context.Background(), "nobody")
		return strings.Contains(body, `"jwks":"ok"`) && err == nil && n >= int64(len(cs.apps))
	})
	return a
}

// token mints a token of the test issuer for sub, valid for life.
func (cs *credStack) token(sub, jti string, life time.Duration, extra map[string]any) string {
	now := time.Now().Unix()
	c := map[string]any{"iss": testIssuer, "aud": "mqtt", "sub": sub, "iat": now, "exp": now + int64(life/time.Second), "jti": jti,
		"publish": []string{"devices/%u/#"}, "subscribe": []string{"devices/%u/#"}}
	for k, v := range extra {
		c[k] = v
	}
	return pyMint(cs.t, map[string]any{"op": "token", "alg": "ES256", "key": cs.key, "claims": c, "headers": map[string]any{"kid": "idp-1"}})
}

func (cs *credStack) port(i int) string {
	return strconv.Itoa(cs.apps[i].Addrs().TLS.(*net.TCPAddr).Port)
}

// dial opens a TLS connection to replica i.
func (cs *credStack) dial(i int, c *tls.Config) *tls.Conn {
	cs.t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cs.ca.PEM)
	ca, _ := os.ReadFile(cs.files.CA)
	pool.AppendCertsFromPEM(ca)
	if c == nil {
		c = &tls.Config{}
	}
	c.RootCAs, c.ServerName = pool, "localhost"
	conn, err := tls.Dial("tcp", cs.apps[i].Addrs().TLS.String(), c)
	if err != nil {
		cs.t.Fatal(err)
	}
	return conn
}

// connectToken connects with the token as the password and no user name.
func (cs *credStack) connectToken(i int, level packets.Level, clientID, tok string) (*mqtttest.Client, packets.Connack) {
	cs.t.Helper()
	c := packets.Connect{ProtocolLevel: level, CleanStart: true, ClientID: clientID, PasswordFlag: true, Password: tok, UsernameFlag: level != packets.V5}
	cl, ack, err := mqtttest.Connect(cs.dial(i, nil), c)
	if err != nil {
		cs.t.Fatal(err)
	}
	return cl, ack
}

// TestTokensWithRealClients: mosquitto_pub with a token as its password
// (no user name) publishes through the proxy in MQTT 3.1.1 and 5; a token
// for another audience is refused with 0x04 / 0x86; Debian's paho (Python)
// is disconnected when its token expires (MQTT 5: 0xA0; 3.1.1 closed);
// MQTT.js is disconnected with 0x98 when its token is revoked. No token
// is logged, recorded or sent to the broker.
func TestTokensWithRealClients(t *testing.T) {
	cs := startCredStack(t)
	ca := cs.files.CA
	pub := testenv.LookPath(t, "mosquitto_pub")
	var minted []string
	for _, v := range []string{"mqttv311", "mqttv5"} {
		tok := cs.token("meter-"+v, "pub-"+v, 10*time.Minute, nil)
		minted = append(minted, tok)
		out, err := exec.Command(pub, "-h", "localhost", "-p", cs.port(0), "--cafile", ca, "-u", "", "-P", tok, "-V", v,
			"-i", "meter-"+v, "-t", "devices/meter-"+v+"/power", "-m", "42", "-q", "1", "-d").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "received PUBACK") {
			t.Fatalf("%s: mosquitto_pub with a token: %v\n%s", v, err, out)
		}
		bad := cs.token("meter-"+v, "bad-"+v, 10*time.Minute, map[string]any{"aud": "another-service"})
		minted = append(minted, bad)
		out, err = exec.Command(pub, "-h", "localhost", "-p", cs.port(0), "--cafile", ca, "-u", "", "-P", bad, "-V", v,
			"-i", "meter-"+v, "-t", "devices/meter-"+v+"/power", "-m", "42", "-q", "1").CombinedOutput()
		if err == nil || !strings.Contains(strings.ToLower(string(out)), "bad user name or password") {
			t.Fatalf("%s: a token for another audience: %v\n%s", v, err, out)
		}
	}
	minted = append(minted, expiryWithPaho(t, cs)...)
	minted = append(minted, revocationWithMQTTjs(t, cs)...)
	neverShown(t, cs, minted)
}

// expiryWithPaho: the session of a token that expires ends at its exp
// plus the leeway (1 s here). Debian's paho (Python) in 3.1.1 and 5 is
// disconnected then (paho 1.6 does not read a DISCONNECT's reason code
// when it has no properties, so it reports the connection lost), and
// paho.golang reads MQTT 5's DISCONNECT 0xA0 (maximum connect time).
func expiryWithPaho(t *testing.T, cs *credStack) []string {
	py := "/usr/bin/python3"
	const script = `
import sys, time, paho.mqtt.client as mqtt
host, port, ca, tok, cid, proto = sys.argv[1:7]
v5 = proto == "5"
c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
c.username_pw_set("", tok)
c.tls_set(ca_certs=ca)
out = {}
def on_connect(client, userdata, flags, rc, properties=None):
    out["connack"] = rc.value if hasattr(rc, "value") else rc
    out["at"] = time.time()
def on_disconnect(client, userdata, rc, properties=None):
    if "after" not in out:
        out["after"] = round(time.time() - out.get("at", time.time()), 1)
c.on_connect, c.on_disconnect = on_connect, on_disconnect
c.connect(host, int(port), 60)
deadline = time.time() + 20
while "after" not in out and time.time() < deadline:
    c.loop(timeout=0.2)
print(out["connack"], out.get("after", "never"))
`
	var minted []string
	for _, proto := range []string{"4", "5"} {
		tok := cs.token("paho-"+proto, "paho-"+proto, 3*time.Second, nil)
		minted = append(minted, tok)
		out, err := exec.Command(py, "-c", script, "localhost", cs.port(0), cs.files.CA, tok, "paho-"+proto, proto).CombinedOutput()
		if err != nil {
			t.Fatalf("paho %s: %v\n%s", proto, err, out)
		}
		var connack int
		var after float64
		if _, err := fmt.Sscanf(string(out), "%d %g", &connack, &after); err != nil || connack != 0 || after < 1 {
			t.Fatalf("paho MQTT %s: %q, want CONNACK 0 then a disconnection at exp + 1 s (about 3 to 4 s later)", proto, out)
		}
	}
	tok := cs.token("paho-go", "paho-go", 3*time.Second, nil)
	disconnected := make(chan *paho.Disconnect, 1)
	pc := paho.NewClient(paho.ClientConfig{Conn: cs.dial(0, nil), PingHandler: quietPinger{},
		OnServerDisconnect: func(d *paho.Disconnect) { disconnected <- d }})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if ack, err := pc.Connect(ctx, &paho.Connect{ClientID: "paho-go", CleanStart: true, KeepAlive: 30,
		PasswordFlag: true, Password: []byte(tok)}); err != nil || ack.ReasonCode != 0 {
		t.Fatalf("paho.golang CONNECT with a token: %v %v", ack, err)
	}
	select {
	case d := <-disconnected:
		if d.ReasonCode != 0xA0 {
			t.Fatalf("paho.golang: DISCONNECT 0x%02X at the token's expiry, want 0xA0", d.ReasonCode)
		}
	case <-ctx.Done():
		t.Fatal("paho.golang: no DISCONNECT at the token's expiry")
	}
	return append(minted, tok)
}

// revocationWithMQTTjs: MQTT.js with a token in 3.1.1 and 5; token
// revoke --jti closes its session: 5 with DISCONNECT 0x98, 3.1.1 closed.
func revocationWithMQTTjs(t *testing.T, cs *credStack) []string {
	var minted []string
	for _, version := range []int{4, 5} {
		v := strconv.Itoa(version)
		jti := "js-" + v
		tok := cs.token("js-"+v, jti, 10*time.Minute, nil)
		minted = append(minted, tok)
		args := map[string]any{"url": "mqtts://localhost:" + cs.port(0), "version": version, "ca": cs.files.CA, "username": "",
			"password": tok, "clientId": "js-" + v, "topic": "devices/js-" + v + "/#", "scenario": "revoke"}
		got := mqttJS(t, args, func(m map[string]any) {
			if m["ready"] == true {
				if _, err := cs.apps[0].Store().Revocations().RevokeJTI(context.Background(), jti, time.Time{}); err != nil {
					t.Error(err)
				}
			}
		})
		want := map[string]any{"disconnect": float64(0x98)}
		if version == 4 {
			want = map[string]any{"closed": true}
		}
		if len(got) != 2 || got[0]["ready"] != true || fmt.Sprint(got[1]) != fmt.Sprint(want) {
			t.Fatalf("MQTT.js v%s revocation: %v, want ready then %v", v, got, want)
		}
	}
	return minted
}

// neverShown: no token, nor its signature, is in the logs, the decision
// log or the bytes the broker saw; the decision log records the
// credential kind, the issuer and the jti.
func neverShown(t *testing.T, cs *credStack, minted []string) {
	cs.apps[0].DecisionLog().Close()
	entries, err := cs.admin.XRange(context.Background(), "mqtt:decisions", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	recorded := false
	for _, e := range entries {
		fmt.Fprintln(&all, e.Values)
		if e.Values["credential"] == "token" && e.Values["issuer"] == testIssuer && e.Values["jti"] == "pub-mqttv5" {
			recorded = true
		}
	}
	if !recorded {
		t.Errorf("the decision log does not record the token's kind, issuer and jti:\n%s", all.String())
	}
	for _, tok := range minted {
		sig := tok[strings.LastIndexByte(tok, '.')+1:]
		for where, text := range map[string]string{"logs": cs.logs.String(), "decision log": all.String(), "broker": cs.broker.Output()} {
			if strings.Contains(text, sig) || strings.Contains(text, tok[:strings.IndexByte(tok, '.')+20]) {
				t.Errorf("a token is in the %s", where)
			}
		}
	}
	_, metrics := get(t, "http://"+cs.apps[0].Addrs().Admin.String()+"/metrics")
	for _, want := range []string{`authproxy_token_refused_total{cause="audience"} 2`, `authproxy_jwks_keys{issuer="` + testIssuer + `"} 1`,
		`authproxy_jwks_fetch_failures_total{issuer="` + testIssuer + `"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestTokenRevocationOnEveryReplica: every token of a subject revoked
// (token revoke --sub) closes its sessions on two replicas with DISCONNECT
// 0x98, within a second (awaited with a margin), and refuses its next
// CONNECT with 0x86.
func TestTokenRevocationOnEveryReplica(t *testing.T) {
	cs := startCredStack(t)
	cs.start()
	var clients []*mqtttest.Client
	for i := range 2 {
		cl, ack := cs.connectToken(i, packets.V5, fmt.Sprintf("valve-7:%d", i), cs.token("valve-7", fmt.Sprintf("v%d", i), time.Hour, nil))
		if !ack.Accepted() {
			t.Fatalf("replica %d: CONNACK 0x%02X", i, ack.Code)
		}
		clients = append(clients, cl)
	}
	start := time.Now()
	if _, err := cs.apps[1].Store().Revocations().RevokeSubject(context.Background(), testIssuer, "valve-7", time.Time{}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i, cl := range clients {
		wg.Go(func() {
			_, pkt, err := cl.ReadPacket(3 * time.Second)
			if err != nil || len(pkt) < 3 || pkt[0] != 0xE0 || pkt[2] != 0x98 {
				t.Errorf("replica %d: % x %v, want DISCONNECT 0x98", i, pkt, err)
			}
		})
	}
	wg.Wait()
	t.Logf("both sessions closed %v after the revocation", time.Since(start))
	_, ack := cs.connectToken(0, packets.V5, "valve-7:again", cs.token("valve-7", "v9", time.Hour, nil))
	if ack.Code != badCredentials(packets.V5) {
		t.Fatalf("a revoked subject's new token: 0x%02X", ack.Code)
	}
}

// TestRevokedCertificateOnResumedSessions: a device authenticated by its
// certificate's CN (no user name, no password) over TLS 1.2 and 1.3;
// revoking the certificate (cert revoke --file) closes its live session,
// and its next CONNECT on a resumed TLS session is refused with 0x04 /
// 0x86: revocation reaches resumed sessions.
func TestRevokedCertificateOnResumedSessions(t *testing.T) {
	cs := startCredStack(t)
	caSum := pki.Issued{Cert: cs.ca.Cert}.SHA256()
	for _, v := range []struct {
		tls   uint16
		level packets.Level
	}{{tls.VersionTLS12, packets.V311}, {tls.VersionTLS13, packets.V5}} {
		name := fmt.Sprintf("cam-%x", v.tls)
		dev, err := cs.ca.Client(name)
		if err != nil {
			t.Fatal(err)
		}
		storeCLI(t, cs.admin, "HSET", "mqtt:user:"+name, "certs", "ca:sha256:"+caSum, "publish", "cams/%u")
		cache := tls.NewLRUClientSessionCache(4)
		cfg := func() *tls.Config {
			return &tls.Config{MinVersion: v.tls, MaxVersion: v.tls, Certificates: []tls.Certificate{dev.TLS()}, ClientSessionCache: cache}
		}
		connect := func() (*tls.Conn, *mqtttest.Client, packets.Connack) {
			conn := cs.dial(0, cfg())
			cl, ack, err := mqtttest.Connect(conn, packets.Connect{ProtocolLevel: v.level, CleanStart: true, ClientID: name})
			if err != nil {
				t.Fatal(err)
			}
			return conn, cl, ack
		}
		conn, cl, ack := connect()
		if !ack.Accepted() || conn.ConnectionState().DidResume {
			t.Fatalf("%s: first CONNECT 0x%02X (resumed %v)", name, ack.Code, conn.ConnectionState().DidResume)
		}
		cl.Disconnect()
		conn, cl, ack = connect()
		if !ack.Accepted() || !conn.ConnectionState().DidResume {
			t.Fatalf("%s: a resumed session before revocation: 0x%02X (resumed %v)", name, ack.Code, conn.ConnectionState().DidResume)
		}
		if _, err := cs.apps[0].Store().Revocations().RevokeCert(context.Background(), dev.Cert, []*x509.Certificate{cs.ca.Cert}, time.Time{}); err != nil {
			t.Fatal(err)
		}
		_, pkt, err := cl.ReadPacket(3 * time.Second)
		if v.level == packets.V5 && (len(pkt) < 3 || pkt[2] != 0x98) || v.level == packets.V311 && err == nil {
			t.Fatalf("%s: the live session after the revocation: % x %v", name, pkt, err)
		}
		conn, _, ack = connect()
		if !conn.ConnectionState().DidResume || ack.Code != badCredentials(v.level) {
			t.Fatalf("%s: a resumed session after revocation: 0x%02X (resumed %v), want 0x86 / 0x04", name, ack.Code, conn.ConnectionState().DidResume)
		}
	}
	if got := cs.apps[0].Store().Revoked().Size(); got != 2 {
		t.Fatalf("revoked set of %d", got)
	}
}

// badCredentials is the CONNACK code of a wrong password in level.
func badCredentials(level packets.Level) byte {
	if level == packets.V5 {
		return byte(packets.BadUserNameOrPassword)
	}
	return 4
}

// storeCLI runs a Redis command as an operator would.
func storeCLI(t *testing.T, admin *redis.Client, args ...any) {
	t.Helper()
	if err := admin.Do(context.Background(), args...).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestReadyzWaitsForIssuerKeys: /readyz is not ready while a listed
// issuer's keys have never loaded (its JWKS URL answers 500), and the
// failed reads are counted.
func TestReadyzWaitsForIssuerKeys(t *testing.T) {
	f := testFiles(t)
	down := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) }))
	t.Cleanup(down.Close)
	ca := writeFile(t, t.TempDir(), "ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: down.Certificate().Raw}))
	issuers := writeFile(t, t.TempDir(), "issuers.yaml", []byte("issuers:\n  - issuer: https://down/\n    jwks_url: "+down.URL+"\n    ca_file: "+ca+"\n    audience: mqtt\n"))
	c := Defaults()
	c.Listen, c.MetricsListen = "127.0.0.1:0", "127.0.0.1:0"
	c.TLSCertFile, c.TLSKeyFile = f.ServerCert, f.ServerKey
	c.BackendAddr, c.RedisURL, c.ShutdownGrace = fakeBroker(t), testenv.RedisURL(testenv.Redis(t)), time.Second
	c.JWTIssuersFile = issuers
	a := startApp(t, c, &testenv.SyncBuffer{})
	t.Cleanup(a.Stop)
	base := "http://" + a.Addrs().Admin.String()
	code, body := get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"jwks":"unavailable"`) {
		t.Fatalf("/readyz with an issuer's keys never loaded: %d %s", code, body)
	}
	testenv.WaitFor(t, 10*time.Second, "a failed JWKS read counted", func() bool {
		_, m := get(t, base+"/metrics")
		series := `authproxy_jwks_fetch_failures_total{issuer="https://down/"} `
		return strings.Contains(m, series) && !strings.Contains(m, series+"0\n")
	})
}

// TestDeviceSignedTokensWithMosquittoPub: a device signs its own token (as
// Cloud IoT Core's devices did) with a key its user's jwt_keys holds;
// mosquitto_pub connects with it in 3.1.1 and 5; a token whose lifetime
// exceeds 24 h is refused.
func TestDeviceSignedTokensWithMosquittoPub(t *testing.T) {
	cs := startCredStack(t)
	key := filepath.Join(t.TempDir(), "device.pem")
	if out, err := exec.Command("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	jwks := pyMint(t, map[string]any{"op": "jwks", "keys": []map[string]any{{"pem": key}}})
	storeCLI(t, cs.admin, "HSET", "mqtt:user:dev-42", "jwt_keys", jwks, "publish", "devices/%u/events/#")
	pub := testenv.LookPath(t, "mosquitto_pub")
	now := time.Now().Unix()
	for _, c := range []struct {
		v    string
		life int64
		ok   bool
	}{{"mqttv311", 3600, true}, {"mqttv5", 3600, true}, {"mqttv5", 25 * 3600, false}} {
		tok := pyMint(t, map[string]any{"op": "token", "alg": "ES256", "key": key,
			"claims": map[string]any{"aud": deviceAudience, "iat": now, "exp": now + c.life}})
		out, err := exec.Command(pub, "-h", "localhost", "-p", cs.port(0), "--cafile", cs.files.CA, "-u", "dev-42", "-P", tok, "-V", c.v,
			"-i", "dev-42", "-t", "devices/dev-42/events/t", "-m", "21.5", "-q", "1").CombinedOutput()
		if (err == nil) != c.ok {
			t.Fatalf("%s, a token living %d s: %v\n%s", c.v, c.life, err, out)
		}
	}
}
