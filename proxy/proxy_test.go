package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/transport"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/pki"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

var tlsVersions = []struct {
	name string
	v    uint16
}{{"TLS1.2", tls.VersionTLS12}, {"TLS1.3", tls.VersionTLS13}}

func ptr[T any](v T) *T { return &v }

// TestClientCertRemovedOnResumedSession: a certificate whose fingerprint is
// taken out of the user's certs is refused, even on a resumed session.
func TestClientCertRemovedOnResumedSession(t *testing.T) {
	h := newHarness(t, harnessOptions{clientCA: true})
	dev, err := h.ca.Client("device-7")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := h.ca.Client("device-8")
	for _, tv := range tlsVersions {
		t.Run(tv.name, func(t *testing.T) {
			h.setUser("carol", operator.Update{Password: ptr("pw"), Certs: &[]string{"sha256:" + dev.SHA256()}})
			h.setUser("certonly", operator.Update{Certs: &[]string{"sha256:" + dev.SHA256()}})
			cfg := h.clientTLS(tv.v)
			cfg.Certificates = []tls.Certificate{dev.TLS()}
			c, ack, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V311, "carol:c7", "carol", "pw"))
			if ack.Code != 0 {
				t.Fatalf("bound certificate: 0x%02X", ack.Code)
			}
			c.Disconnect()
			co := packets.Connect{ProtocolLevel: packets.V311, CleanStart: true, ClientID: "certonly:c7b", UsernameFlag: true, Username: "certonly"}
			c, ack, resumed := h.connectRaw(cfg, co)
			if ack.Code != 0 || !resumed {
				t.Fatalf("certificate-only user: 0x%02X resumed=%v", ack.Code, resumed)
			}
			c.Disconnect()

			h.setUser("carol", operator.Update{Certs: &[]string{"sha256:" + other.SHA256()}})
			h.setUser("certonly", operator.Update{Certs: &[]string{"sha256:" + other.SHA256()}})
			_, ack, resumed = h.connectRaw(cfg, mqtttest.Creds(packets.V311, "carol:c7", "carol", "pw"))
			if !resumed || ack.Code != 0x05 {
				t.Fatalf("certificate removed, resumed session: 0x%02X resumed=%v, want 0x05", ack.Code, resumed)
			}
			_, ack, resumed = h.connectRaw(cfg, co)
			if !resumed || ack.Code != 0x04 {
				t.Fatalf("certificate-only user, certificate removed, resumed: 0x%02X resumed=%v, want 0x04", ack.Code, resumed)
			}
		})
	}
}

// TestVersionsPublishSubscribe: 3.1, 3.1.1 and 5 clients talk to each other
// through the proxy.
func TestVersionsPublishSubscribe(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.setUser("dev", operator.Update{Password: ptr("pw")})
	cfg := h.clientTLS(tls.VersionTLS13)
	clients := map[packets.Level]*mqtttest.Client{}
	for _, lv := range []packets.Level{packets.V31, packets.V311, packets.V5} {
		c, ack, _ := h.connectRaw(cfg, mqtttest.Creds(lv, fmt.Sprintf("dev:v%d", lv), "dev", "pw"))
		if ack.Code != 0 {
			t.Fatalf("level %d: CONNACK 0x%02X", lv, ack.Code)
		}
		clients[lv] = c
	}
	for _, sub := range []packets.Level{packets.V31, packets.V311, packets.V5} {
		for _, pub := range []packets.Level{packets.V31, packets.V311, packets.V5} {
			if sub == pub {
				continue
			}
			roundTrip(t, clients[sub], clients[pub], fmt.Sprintf("x/%d/%d", sub, pub))
		}
	}
	// A plain-listener client, for trusted networks.
	conn, err := net.Dial("tcp", h.plain)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pc, ack, err := mqtttest.Connect(conn, mqtttest.Creds(packets.V311, "dev:plain", "dev", "pw"))
	if err != nil || ack.Code != 0 {
		t.Fatalf("plain listener: %v 0x%02X", err, ack.Code)
	}
	roundTrip(t, pc, clients[packets.V5], "plain/topic")
}

// TestMosquittoClients: the stock mosquitto_sub and mosquitto_pub with
// --cafile work through the proxy.
func TestMosquittoClients(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	subBin := testenv.LookPath(t, "mosquitto_sub")
	pubBin := testenv.LookPath(t, "mosquitto_pub")
	h.setUser("mq", operator.Update{Password: ptr("mq-pw")})
	_, port, _ := net.SplitHostPort(h.addr)
	ca := certFile(h.certDir, "ca.pem")
	common := []string{"-h", "localhost", "-p", port, "--cafile", ca, "-u", "mq", "-P", "mq-pw", "-V", "mqttv311"}
	sub := exec.Command(subBin, append(common, "-t", "mq/test", "-C", "1", "-W", "10", "-i", "mq:sub")...)
	var out bytes.Buffer
	sub.Stdout, sub.Stderr = &out, &out
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the subscriber's session is relayed, then publish.
	testenv.WaitFor(t, 10*time.Second, "mosquitto_sub to connect", func() bool { return h.proxy.Sessions() >= 1 })
	testenv.WaitFor(t, 10*time.Second, "mosquitto to see the subscription", func() bool {
		return strings.Contains(h.broker.Output(), "mq:sub 0 mq/test")
	})
	if o, err := exec.Command(pubBin, append(common, "-t", "mq/test", "-m", "through the proxy", "-i", "mq:pub")...).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, o)
	}
	if err := sub.Wait(); err != nil {
		t.Fatalf("mosquitto_sub: %v %s", err, out.String())
	}
	if strings.TrimSpace(out.String()) != "through the proxy" {
		t.Fatalf("mosquitto_sub printed %q", out.String())
	}
	// Wrong password: mosquitto_pub reports the refusal and exits non-zero.
	o, err := exec.Command(pubBin, "-h", "localhost", "-p", port, "--cafile", ca, "-u", "mq", "-P", "bad", "-t", "x", "-m", "x").CombinedOutput()
	if err == nil || !strings.Contains(strings.ToLower(string(o)), "not authori") && !strings.Contains(strings.ToLower(string(o)), "bad user") {
		t.Fatalf("mosquitto_pub with a wrong password: %v %s", err, o)
	}
}

// TestStoreAndBrokerDown: fail closed with "server unavailable", recover
// when they are back.
func TestStoreAndBrokerDown(t *testing.T) {
	h := newHarness(t, harnessOptions{redisTimeout: 200 * time.Millisecond})
	h.setUser("eve", operator.Update{Password: ptr("pw")})
	cfg := h.clientTLS(tls.VersionTLS13)
	expect := func(level packets.Level, want byte) {
		t.Helper()
		c, ack, _ := h.connectRaw(cfg, mqtttest.Creds(level, "eve:e", "eve", "pw"))
		if ack.Code != want {
			t.Fatalf("level %d: CONNACK 0x%02X, want 0x%02X", level, ack.Code, want)
		}
		if want == 0 {
			c.Disconnect()
		}
	}
	expect(packets.V311, 0)

	h.redis.Stop()
	before := h.front.accepts.Load()
	expect(packets.V311, 0x03)
	expect(packets.V5, 0x88)
	if h.front.accepts.Load() != before {
		t.Fatal("the broker was dialled while the store was down")
	}
	h.redis.Start()
	h.setUser("eve", operator.Update{Password: ptr("pw")}) // no persistence: the restart emptied it
	testenv.WaitFor(t, 5*time.Second, "recovery after Redis restart", func() bool {
		c, ack, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V311, "eve:e", "eve", "pw"))
		c.Conn.Close()
		return ack.Code == 0
	})

	h.broker.Stop()
	expect(packets.V311, 0x03)
	expect(packets.V5, 0x88)
	h.broker.Start()
	expect(packets.V311, 0)
	expect(packets.V5, 0)
}

// TestBadInputNeverReachesBroker: every kind of bad first contact is closed
// (with the right CONNACK where one is due), the broker never sees a
// connection, and the proxy keeps serving.
func TestBadInputNeverReachesBroker(t *testing.T) {
	h := newHarness(t, harnessOptions{connectTimeout: 300 * time.Millisecond})
	h.setUser("fay", operator.Update{Password: ptr("pw")})
	cfg := h.clientTLS(tls.VersionTLS13)
	// read reads until the proxy closes c. It waits well past
	// CONNECT_TIMEOUT (300ms) for a silent client, and less than the 5 s
	// default of TLS_HANDSHAKE_TIMEOUT, which would otherwise close it: a
	// timeout error here is a connection left open.
	read := func(c net.Conn) ([]byte, error) {
		_ = c.SetReadDeadline(time.Now().Add(4 * time.Second))
		var buf bytes.Buffer
		_, err := buf.ReadFrom(c)
		return buf.Bytes(), err
	}
	cases := []struct {
		name string
		send []byte
		want []byte // what the proxy answers before closing
	}{
		{"silent client", nil, nil},
		{"PUBLISH first", []byte{0x30, 0x05, 0x00, 0x01, 't', 'h', 'i'}, nil},
		{"CONNECT over the cap", []byte{0x10, 0xFF, 0xFF, 0x04}, nil},
		{"malformed length", []byte{0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}, nil},
		{"reserved flag v3.1.1", []byte{0x10, 0x0D, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x03, 0, 60, 0, 1, 'c'}, nil},
		{"reserved flag v5", []byte{0x10, 0x0E, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x03, 0, 60, 0, 0, 1, 'c'}, []byte{0x20, 3, 0, 0x81, 0}},
		{"unsupported level", []byte{0x10, 0x0D, 0, 4, 'M', 'Q', 'T', 'T', 9, 0x02, 0, 60, 0, 1, 'c'}, []byte{0x20, 2, 0, 0x01}},
		{"empty client id, no clean session", []byte{0x10, 0x0C, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x00, 0, 60, 0, 0}, []byte{0x20, 2, 0, 0x02}},
		{"truncated CONNECT", []byte{0x10, 0x20, 0, 4, 'M', 'Q'}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn := h.dialTLS(cfg)
			if c.send != nil {
				if _, err := conn.Write(c.send); err != nil {
					t.Fatal(err)
				}
			}
			got, err := read(conn)
			if err != nil && !strings.Contains(err.Error(), "reset") {
				t.Fatalf("connection not closed: %v", err)
			}
			if !bytes.Equal(got, c.want) {
				t.Fatalf("answer %x, want %x", got, c.want)
			}
		})
	}
	t.Run("garbage instead of TLS", func(t *testing.T) {
		conn, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		got, _ := read(conn)
		if bytes.Contains(got, []byte("HTTP")) {
			t.Fatalf("answered %q", got)
		}
	})
	t.Run("TLS handshake never finished", func(t *testing.T) {
		conn, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := read(conn); isTimeout(err) {
			t.Fatalf("a silent TCP client was not closed at CONNECT_TIMEOUT: %v", err)
		}
	})
	if n := h.front.accepts.Load(); n != 0 {
		t.Fatalf("the broker saw %d connections from unauthenticated clients", n)
	}
	// Wrong credentials never reach the broker either.
	for _, lv := range []packets.Level{packets.V31, packets.V311, packets.V5} {
		if _, ack, _ := h.connectRaw(cfg, mqtttest.Creds(lv, "fay:x", "fay", "nope")); ack.Code == 0 {
			t.Fatal("wrong password accepted")
		}
	}
	if n := h.front.accepts.Load(); n != 0 {
		t.Fatalf("the broker saw %d connections from refused clients", n)
	}
	// And the proxy still serves.
	c, ack, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V311, "fay:ok", "fay", "pw"))
	if ack.Code != 0 {
		t.Fatalf("after bad input: 0x%02X", ack.Code)
	}
	c.Disconnect()
	if n := h.front.accepts.Load(); n != 1 {
		t.Fatalf("broker connections: %d, want 1", n)
	}
}

// TestBrokerSeesRewrittenConnect: the broker never sees the device's
// password; it sees the configured backend credentials.
func TestBrokerSeesRewrittenConnect(t *testing.T) {
	t.Run("backend password, device's user name kept", func(t *testing.T) {
		h := newHarness(t, harnessOptions{brokerUsers: map[string]string{"gus": "broker-secret"}, backendPass: "broker-secret"})
		h.setUser("gus", operator.Update{Password: ptr("device-secret")})
		c, ack, _ := h.connectRaw(h.clientTLS(tls.VersionTLS12), mqtttest.Creds(packets.V311, "gus:g1", "gus", "device-secret"))
		if ack.Code != 0 {
			t.Fatalf("CONNACK 0x%02X: the broker refused the rewritten credentials", ack.Code)
		}
		c.Disconnect()
		h.broker.WaitOutput("u'gus'", 5*time.Second)
		for _, b := range h.front.seen() {
			if bytes.Contains(b, []byte("device-secret")) {
				t.Fatal("the device's password reached the broker")
			}
			if !bytes.Contains(b, []byte("broker-secret")) {
				t.Fatal("the backend password was not sent")
			}
		}
	})
	t.Run("backend user name and password", func(t *testing.T) {
		h := newHarness(t, harnessOptions{brokerUsers: map[string]string{"svc": "svc-pw"}, backendUser: "svc", backendPass: "svc-pw"})
		// A client id that does not hold the user name, so that no byte of
		// the device's user name may reach the broker.
		h.setUser("hal", operator.Update{Password: ptr("device-secret"), ClientIDs: &[]string{"h1"}})
		c, ack, _ := h.connectRaw(h.clientTLS(tls.VersionTLS13), mqtttest.Creds(packets.V5, "h1", "hal", "device-secret"))
		if ack.Code != 0 {
			t.Fatalf("CONNACK 0x%02X", ack.Code)
		}
		c.Disconnect()
		h.broker.WaitOutput("u'svc'", 5*time.Second)
		for _, b := range h.front.seen() {
			if bytes.Contains(b, []byte("device-secret")) || bytes.Contains(b, []byte("hal")) {
				t.Fatalf("the broker saw the device's credentials: %q", b)
			}
		}
	})
	t.Run("no backend credentials: no password at all", func(t *testing.T) {
		h := newHarness(t, harnessOptions{})
		h.setUser("ivy", operator.Update{Password: ptr("device-secret")})
		c, ack, _ := h.connectRaw(h.clientTLS(tls.VersionTLS13), mqtttest.Creds(packets.V311, "ivy:i1", "ivy", "device-secret"))
		if ack.Code != 0 {
			t.Fatalf("CONNACK 0x%02X", ack.Code)
		}
		c.Disconnect()
		seen := h.front.seen()
		if len(seen) != 1 {
			t.Fatalf("%d broker connections", len(seen))
		}
		got, err := packets.DecodeConnect(seen[0][:packetLen(t, seen[0])])
		if err != nil {
			t.Fatal(err)
		}
		if got.PasswordFlag || got.Username != "ivy" || got.ClientID != "ivy:i1" {
			t.Fatalf("broker got %+v", got)
		}
		if strings.Contains(h.logs.String(), "device-secret") {
			t.Fatal("a password was logged")
		}
	})
}

func packetLen(t *testing.T, b []byte) int {
	h, err := packets.ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	return h.Size()
}

// TestNoGoroutineLeak: hundreds of connections of every kind leave no
// goroutine behind.
func TestNoGoroutineLeak(t *testing.T) {
	h := newHarness(t, harnessOptions{connectTimeout: 500 * time.Millisecond})
	h.setUser("jo", operator.Update{Password: ptr("pw")})
	cfg := h.clientTLS(tls.VersionTLS13)
	// Warm up: pools, the first handshake, Redis connections.
	c, _, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V311, "jo:w", "jo", "pw"))
	c.Disconnect()
	testenv.WaitFor(t, 5*time.Second, "warm-up session to end", func() bool { return h.proxy.Sessions() == 0 })
	settle := func() int {
		var n int
		for range 50 {
			runtime.GC()
			n = runtime.NumGoroutine()
			time.Sleep(20 * time.Millisecond)
			if n == runtime.NumGoroutine() && h.proxy.Sessions() == 0 {
				break
			}
		}
		return n
	}
	before := settle()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range 300 {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			switch i % 6 {
			case 0: // accepted, clean DISCONNECT
				c, err := tls.Dial("tcp", h.addr, cfg)
				if err == nil {
					if cl, ack, err := mqtttest.Connect(c, mqtttest.Creds(packets.V311, fmt.Sprint("jo:ok", i), "jo", "pw")); err == nil && ack.Code == 0 {
						cl.Disconnect()
					}
					c.Close()
				}
			case 1: // accepted, then dropped without DISCONNECT
				c, err := tls.Dial("tcp", h.addr, cfg)
				if err == nil {
					_, _, _ = mqtttest.Connect(c, mqtttest.Creds(packets.V5, fmt.Sprint("jo:drop", i), "jo", "pw"))
					c.Close()
				}
			case 2: // wrong password
				c, err := tls.Dial("tcp", h.addr, cfg)
				if err == nil {
					_, _, _ = mqtttest.Connect(c, mqtttest.Creds(packets.V311, "jo:bad", "jo", "x"))
					c.Close()
				}
			case 3: // garbage after TLS
				c, err := tls.Dial("tcp", h.addr, cfg)
				if err == nil {
					_, _ = c.Write([]byte{0x30, 0x00})
					c.Close()
				}
			case 4: // garbage instead of TLS
				c, err := net.Dial("tcp", h.addr)
				if err == nil {
					_, _ = c.Write([]byte("hello"))
					c.Close()
				}
			case 5: // TCP connect, then silence until CONNECT_TIMEOUT
				c, err := net.Dial("tcp", h.addr)
				if err == nil {
					_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
					_, _ = c.Read(make([]byte, 1))
					c.Close()
				}
			}
		}()
	}
	wg.Wait()
	testenv.WaitFor(t, 10*time.Second, "sessions to end", func() bool { return h.proxy.Sessions() == 0 })
	// Pooled attempt workers outlive their last attempt by workerIdle:
	// await their exit, and only then count.
	deadline := time.Now().Add(workerIdle + 10*time.Second)
	after := settle()
	for after > before+2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		after = settle()
	}
	if after > before+2 {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		t.Fatalf("goroutines: %d before, %d after\n%s", before, after, buf[:n])
	}
}

// TestShutdown: Shutdown stops accepting at once and drains the sessions
// (paced over SHUTDOWN_GRACE, or DRAIN_RATE; see drain.go): the v5 client
// gets DISCONNECT 0x8B (no DRAIN_SERVER_REFERENCE set), the 3.1.1 client
// is closed, and no new connection is accepted.
func TestShutdown(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.setUser("kim", operator.Update{Password: ptr("pw")})
	cfg := h.clientTLS(tls.VersionTLS13)
	c5, ack, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V5, "kim:k5", "kim", "pw"))
	c3, ack3, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V311, "kim:k3", "kim", "pw"))
	if ack.Code != 0 || ack3.Code != 0 {
		t.Fatal("connect failed")
	}
	done := make(chan struct{})
	go func() { h.proxy.Shutdown(context.Background()); close(done) }()
	hd, pkt, err := c5.ReadPacket(5 * time.Second)
	if err != nil || hd.Type != packets.DISCONNECT || !bytes.Equal(pkt, []byte{0xE0, 1, 0x8B}) {
		t.Fatalf("v5 client got %x %v, want DISCONNECT 0x8B", pkt, err)
	}
	if _, _, err := c3.ReadPacket(5 * time.Second); err == nil {
		t.Fatal("v3 client not closed")
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	if _, err := tls.Dial("tcp", h.addr, cfg); err == nil {
		t.Fatal("accepted a connection after Shutdown")
	}
}

// TestCertificateReload: a replaced certificate is served to new handshakes
// while an open session keeps running.
func TestCertificateReload(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.setUser("lu", operator.Update{Password: ptr("pw")})
	cfg := h.clientTLS(tls.VersionTLS13)
	old, ack, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V311, "lu:l1", "lu", "pw"))
	if ack.Code != 0 {
		t.Fatal("connect")
	}
	first := old.Conn.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber
	next, err := h.ca.Server("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := writeServer(h.certDir, next); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "the new certificate to be served", func() bool {
		c, err := tls.Dial("tcp", h.addr, &tls.Config{RootCAs: h.ca.Pool(), ServerName: "localhost"})
		if err != nil {
			return false
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Cmp(next.Cert.SerialNumber) == 0
	})
	if first.Cmp(next.Cert.SerialNumber) == 0 {
		t.Fatal("serials collide")
	}
	// The session opened before the reload still relays.
	pub, _, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V311, "lu:l2", "lu", "pw"))
	roundTrip(t, old, pub, "reload/t")
}

// TestMaxConnections: past the cap a connection is closed at once, before
// any TLS work; when a slot frees, the next one is served.
func TestMaxConnections(t *testing.T) {
	h := newHarness(t, harnessOptions{maxConnections: 1})
	h.setUser("mo", operator.Update{Password: ptr("pw")})
	cfg := h.clientTLS(tls.VersionTLS13)
	first, ack, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V311, "mo:m1", "mo", "pw"))
	if ack.Code != 0 {
		t.Fatal("first")
	}
	if c, err := tls.Dial("tcp", h.addr, cfg); err == nil {
		c.Close()
		t.Fatal("second connection got a TLS handshake past the cap")
	}
	first.Disconnect()
	testenv.WaitFor(t, 5*time.Second, "the slot to free", func() bool { return h.proxy.Sessions() == 0 })
	testenv.WaitFor(t, 5*time.Second, "a connection to be served again", func() bool {
		c, err := tls.Dial("tcp", h.addr, cfg)
		if err != nil {
			return false
		}
		defer c.Close()
		_, ack, err := mqtttest.Connect(c, mqtttest.Creds(packets.V311, "mo:m2", "mo", "pw"))
		return err == nil && ack.Code == 0
	})
}

// TestBackendTLS: the proxy reaches a broker over TLS, verifying its
// certificate against a CA and a server name, with a client certificate
// the broker requires.
func TestBackendTLS(t *testing.T) {
	ca, err := pki.NewCA("broker CA")
	if err != nil {
		t.Fatal(err)
	}
	brokerCert, _ := ca.Server("broker.internal")
	dir := t.TempDir()
	files, err := pki.WriteFiles(dir, ca, brokerCert)
	if err != nil {
		t.Fatal(err)
	}
	rds := testenv.Redis(t)
	broker := testenv.Mosquitto(t, testenv.MosquittoOptions{TLSCert: files.ServerCert, TLSKey: files.ServerKey, TLSClientCA: files.CA})
	rdb, _ := redisconn.NewClient(testenv.RedisURL(rds))
	defer rdb.Close()
	store := authstore.New(rdb, authstore.Options{})
	if err := store.SetUser(context.Background(), "bt", operator.Update{Password: ptr("pw"), Publish: &[]string{"%u/#"}, Subscribe: &[]string{"%u/#"}}); err != nil {
		t.Fatal(err)
	}
	client, _ := ca.Client("mqtt-authproxy")
	backendTLS := func(name string, withCert bool) *tls.Config {
		c := &tls.Config{RootCAs: ca.Pool(), ServerName: name}
		if withCert {
			c.Certificates = []tls.Certificate{client.TLS()}
		}
		return c
	}
	for _, c := range []struct {
		name string
		tls  *tls.Config
		want byte
	}{
		{"verified, with client certificate", backendTLS("broker.internal", true), 0},
		{"wrong server name", backendTLS("other.internal", true), 0x03},
		{"no client certificate", backendTLS("broker.internal", false), 0x03},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := New(Config{Brokers: Backend{Addr: broker.Addr(), TLS: c.tls, DialTimeout: 2 * time.Second}, Auth: store,
				RevalidateInterval: -1, ShutdownGrace: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Shutdown(context.Background())
			l, _ := net.Listen("tcp", "127.0.0.1:0")
			go func() { _ = p.Serve(l, transport.Plain{}) }()
			dial := func(id string) (*mqtttest.Client, packets.Connack) {
				conn, err := net.Dial("tcp", l.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { conn.Close() })
				cl, ack, err := mqtttest.Connect(conn, mqtttest.Creds(packets.V311, id, "bt", "pw"))
				if err != nil {
					t.Fatal(err)
				}
				return cl, ack
			}
			sub, ack := dial("bt:sub")
			if ack.Code != c.want {
				t.Fatalf("CONNACK 0x%02X, want 0x%02X", ack.Code, c.want)
			}
			if c.want == 0 {
				// Sessions relay over TLS backend connections.
				pub, _ := dial("bt:pub")
				roundTrip(t, sub, pub, "bt/t")
			}
		})
	}
}

// TestBackendProbe: the readiness probe makes a real CONNECT when backend
// credentials are set, and only dials otherwise.
func TestBackendProbe(t *testing.T) {
	broker := testenv.Mosquitto(t, testenv.MosquittoOptions{Users: map[string]string{"svc": "svc-pw"}})
	ctx := context.Background()
	for _, c := range []struct {
		name string
		b    Backend
		ok   bool
	}{
		{"right credentials", Backend{Addr: broker.Addr(), Username: "svc", Password: "svc-pw"}, true},
		{"wrong password", Backend{Addr: broker.Addr(), Username: "svc", Password: "nope"}, false},
		{"no credentials: a TCP connection suffices", Backend{Addr: broker.Addr()}, true},
		{"nothing listening", Backend{Addr: "127.0.0.1:1", DialTimeout: time.Second}, false},
	} {
		if err := c.b.Probe(ctx); (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// TestSharedTicketKeys: replicas given the same ticket key file resume each
// other's TLS sessions, and the decision is still made afresh.
func TestSharedTicketKeys(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.setUser("tk", operator.Update{Password: ptr("pw")})
	keyFile := filepath.Join(t.TempDir(), "tickets")
	if err := os.WriteFile(keyFile, []byte("# shared\n"+strings.Repeat("ab", 32)+"\n"+strings.Repeat("cd", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withKeys := func(tc *transport.TLSConfig) { tc.TicketKeyFile = keyFile }
	a, b := h.proxyWithTLS(withKeys), h.proxyWithTLS(withKeys)
	for _, v := range tlsVersions {
		cfg := h.clientTLS(v.v)
		c, ack, resumed := h.connectRawTo(a, cfg, mqtttest.Creds(packets.V311, "tk", "tk", "pw"))
		if ack.Code != 0 || resumed {
			t.Fatalf("%s: first connection 0x%02X resumed=%v", v.name, ack.Code, resumed)
		}
		c.Disconnect()
		c, ack, resumed = h.connectRawTo(b, cfg, mqtttest.Creds(packets.V311, "tk", "tk", "pw"))
		if ack.Code != 0 || !resumed {
			t.Fatalf("%s: on the other replica: 0x%02X resumed=%v, want a resumed session", v.name, ack.Code, resumed)
		}
		c.Disconnect()
		h.hset("tk", "enabled", "false")
		if _, ack, resumed = h.connectRawTo(a, cfg, mqtttest.Creds(packets.V311, "tk", "tk", "pw")); ack.Code != 0x05 || !resumed {
			t.Fatalf("%s: disabled, resumed: 0x%02X resumed=%v", v.name, ack.Code, resumed)
		}
		h.hset("tk", "enabled", "true")
		// A replica with its own keys cannot resume the shared ones.
		if _, _, resumed = h.connectRaw(cfg, mqtttest.Creds(packets.V311, "tk", "tk", "pw")); resumed {
			t.Fatalf("%s: resumed on a replica without the shared keys", v.name)
		}
	}
	if _, err := transport.LoadTicketKeys(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("missing key file accepted")
	}
}
