package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/transport"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// ticketSecret is the secret the replicas of these tests share.
var ticketSecret = []byte("a test ticket secret of more than 32 bytes")

// ticketReplica is one proxy of a fleet sharing ticket keys.
type ticketReplica struct {
	name string
	p    *Proxy
	tls  *transport.TLS
	addr string
}

func (r ticketReplica) keys() transport.TicketKeyState { return r.tls.TicketKeys() }

// ticketReplica starts another proxy on the harness's Redis and broker with
// its own store, as replica() does, its TLS configured by tc with the
// ticket keys shared through that store.
func (h *harness) ticketReplica(name string, tc transport.TLSConfig) ticketReplica {
	h.t.Helper()
	rdb, err := redisconn.NewClient(testenv.RedisURL(h.redis))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { rdb.Close() })
	store := authstore.New(rdb, authstore.Options{Timeout: 300 * time.Millisecond, Logger: h.cfg.Logger})
	tc.TicketStore = store
	saved := h.tlsCfg
	h.tlsCfg = tc
	p := h.startProxy(store)
	h.tlsCfg = saved
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		h.t.Fatal(err)
	}
	go func() { _ = p.Serve(l, h.tlsOf(p)) }()
	h.t.Cleanup(func() { p.Shutdown(context.Background()) })
	return ticketReplica{name: name, p: p, tls: h.tlsOf(p), addr: l.Addr().String()}
}

// sharedTLS is the harness's TLS configuration with the test secret and
// a short refresh, so that replicas on an empty Redis share keys quickly.
func (h *harness) sharedTLS() transport.TLSConfig {
	tc := h.tlsCfg
	tc.TicketSecret, tc.TicketKeyRefresh = ticketSecret, 50*time.Millisecond
	return tc
}

// waitShared waits until every replica seals new tickets with a shared key.
func waitShared(t *testing.T, rs ...ticketReplica) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, "every replica sealing with a shared key", func() bool {
		for _, r := range rs {
			if st := r.keys(); !st.SealingShared || !st.StoreOK {
				return false
			}
		}
		return true
	})
}

// pinnedCache keeps the first session it is given and offers it ever
// after: a device holding on to one ticket.
type pinnedCache struct {
	mu sync.Mutex
	cs *tls.ClientSessionState
}

func (c *pinnedCache) Get(string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cs, c.cs != nil
}

func (c *pinnedCache) Put(_ string, cs *tls.ClientSessionState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cs == nil && cs != nil {
		c.cs = cs
	}
}

// pinnedTLS is a client configuration that holds on to its first session.
func (h *harness) pinnedTLS(version uint16) *tls.Config {
	cfg := h.clientTLS(version)
	cfg.ClientSessionCache = &pinnedCache{}
	return cfg
}

// sslClient runs openssl s_client against addr: it sends c and a
// DISCONNECT, saves the session to sessOut and resumes from sessIn (each
// when not empty), and returns whether the session was reused and the
// CONNACK's code (-1: none).
func (h *harness) sslClient(addr, version, sessIn, sessOut string, c packets.Connect) (bool, int) {
	h.t.Helper()
	bin := testenv.LookPath(h.t, "openssl")
	c.ProtocolName, c.KeepAlive = "MQTT", 30
	in, err := packets.AppendConnect(nil, &c)
	if err != nil {
		h.t.Fatal(err)
	}
	in = append(in, 0xE0, 0x00) // DISCONNECT: the broker, then the proxy, close
	args := []string{"s_client", "-connect", addr, "-servername", "localhost", "-CAfile", certFile(h.certDir, "ca.pem"),
		"-verify_return_error", "-ign_eof", "-" + version}
	if sessIn != "" {
		args = append(args, "-sess_in", sessIn)
	}
	if sessOut != "" {
		args = append(args, "-sess_out", sessOut)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.Output()
	if err != nil {
		h.t.Fatalf("openssl %v: %v\n%s", args, err, out)
	}
	reused := bytes.Contains(out, []byte("\nReused, TLSv1."))
	if !reused && !bytes.Contains(out, []byte("\nNew, TLSv1.")) {
		h.t.Fatalf("openssl printed neither New nor Reused:\n%s", out)
	}
	code := -1
	if i := bytes.Index(out, []byte{0x20, 0x02, 0x00}); i >= 0 && i+3 < len(out) {
		code = int(out[i+3])
	}
	return reused, code
}

// loggedResumed counts the decision log lines of user with outcome on a
// resumed TLS session.
func (h *harness) loggedResumed(user, outcome string) int {
	n := 0
	for _, line := range strings.Split(h.logs.String(), "\n") {
		var l struct {
			Username, Outcome string
			Resumed           bool
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Username == user && l.Outcome == outcome && l.Resumed {
			n++
		}
	}
	return n
}

// TestTicketsResumeOnEveryReplica: three replicas on one Redis with the
// same ticket secret. A TLS 1.2 and a TLS 1.3 session made on A resume on
// B and C (openssl s_client -sess_out/-sess_in, and Go clients), and on
// each, on a resumed session, a wrong password is still refused (0x04) and
// a disabled user still gets 0x05: decisions stay fresh. The harness's own
// proxy, without the secret, resumes none of them. Resumptions show in
// authproxy_tls_handshakes_total{resumed="true"} and in the log's
// resumed field.
func TestTicketsResumeOnEveryReplica(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.setUser("dev", operator.Update{Password: ptr("pw")})
	h.setUser("off", operator.Update{Password: ptr("pw"), Enabled: ptr(false)})
	tc := h.sharedTLS()
	a, b, c := h.ticketReplica("A", tc), h.ticketReplica("B", tc), h.ticketReplica("C", tc)
	waitShared(t, a, b, c)
	dir := t.TempDir()
	for _, tv := range []struct {
		name, flag string
		v          uint16
	}{{"TLS1.2", "tls1_2", tls.VersionTLS12}, {"TLS1.3", "tls1_3", tls.VersionTLS13}} {
		t.Run(tv.name, func(t *testing.T) {
			// openssl: the session saved on A, offered to each replica.
			sess := filepath.Join(dir, tv.flag+".pem")
			if reused, code := h.sslClient(a.addr, tv.flag, "", sess, mqtttest.Creds(packets.V311, "dev:ssl", "dev", "pw")); reused || code != 0 {
				t.Fatalf("openssl on A: reused %v, CONNACK %d", reused, code)
			}
			for _, r := range []ticketReplica{b, c, a} {
				if reused, code := h.sslClient(r.addr, tv.flag, sess, "", mqtttest.Creds(packets.V311, "dev:ssl", "dev", "pw")); !reused || code != 0 {
					t.Fatalf("openssl, A's session on %s: reused %v, CONNACK %d", r.name, reused, code)
				}
				if reused, code := h.sslClient(r.addr, tv.flag, sess, "", mqtttest.Creds(packets.V311, "dev:ssl", "dev", "wrong")); !reused || code != 0x04 {
					t.Fatalf("openssl, wrong password on %s: reused %v, CONNACK %d, want 0x04 on a resumed session", r.name, reused, code)
				}
				if reused, code := h.sslClient(r.addr, tv.flag, sess, "", mqtttest.Creds(packets.V311, "off:ssl", "off", "pw")); !reused || code != 0x05 {
					t.Fatalf("openssl, disabled user on %s: reused %v, CONNACK %d, want 0x05 on a resumed session", r.name, reused, code)
				}
			}
			if reused, _ := h.sslClient(h.addr, tv.flag, sess, "", mqtttest.Creds(packets.V311, "dev:ssl", "dev", "pw")); reused {
				t.Fatal("openssl: A's session resumed on a proxy without the shared secret")
			}

			// Go clients with a session cache.
			cfg := h.clientTLS(tv.v)
			cl, ack, resumed := h.connectRawTo(a.addr, cfg, mqtttest.Creds(packets.V311, "dev:go", "dev", "pw"))
			if ack.Code != 0 || resumed {
				t.Fatalf("Go client on A: CONNACK 0x%02X, resumed %v", ack.Code, resumed)
			}
			cl.Disconnect()
			for _, r := range []ticketReplica{b, c} {
				cl, ack, resumed := h.connectRawTo(r.addr, cfg, mqtttest.Creds(packets.V311, "dev:go", "dev", "pw"))
				if ack.Code != 0 || !resumed {
					t.Fatalf("Go client on %s: CONNACK 0x%02X, resumed %v", r.name, ack.Code, resumed)
				}
				cl.Disconnect()
				if _, ack, resumed := h.connectRawTo(r.addr, cfg, mqtttest.Creds(packets.V5, "dev:go", "dev", "wrong")); ack.Code != 0x86 || !resumed {
					t.Fatalf("Go client, wrong password on %s: CONNACK 0x%02X, resumed %v; want 0x86 resumed", r.name, ack.Code, resumed)
				}
				if _, ack, resumed := h.connectRawTo(r.addr, cfg, mqtttest.Creds(packets.V311, "off:go", "off", "pw")); ack.Code != 0x05 || !resumed {
					t.Fatalf("Go client, disabled user on %s: CONNACK 0x%02X, resumed %v; want 0x05 resumed", r.name, ack.Code, resumed)
				}
			}
		})
	}
	for _, r := range []ticketReplica{b, c} {
		// Per replica: 2 versions x 4 openssl resumptions (3 on A) and 3 Go ones.
		if got := testutil.ToFloat64(r.p.metrics.handshakeResu); got != 2*(3+3) {
			t.Errorf("%s: authproxy_tls_handshakes_total{resumed=\"true\"} = %v, want %d", r.name, got, 2*(3+3))
		}
	}
	if got := testutil.ToFloat64(h.proxy.metrics.handshakeResu); got != 0 {
		t.Errorf("the proxy without the secret resumed %v sessions", got)
	}
	// Log lines are written after the answer; wait for the last ones.
	testenv.WaitFor(t, 5*time.Second, "the log's resumed lines", func() bool {
		return h.loggedResumed("dev", "bad_credentials") == 2*(3+2) && h.loggedResumed("off", "disabled") == 2*(3+2)
	})
}

// TestTicketRotationAcrossReplicas: with a 2 s rotation and 3 keys kept, a
// TLS 1.2 and a TLS 1.3 ticket made on A resume on B and C after every
// replica has rotated; once the epoch that sealed them has left the kept
// window on every replica they no longer resume, and the full handshake
// that replaces the resumption succeeds (CONNACK 0).
func TestTicketRotationAcrossReplicas(t *testing.T) {
	t.Parallel() // mostly waiting for the clock
	const period, kept = 2 * time.Second, 3
	h := newHarness(t, harnessOptions{})
	h.setUser("dev", operator.Update{Password: ptr("pw")})
	tc := h.sharedTLS()
	tc.TicketKeyRotation, tc.TicketKeysKept = period, kept
	all := []ticketReplica{h.ticketReplica("A", tc), h.ticketReplica("B", tc), h.ticketReplica("C", tc)}
	a := all[0]
	epochAtLeast := func(e int64) func() bool {
		return func() bool {
			for _, r := range all {
				if st := r.keys(); st.Epoch < e || !st.SealingShared {
					return false
				}
			}
			return true
		}
	}
	// Start just after every replica has rotated, with the most of an
	// epoch ahead.
	e0 := a.keys().Epoch
	testenv.WaitFor(t, 3*period, "a rotation on every replica", epochAtLeast(e0+1))
	sealedFrom := a.keys().Epoch
	cfgs := map[string]*tls.Config{"TLS1.2": h.pinnedTLS(tls.VersionTLS12), "TLS1.3": h.pinnedTLS(tls.VersionTLS13)}
	for name, cfg := range cfgs {
		cl, ack, resumed := h.connectRawTo(a.addr, cfg, mqtttest.Creds(packets.V311, "dev:rot", "dev", "pw"))
		if ack.Code != 0 || resumed {
			t.Fatalf("%s on A: CONNACK 0x%02X, resumed %v", name, ack.Code, resumed)
		}
		cl.Disconnect()
	}
	sealedTo := a.keys().Epoch // the tickets were sealed in sealedFrom..sealedTo

	testenv.WaitFor(t, 3*period, "the next rotation on every replica", epochAtLeast(sealedTo+1))
	for name, cfg := range cfgs {
		for _, r := range all[1:] {
			if st := r.keys(); st.Epoch > sealedFrom+kept-1 {
				t.Fatalf("the machine was too slow: %s is at epoch %d, past the window of epoch %d", r.name, st.Epoch, sealedFrom)
			}
			cl, ack, resumed := h.connectRawTo(r.addr, cfg, mqtttest.Creds(packets.V311, "dev:rot", "dev", "pw"))
			if ack.Code != 0 || !resumed {
				t.Fatalf("%s on %s after a rotation: CONNACK 0x%02X, resumed %v", name, r.name, ack.Code, resumed)
			}
			cl.Disconnect()
		}
	}

	testenv.WaitFor(t, time.Duration(kept+2)*period, "the sealing epoch leaving the window on every replica", epochAtLeast(sealedTo+kept))
	for name, cfg := range cfgs {
		for _, r := range all {
			cl, ack, resumed := h.connectRawTo(r.addr, cfg, mqtttest.Creds(packets.V311, "dev:rot", "dev", "pw"))
			if ack.Code != 0 || resumed {
				t.Fatalf("%s ticket older than the window on %s: CONNACK 0x%02X, resumed %v; want a full handshake and 0", name, r.name, ack.Code, resumed)
			}
			cl.Disconnect()
		}
	}
}

// TestTicketsWithRedisStopped: with Redis stopped, full handshakes and
// resumptions with the keys already known keep working on every replica
// (the CONNECTs get 0x03: decisions fail closed); a replica started during
// the outage seals with a local key, resumes its own sessions and none of
// the others'; once Redis is back it converges: the others' sessions,
// made before the outage, resume on it, its new ones on the others, and
// its outage session still on itself. Redis persists (appendonly), as in
// deploy/; the replicas that put back what a Redis without persistence lost
// are tested in internal/transport (TestTicketKeysStoreLosesData).
func TestTicketsWithRedisStopped(t *testing.T) {
	t.Parallel() // mostly waiting for timeouts
	h := newHarness(t, harnessOptions{redisArgs: []string{"--appendonly", "yes"}})
	h.setUser("dev", operator.Update{Password: ptr("pw")})
	tc := h.sharedTLS()
	a, b, c := h.ticketReplica("A", tc), h.ticketReplica("B", tc), h.ticketReplica("C", tc)
	waitShared(t, a, b, c)
	creds := mqtttest.Creds(packets.V311, "dev:out", "dev", "pw")
	versions := map[string]uint16{"TLS1.2": tls.VersionTLS12, "TLS1.3": tls.VersionTLS13}
	before := map[string]*tls.Config{}
	for name, v := range versions {
		before[name] = h.pinnedTLS(v)
		cl, ack, _ := h.connectRawTo(a.addr, before[name], creds)
		if ack.Code != 0 {
			t.Fatalf("%s on A: CONNACK 0x%02X", name, ack.Code)
		}
		cl.Disconnect()
	}

	h.redis.Stop()
	for name, v := range versions {
		for _, r := range []ticketReplica{a, b, c} {
			if _, ack, resumed := h.connectRawTo(r.addr, h.clientTLS(v), creds); resumed || ack.Code != 0x03 {
				t.Fatalf("%s full handshake on %s with Redis stopped: resumed %v, CONNACK 0x%02X; want a handshake and 0x03", name, r.name, resumed, ack.Code)
			}
			if _, ack, resumed := h.connectRawTo(r.addr, before[name], creds); !resumed || ack.Code != 0x03 {
				t.Fatalf("%s session from A on %s with Redis stopped: resumed %v, CONNACK 0x%02X; want resumed and 0x03", name, r.name, resumed, ack.Code)
			}
		}
	}
	d := h.ticketReplica("D", tc) // started during the outage
	if st := d.keys(); st.SealingShared || st.StoreOK || st.Mode != "shared" {
		t.Fatalf("D started without Redis: %+v", st)
	}
	during := map[string]*tls.Config{}
	for name, v := range versions {
		if _, ack, resumed := h.connectRawTo(d.addr, before[name], creds); resumed || ack.Code != 0x03 {
			t.Fatalf("%s session from A on D during the outage: resumed %v, CONNACK 0x%02X; want a full handshake", name, resumed, ack.Code)
		}
		during[name] = h.pinnedTLS(v)
		_, _, _ = h.connectRawTo(d.addr, during[name], creds)
		if _, _, resumed := h.connectRawTo(d.addr, during[name], creds); !resumed {
			t.Fatalf("%s: D does not resume its own session during the outage", name)
		}
		if _, _, resumed := h.connectRawTo(a.addr, during[name], creds); resumed {
			t.Fatalf("%s: D's local session resumed on A", name)
		}
	}

	h.redis.Start()
	waitShared(t, a, b, c, d)
	for name, v := range versions {
		cl, ack, resumed := h.connectRawTo(d.addr, before[name], creds)
		if !resumed || ack.Code != 0 {
			t.Fatalf("%s session made on A before the outage, on D after it: resumed %v, CONNACK 0x%02X", name, resumed, ack.Code)
		}
		cl.Disconnect()
		if _, _, resumed := h.connectRawTo(d.addr, during[name], creds); !resumed {
			t.Fatalf("%s: D's outage session no longer resumes on D", name)
		}
		after := h.pinnedTLS(v)
		cl, _, _ = h.connectRawTo(d.addr, after, creds)
		cl.Disconnect()
		for _, r := range []ticketReplica{a, b, c} {
			cl, ack, resumed := h.connectRawTo(r.addr, after, creds)
			if !resumed || ack.Code != 0 {
				t.Fatalf("%s session made on D after Redis came back, on %s: resumed %v, CONNACK 0x%02X", name, r.name, resumed, ack.Code)
			}
			cl.Disconnect()
		}
	}
}
