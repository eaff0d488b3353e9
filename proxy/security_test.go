package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/relay"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/transport"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// Regression tests for the outside security review (issue 13), one per
// finding, against real redis-server and mosquitto.

// commandsProcessed is Redis's total_commands_processed.
func (h *harness) commandsProcessed() int {
	h.t.Helper()
	info := h.admin.Info(context.Background(), "stats").Val()
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "total_commands_processed:"); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	h.t.Fatal("no total_commands_processed")
	return 0
}

// TestFarFutureNotAfterIsQuiet (finding 1): a not_after of 9999-12-31, a
// common "never", overflowed the session's timer, which then fired at once
// and re-armed forever (a busy loop of HGETALLs). Every time RFC 3339
// allows must leave a live session quiet.
func TestFarFutureNotAfterIsQuiet(t *testing.T) {
	h := newHarness(t, harnessOptions{revalidate: time.Hour})
	cfg := h.clientTLS(tls.VersionTLS13)
	var clients []*mqtttest.Client
	for i, na := range []string{"9999-12-31T23:59:59Z", "2400-01-01T00:00:00Z", "2318-01-01T00:00:00+14:00"} {
		user := fmt.Sprintf("far%d", i)
		h.setUser(user, operator.Update{Password: ptr("pw")})
		h.hset(user, "not_after", na)
		c, ack, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V311, user, user, "pw"))
		if ack.Code != 0 {
			t.Fatalf("not_after %s: CONNACK 0x%02X", na, ack.Code)
		}
		clients = append(clients, c)
	}
	before := h.commandsProcessed()
	time.Sleep(300 * time.Millisecond) // a window in which nothing should happen
	// The INFO calls count twice.
	if got := h.commandsProcessed() - before - 1; got > 2 {
		t.Fatalf("%d Redis commands in 300 ms from 3 idle sessions: the not_after timer loops", got)
	}
	for _, c := range clients {
		if err := c.Subscribe(c.Conn.LocalAddr().String(), 0); err != nil {
			t.Fatalf("session not relaying: %v", err)
		}
	}
}

// TestScheduleNotAfterExtremes: the timer never overflows, whatever time.
func TestScheduleNotAfterExtremes(t *testing.T) {
	p, err := New(Config{Brokers: Backend{Addr: "127.0.0.1:1"}, Auth: allowAll{}, RevalidateInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	s, _ := pipeSession(t, p, policy.Request{Username: "t", Protocol: packets.V311})
	for _, at := range []time.Time{time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2318, 1, 1, 0, 0, 0, 0, time.UTC), time.Now().Add(maxTimer + time.Second)} {
		s.scheduleNotAfter(at)
		s.mu.Lock()
		armed := s.notAfter != nil && s.notAfter.Stop()
		s.mu.Unlock()
		if !armed {
			t.Fatalf("not_after %v: the timer already fired", at)
		}
	}
}

// TestMalformedRuleEndsLiveSession (finding 2): a rule that cannot be read
// refuses new CONNECTs (fail closed) and, now, ends live sessions too,
// within the revocation bound; `user disable` works on such a user.
func TestMalformedRuleEndsLiveSession(t *testing.T) {
	for _, bad := range [][]string{{"enabled", "no"}, {"not_after", "2020-01-01"}, {"password", "not-a-hash"}, {"cidrs", "10.0.0.0/33"}} {
		t.Run(bad[0]+"="+bad[1], func(t *testing.T) {
			h := newHarness(t, harnessOptions{redisArgs: []string{"--notify-keyspace-events", "Kgh"}})
			h.setUser("mal", operator.Update{Password: ptr("pw")})
			cfg := h.clientTLS(tls.VersionTLS13)
			v5, ack, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V5, "mal:5", "mal", "pw"))
			v3, ack3, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V311, "mal:3", "mal", "pw"))
			if ack.Code|ack3.Code != 0 {
				t.Fatal("connect failed")
			}
			h.hset("mal", bad...)
			var wg sync.WaitGroup
			for _, c := range []*mqtttest.Client{v5, v3} {
				wg.Add(1)
				go func() { defer wg.Done(); expectClosed(t, c, revocationBound) }()
			}
			wg.Wait()
			if _, ack, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V5, "mal:5", "mal", "pw")); ack.Code == 0 {
				t.Fatal("a user with a malformed rule connects")
			}
			if err := h.store.SetEnabled(context.Background(), "mal", false); err != nil {
				t.Fatalf("user disable on a user with a malformed rule: %v", err)
			}
			if v, _ := h.admin.HGet(context.Background(), h.store.UserKey("mal"), "enabled").Result(); v != "false" {
				t.Fatalf("enabled is %q after disable", v)
			}
		})
	}
}

// TestRevocationDuringHashFlood (finding 3): with every hash slot taken by
// a flood of unknown users, deleting a user still closes its live session
// within the revocation bound (a re-decision needs no hash), and the flood
// computed hashes all the while.
//
// The flood goes on until the test ends. It once was a fixed number of
// attempts, most of them answered "server busy" at once without a hash:
// on 2 loaded cores under -race, where a hash took half a second, it ended
// before it had computed the hashes the test waited for. An attempt
// answered "busy" now waits until another's hash is done (a place in the
// queue is free) before trying again, so that the flood keeps the queue
// full without spinning on busy answers, which would slow the revocation
// down with work the proxy alone would not have.
func TestRevocationDuringHashFlood(t *testing.T) {
	h := newHarness(t, harnessOptions{redisTimeout: time.Second})
	h.setUser("alice", operator.Update{Password: ptr("pw")})
	alice, ack, _ := h.connectRaw(h.clientTLS(tls.VersionTLS13), mqtttest.Creds(packets.V5, "alice", "alice", "pw"))
	if ack.Code != 0 {
		t.Fatal("connect failed")
	}
	hashesBefore := h.store.HashCount()
	stop := make(chan struct{})
	hashed := make(chan struct{}, 300) // a flood attempt's hash was done
	var wg sync.WaitGroup
	var attempts atomic.Int64
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				conn, err := net.DialTimeout("tcp", h.plain, time.Second)
				if err != nil {
					continue
				}
				_, ack, err := mqtttest.Connect(conn, mqtttest.Creds(packets.V311, "", fmt.Sprintf("nobody%d", i), fmt.Sprint("guess", i, "-", n)))
				conn.Close()
				attempts.Add(1)
				switch {
				case err != nil: // try again
				case ack.Code == 0x03: // 3.1.1's "server busy": the queue is full
					select {
					case <-hashed:
					case <-stop:
						return
					}
				default: // refused after a hash: a place in the queue is free
					select {
					case hashed <- struct{}{}:
					default:
					}
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	// The flood is on once it has computed more hashes than there are
	// slots (MaxHashes: GOMAXPROCS): every slot has been taken by it, and
	// it keeps them taken.
	testenv.WaitFor(t, 30*time.Second, "the hash flood", func() bool {
		return h.store.HashCount()-hashesBefore > int64(runtime.GOMAXPROCS(0))
	})
	hashesBefore = h.store.HashCount()
	start := time.Now()
	if err := h.store.DeleteUser(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, alice, revocationBound)
	t.Logf("closed %v after user delete, during a flood (%d hashes meanwhile, %d attempts so far)",
		time.Since(start).Round(time.Millisecond), h.store.HashCount()-hashesBefore, attempts.Load())
}

// failingAuth refuses re-decisions with a store error a given number of
// times, then with a refusal.
type failingAuth struct {
	failures atomic.Int64
	calls    atomic.Int64
}

func (f *failingAuth) Authenticate(_ context.Context, r policy.Request) (policy.Decision, error) {
	f.calls.Add(1)
	if r.Verified == nil {
		return policy.Decision{Outcome: policy.Accepted}, nil
	}
	if f.failures.Add(-1) >= 0 {
		return policy.Decision{}, policy.ErrUnavailable
	}
	return policy.Decision{Outcome: policy.Disabled, Reason: "disabled"}, nil
}

// TestUnavailableReDecisionIsRetried (finding 3): a re-decision that fails
// because the store is unavailable keeps the session and is tried again,
// so a revocation it was carrying is not lost.
func TestUnavailableReDecisionIsRetried(t *testing.T) {
	auth := &failingAuth{}
	auth.failures.Store(2)
	p, err := New(Config{Brokers: Backend{Addr: "127.0.0.1:1"}, Auth: auth, RevalidateInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	cred := policy.Credential{1}
	s, device := pipeSession(t, p, policy.Request{Username: "r", Protocol: packets.V311, Verified: &cred})
	if !p.addSession(s) {
		t.Fatal("not registered")
	}
	go func() { _ = s.relay.WriteFirst([]byte{0x20, 2, 0, 0}) }()
	buf := make([]byte, 4)
	if _, err := device.Read(buf); err != nil {
		t.Fatal(err)
	}
	p.RevalidateUser("r")
	if s.done() {
		t.Fatal("kicked on a store error")
	}
	testenv.WaitFor(t, 5*time.Second, "the retried re-decision to revoke", func() bool { return s.done() })
	if got := auth.calls.Load(); got != 3 {
		t.Fatalf("%d decisions, want 3 (two failures, then the refusal)", got)
	}
	if got := testutil.ToFloat64(p.metrics.Revalidations.WithLabelValues("error")); got != 2 {
		t.Fatalf("revalidations{error} = %v, want 2", got)
	}
}

// pipeSession is a session of p over net.Pipe ends; device is the
// device's end.
func pipeSession(t *testing.T, p *Proxy, req policy.Request) (*session, net.Conn) {
	client, device := netPipe(t)
	backend, _ := netPipe(t)
	s := newSession(p, transport.Conn{Endpoint: relay.Endpoint{Conn: client, Raw: client, Kind: relay.Opaque}},
		&BrokerConn{Endpoint: relay.Endpoint{Conn: backend, Raw: backend, Kind: relay.Opaque}}, req, &packets.Connect{KeepAlive: 60}, policy.Decision{})
	return s, device
}

func netPipe(t *testing.T) (net.Conn, net.Conn) {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestClientIDBoundToUserByDefault (second wave, finding 4; third wave,
// finding 2): without a clientids field a user may take only its own
// client ids ("<user>", "<user>:..."), so bob, with his own password, can
// neither take alice's broker session nor kick her off; the empty client
// id, assigned by the broker, stays allowed. And names that are prefixes
// of each other (site1, site1-gw) no longer share client ids: site1 cannot
// take site1-gw's session, which the second wave's "%u-*" allowed.
func TestClientIDBoundToUserByDefault(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.setUser("alice", operator.Update{Password: ptr("a-pw")})
	h.setUser("bob", operator.Update{Password: ptr("b-pw")})
	h.setUser("site1", operator.Update{Password: ptr("s-pw")})
	h.setUser("site1-gw", operator.Update{Password: ptr("g-pw")})
	cfg := h.clientTLS(tls.VersionTLS13)
	persistent := func(level packets.Level, id, user, pass string) packets.Connect {
		c := mqtttest.Creds(level, id, user, pass)
		c.CleanStart = false
		return c
	}
	alice, ack, _ := h.connectRaw(cfg, persistent(packets.V311, "alice:phone", "alice", "a-pw"))
	if ack.Code != 0 {
		t.Fatalf("alice: CONNACK 0x%02X", ack.Code)
	}
	gw, ack, _ := h.connectRaw(cfg, persistent(packets.V5, "site1-gw", "site1-gw", "g-pw"))
	if ack.Code != 0 {
		t.Fatalf("site1-gw: CONNACK 0x%02X", ack.Code)
	}
	before := h.store.DefaultClientIDRefusals()
	for _, lv := range []packets.Level{packets.V311, packets.V5} {
		want := map[packets.Level]byte{packets.V311: 0x02, packets.V5: 0x85}[lv]
		if _, ack, _ := h.connectRaw(cfg, persistent(lv, "alice:phone", "bob", "b-pw")); ack.Code != want {
			t.Fatalf("bob as alice:phone (v%d): CONNACK 0x%02X, want 0x%02X", lv, ack.Code, want)
		}
		if _, ack, _ := h.connectRaw(cfg, persistent(lv, "site1-gw", "site1", "s-pw")); ack.Code != want {
			t.Fatalf("site1 as site1-gw (v%d): CONNACK 0x%02X, want 0x%02X", lv, ack.Code, want)
		}
	}
	if err := alice.Subscribe("alice/still-here", 0); err != nil {
		t.Fatalf("alice lost her session: %v", err)
	}
	if err := gw.Subscribe("site1-gw/still-here", 0); err != nil {
		t.Fatalf("site1-gw lost its session: %v", err)
	}
	// Counted, and said in the log with the way out.
	if got := h.store.DefaultClientIDRefusals() - before; got != 4 {
		t.Fatalf("refusals by the client id default counted %d, want 4", got)
	}
	if !strings.Contains(h.logs.String(), "client id refused by CLIENTIDS_DEFAULT") {
		t.Fatal("no log line about the client id default")
	}
	for _, c := range []packets.Connect{mqtttest.Creds(packets.V311, "bob", "bob", "b-pw"),
		mqtttest.Creds(packets.V5, "bob:7", "bob", "b-pw"), mqtttest.Creds(packets.V5, "", "bob", "b-pw"),
		mqtttest.Creds(packets.V311, "", "bob", "b-pw")} {
		if _, ack, _ := h.connectRaw(cfg, c); ack.Code != 0 {
			t.Fatalf("bob as %q (v%d): CONNACK 0x%02X", c.ClientID, c.ProtocolLevel, ack.Code)
		}
	}
}

// TestSilentConnectionsDoNotLockOut (finding 5): with MAX_CONNECTIONS=100,
// 100 silent TCP connections used to hold every slot for CONNECT_TIMEOUT.
// Now they hold at most MaxPending places, and once a second old, a new
// connection takes the place of the oldest: a device gets in long before
// the silent ones time out.
func TestSilentConnectionsDoNotLockOut(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.setUser("dev", operator.Update{Password: ptr("pw")})
	addr := h.proxyWith(func(c *Config) {
		c.MaxConnections = 100
		c.ConnectTimeout, c.HandshakeTimeout = 60*time.Second, 60*time.Second
	})
	var silent []net.Conn
	for range 100 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, c)
	}
	defer func() {
		for _, c := range silent {
			c.Close()
		}
	}()
	start := time.Now()
	cfg := h.clientTLS(tls.VersionTLS13)
	var attempts int
	for {
		attempts++
		if time.Since(start) > 15*time.Second {
			t.Fatalf("no device got in within 15 s (%d attempts), with 100 silent connections", attempts)
		}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
		if err != nil {
			time.Sleep(100 * time.Millisecond) // a device's retry backoff
			continue
		}
		_, ack, err := mqtttest.Connect(conn, mqtttest.Creds(packets.V311, "dev", "dev", "pw"))
		conn.Close()
		if err == nil && ack.Code == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("a device got in after %v and %d attempts, 100 silent connections open", time.Since(start).Round(time.Millisecond), attempts)
}

// TestPendingSetEvictsOnlyOldConnections: a full set refuses a newcomer
// while every pending connection is younger than minAge, and replaces the
// oldest once it is older.
func TestPendingSetEvictsOnlyOldConnections(t *testing.T) {
	ps := newPendingSet(2, time.Second)
	now := time.Unix(1000, 0)
	a1, a2 := netPipe(t)
	b1, _ := netPipe(t)
	c1, _ := netPipe(t)
	pa := ps.add(a1, now)
	pb := ps.add(b1, now.Add(100*time.Millisecond))
	if pa == nil || pb == nil {
		t.Fatal("room for two")
	}
	if ps.add(c1, now.Add(500*time.Millisecond)) != nil {
		t.Fatal("a newcomer evicted a connection pending for 500 ms")
	}
	pc := ps.add(c1, now.Add(1100*time.Millisecond))
	if pc == nil || !pa.evicted.Load() || pb.evicted.Load() {
		t.Fatal("the oldest, pending for 1.1 s, was not replaced")
	}
	if _, err := a2.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) && err == nil {
		t.Fatal("the evicted connection is open")
	}
	ps.done(pb)
	ps.done(pb)
	if ps.len() != 1 {
		t.Fatalf("%d pending, want 1", ps.len())
	}
}

// TestStalledReaderEndsSession (finding 9): a device that stops reading
// used to pin its session forever (no write deadline): after the broker
// dropped it, the proxy still held both sockets. Writes to the device now
// have a deadline derived from its keepalive, and the session ends.
func TestStalledReaderEndsSession(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.setUser("slow", operator.Update{Password: ptr("pw")})
	h.setUser("feed", operator.Update{Password: ptr("pw")})
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	conn, err := d.Dial("tcp", h.plain)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := mqtttest.Creds(packets.V311, "slow", "slow", "pw")
	c.KeepAlive = 2
	slow, ack, err := mqtttest.Connect(conn, c)
	if err != nil || ack.Code != 0 {
		t.Fatal(ack, err)
	}
	if err := slow.Subscribe("stall/#", 0); err != nil {
		t.Fatal(err)
	}
	// From here the device reads nothing.
	fconn, err := net.Dial("tcp", h.plain)
	if err != nil {
		t.Fatal(err)
	}
	defer fconn.Close()
	feed, ack, err := mqtttest.Connect(fconn, mqtttest.Creds(packets.V311, "feed", "feed", "pw"))
	if err != nil || ack.Code != 0 {
		t.Fatal(ack, err)
	}
	payload := make([]byte, 16<<10)
	start := time.Now()
	for n := 0; h.proxy.Sessions() == 2; n++ {
		if n > 2_000_000 || time.Since(start) > 30*time.Second {
			t.Fatalf("the stalled device's session still open after %v and %d messages", time.Since(start), n)
		}
		if n%64 == 63 {
			// Let the broker and the proxy catch up: QoS 1 waits for the ack.
			if err := feed.Publish("stall/x", payload, 1, false); err != nil {
				t.Fatalf("publisher: %v", err)
			}
			continue
		}
		if err := feed.Publish("stall/x", payload, 0, false); err != nil {
			t.Fatalf("publisher: %v", err)
		}
	}
	testenv.WaitFor(t, 5*time.Second, "the stalled session to be released", func() bool {
		return h.proxy.Sessions() == 1 && testutil.ToFloat64(h.proxy.metrics.Active) == 1
	})
	t.Logf("stalled session ended %v after the flood began", time.Since(start).Round(time.Millisecond))
	if err := feed.Publish("stall/y", []byte("still"), 1, false); err != nil {
		t.Fatalf("the publisher's session suffered: %v", err)
	}
}

// TestRefusalFloodIsSummarised (finding 7): past the burst, refused
// connections go to debug, and one info line counts them by outcome.
func TestRefusalFloodIsSummarised(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLogLimiter("summary", func() time.Time { return now })
	allowed := 0
	for i := range 1000 {
		if l.allow([]string{"bad_credentials", "timeout"}[i%2]) {
			allowed++
		}
	}
	if allowed != logBurst {
		t.Fatalf("%d of 1000 refusals at info in an instant, want the burst %d", allowed, logBurst)
	}
	now = now.Add(time.Second)
	for range 100 {
		if l.allow("bad_credentials") {
			allowed++
		}
	}
	if allowed != logBurst+logRate {
		t.Fatalf("%d lines after a second more, want %d", allowed, logBurst+logRate)
	}
	var buf testenv.SyncBuffer
	l.flush(slog.New(slog.NewJSONHandler(&buf, nil)))
	line := buf.String()
	for _, want := range []string{`"bad_credentials":565`, `"timeout":475`, `"total":1040`} {
		if !strings.Contains(line, want) {
			t.Fatalf("summary %s lacks %s", line, want)
		}
	}
	var again testenv.SyncBuffer
	l.flush(slog.New(slog.NewJSONHandler(&again, nil)))
	if again.String() != "" {
		t.Fatalf("a second summary with nothing suppressed: %s", again.String())
	}
}
