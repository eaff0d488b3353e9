package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/sessions"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// limitUser sets a user with password "pw" and the given limits.
func (h *harness) limitUser(name string, limits map[string]string) {
	h.t.Helper()
	h.setUser(name, operator.Update{Password: ptr("pw"), Limits: limits})
}

// connectLevel connects name over TLS at level with keep alive ka.
func (h *harness) connectLevel(name, clientID string, level packets.Level, ka uint16) (*mqtttest.Client, packets.Connack) {
	h.t.Helper()
	c := mqtttest.Creds(level, clientID, name, "pw")
	c.KeepAlive = ka
	cl, ack, _ := h.connectRaw(h.clientTLS(tls.VersionTLS13), c)
	return cl, ack
}

// expectEnd reads until the proxy ends the session: an MQTT 5 client
// must get a DISCONNECT with code first, a 3.x client must be closed
// without one. Packets before it are skipped.
func expectEnd(t *testing.T, cl *mqtttest.Client, code packets.ReasonCode) {
	t.Helper()
	for {
		h, pkt, err := cl.ReadPacket(10 * time.Second)
		switch {
		case errors.Is(err, io.EOF) && cl.Level != packets.V5:
			return
		case err != nil:
			t.Fatalf("MQTT %s: %v before the session ended with 0x%02X", cl.Level, err, byte(code))
		case h.Type != packets.DISCONNECT:
			continue
		case cl.Level != packets.V5:
			t.Fatalf("MQTT %s: a DISCONNECT % x", cl.Level, pkt)
		}
		d, err := packets.DecodeDisconnect(pkt, packets.V5)
		if err != nil || d.Code != code {
			t.Fatalf("DISCONNECT %+v (%v), want code 0x%02X", d, err, byte(code))
		}
		if _, _, err := cl.ReadPacket(5 * time.Second); !errors.Is(err, io.EOF) {
			t.Fatalf("after the DISCONNECT: %v, want the connection closed", err)
		}
		return
	}
}

// subscribeAll sends one SUBSCRIBE of filters at qos and returns the
// SUBACK's codes.
func subscribeAll(t *testing.T, cl *mqtttest.Client, id uint16, qos byte, filters ...string) []packets.ReasonCode {
	t.Helper()
	var fs []packets.SubscribeFilter
	for _, f := range filters {
		fs = append(fs, packets.SubscribeFilter{Filter: f, Options: packets.SubscribeOptions(qos)})
	}
	out, err := packets.AppendSubscribe(nil, cl.Level, id, nil, fs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Conn.Write(out); err != nil {
		t.Fatal(err)
	}
	_, pkt, err := mqtttest.ReadUntil(cl.Conn, packets.SUBACK, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := packets.DecodeSuback(pkt, cl.Level)
	if err != nil || ack.PacketID != id {
		t.Fatalf("SUBACK %+v: %v", ack, err)
	}
	return ack.Codes
}

// TestLimitQuotas: every quota answers with its code, in MQTT 3.1.1 and
// 5, in front of Mosquitto and HiveMQ CE: the CONNACK an MQTT 5 device is
// sent carries Maximum QoS, Retain Available and Server Keep Alive;
// max_sessions refuses a second session (0x97 / 0x05); max_subs refuses a
// filter past it in its place (0x97 / 0x80) and UNSUBSCRIBE frees one;
// max_qos lowers the QoS granted; a PUBLISH past max_payload, max_qos or
// retain ends the session (0x95, 0x9B, 0x9A; 3.1.1 closed, a retained
// PUBLISH withheld and acknowledged); a device silent for 1.5 x
// max_keepalive is closed (v5: 0x8D).
func TestLimitQuotas(t *testing.T) {
	for _, backend := range []string{"mosquitto", "hivemq"} {
		t.Run(backend, func(t *testing.T) {
			h := newHarness(t, harnessOptions{backend: backend})
			for _, level := range []packets.Level{packets.V311, packets.V5} {
				h.limitUser(fmt.Sprint("q", level), map[string]string{"max_payload": "10", "max_qos": "1", "retain": "false",
					"max_subs": "2", "max_keepalive": "30", "max_sessions": "1"})
				h.limitUser(fmt.Sprint("ka", level), map[string]string{"max_keepalive": "1"})
				t.Run(level.String(), func(t *testing.T) { quotaCodes(t, h, level) })
			}
		})
	}
}

func quotaCodes(t *testing.T, h *harness, level packets.Level) {
	q, ka := fmt.Sprint("q", level), fmt.Sprint("ka", level)
	cl, ack := h.connectLevel(q, q+":1", level, 60)
	if !ack.Accepted() {
		t.Fatalf("CONNACK 0x%02X", ack.Code)
	}
	if level == packets.V5 {
		for id, want := range map[packets.PropertyID]uint32{packets.PropMaximumQoS: 1, packets.PropRetainAvailable: 0, packets.PropServerKeepAlive: 30} {
			if p, ok := ack.Properties.Get(id); !ok || p.Int != want {
				t.Errorf("CONNACK property 0x%02X = %v (%v), want %d", byte(id), p.Int, ok, want)
			}
		}
	}
	// max_sessions 1: a second session is refused while the first lives.
	_, ack2 := h.connectLevel(q, q+":2", level, 60)
	if want := map[packets.Level]byte{packets.V311: 0x05, packets.V5: 0x97}[level]; ack2.Code != want {
		t.Errorf("second session: CONNACK 0x%02X, want 0x%02X", ack2.Code, want)
	}
	// max_subs 2 and max_qos 1: the third filter is refused in its place,
	// the others granted QoS 1 although 2 was asked.
	refused := map[packets.Level]packets.ReasonCode{packets.V311: 0x80, packets.V5: 0x97}[level]
	if got := subscribeAll(t, cl, 1, 2, "lim/a", "lim/b", "lim/c"); codes(got) != codes([]packets.ReasonCode{1, 1, refused}) {
		t.Errorf("SUBACK %v, want [1 1 %d]", got, refused)
	}
	unsub, _ := packets.AppendUnsubscribe(nil, level, 2, nil, []packets.UnsubscribeFilter{{Filter: "lim/a"}})
	if _, err := cl.Conn.Write(unsub); err != nil {
		t.Fatal(err)
	}
	if _, _, err := mqtttest.ReadUntil(cl.Conn, packets.UNSUBACK, 1<<16); err != nil {
		t.Fatal(err)
	}
	if got := subscribeAll(t, cl, 3, 1, "lim/c", "lim/b"); codes(got) != "[1 1]" {
		t.Errorf("after an UNSUBSCRIBE: SUBACK %v, want [1 1] (lim/b held already counts once)", got)
	}
	// Every filter past it: the proxy answers alone, through the topic
	// rules' filter, and the broker sees no SUBSCRIBE.
	if got := subscribeAll(t, cl, 4, 1, "lim/d"); codes(got) != codes([]packets.ReasonCode{refused}) {
		t.Errorf("a SUBSCRIBE of one filter past max_subs: SUBACK %v, want [%d]", got, refused)
	}
	if level == packets.V311 {
		// 3.1.1: a retained PUBLISH is withheld and acknowledged; the
		// next one arrives first.
		if err := cl.Publish("lim/b", []byte("kept"), 1, true); err != nil {
			t.Fatal(err)
		}
		if err := cl.Publish("lim/b", []byte("plain"), 0, false); err != nil {
			t.Fatal(err)
		}
		if m, err := cl.ReadPublish(5 * time.Second); err != nil || string(m.Payload) != "plain" {
			t.Fatalf("received %q (%v), want the non-retained message only", m.Payload, err)
		}
	}
	ends := []struct {
		name string
		pub  []byte
		code packets.ReasonCode
	}{
		{"max_payload", mqtttest.AppendPublish(nil, level, "lim/b", []byte("eleven byte"), 0, false, 0), packets.PacketTooLarge},
		{"max_qos", mqtttest.AppendPublish(nil, level, "lim/b", []byte("x"), 2, false, 9), packets.QoSNotSupported},
	}
	if level == packets.V5 {
		ends = append(ends, struct {
			name string
			pub  []byte
			code packets.ReasonCode
		}{"retain", mqtttest.AppendPublish(nil, level, "lim/b", []byte("x"), 0, true, 0), packets.RetainNotSupported})
	}
	for i, e := range ends {
		if i > 0 {
			cl = h.reconnectAfterRelease(q, level)
		}
		before := h.proxy.Stats().LimitRefusals[e.name]
		if _, err := cl.Conn.Write(e.pub); err != nil {
			t.Fatal(err)
		}
		expectEnd(t, cl, e.code)
		if after := h.proxy.Stats().LimitRefusals[e.name]; after != before+1 {
			t.Errorf("%s refusals counted %d -> %d", e.name, before, after)
		}
	}
	// max_keepalive 1: silent for 1.5 s, the session ends.
	quiet, ack := h.connectLevel(ka, ka, level, 60)
	if p, _ := ack.Properties.Get(packets.PropServerKeepAlive); level == packets.V5 && p.Int != 1 {
		t.Errorf("CONNACK Server Keep Alive %d, want 1", p.Int)
	}
	start := time.Now()
	expectEnd(t, quiet, packets.KeepAliveTimeout)
	if took := time.Since(start); took < 1500*time.Millisecond {
		t.Errorf("closed after %v of silence, before 1.5 x max_keepalive", took)
	}
}

// reconnectAfterRelease connects user again once its last session has
// been counted out (max_sessions 1).
func (h *harness) reconnectAfterRelease(user string, level packets.Level) *mqtttest.Client {
	h.t.Helper()
	var cl *mqtttest.Client
	testenv.WaitFor(h.t, 5*time.Second, "the ended session counted out", func() bool {
		c, ack := h.connectLevel(user, user+":again", level, 60)
		if !ack.Accepted() {
			c.Conn.Close()
			return false
		}
		cl = c
		return true
	})
	return cl
}

// TestLimitsLive: a change of each limit reaches a live session within a
// second, through the change feed: a lowered max_qos, max_payload or
// retain refuses the next PUBLISH, a lowered max_subs the next filter, a
// pub_rate (then a pub_bytes) set on a session that had none slows it, a
// max_sessions set
// while two sessions live counts them (a third is refused, none ends), a
// max_keepalive set on a 3.1.1 session ends it after 1.5 x S of silence
// (an MQTT 5 session's keep alive changes at its next CONNECT).
func TestLimitsLive(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ctx := context.Background()
	change := func(user string, limits map[string]string) {
		t.Helper()
		if err := h.store.SetUser(ctx, user, operator.Update{Limits: limits}); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, time.Second, "the change reached the live session", func() bool {
			for _, s := range h.proxy.userSessions(user) {
				got := s.limits.Limits()
				for f, v := range limits {
					l, _ := policy.LimitNamed(f)
					if n, ok := got.Get(l); ok != (v != "") || ok && policy.FormatLimit(l, n) != v {
						return false
					}
				}
			}
			return true
		})
	}
	h.limitUser("live", nil)
	for _, c := range []struct {
		limits map[string]string
		pub    []byte
		code   packets.ReasonCode
	}{
		{map[string]string{"max_qos": "0"}, mqtttest.AppendPublish(nil, packets.V5, "x", []byte("q1"), 1, false, 1), packets.QoSNotSupported},
		{map[string]string{"max_payload": "1"}, mqtttest.AppendPublish(nil, packets.V5, "x", []byte("two"), 0, false, 0), packets.PacketTooLarge},
		{map[string]string{"retain": "false"}, mqtttest.AppendPublish(nil, packets.V5, "x", []byte("r"), 0, true, 0), packets.RetainNotSupported},
	} {
		_ = h.store.SetUser(ctx, "live", operator.Update{Limits: map[string]string{"max_qos": "", "max_payload": "", "retain": ""}})
		cl, _ := h.connectLevel("live", "live", packets.V5, 60)
		if err := cl.Publish("x", []byte("before"), 1, true); err != nil {
			t.Fatalf("before the change: %v", err)
		}
		change("live", c.limits)
		if _, err := cl.Conn.Write(c.pub); err != nil {
			t.Fatal(err)
		}
		expectEnd(t, cl, c.code)
	}

	// max_subs lowered under what the session holds: the next filter is
	// refused, those held stay.
	cl, _ := h.connectLevel("live", "live", packets.V5, 60)
	if got := subscribeAll(t, cl, 1, 0, "s/1", "s/2"); codes(got) != "[0 0]" {
		t.Fatalf("SUBACK %v", got)
	}
	change("live", map[string]string{"max_subs": "1"})
	if got := subscribeAll(t, cl, 2, 0, "s/3", "s/1"); codes(got) != "[151 0]" {
		t.Fatalf("after max_subs 1: SUBACK %v, want [151 0]", got)
	}

	// pub_rate set on a live session: 8 PUBLISHes at 2 a second (burst 2)
	// take at least 3 s.
	change("live", map[string]string{"pub_rate": "2"})
	start := time.Now()
	for i := range 8 {
		if err := cl.Publish("x", []byte{byte(i)}, 1, false); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took < 2500*time.Millisecond {
		t.Errorf("8 PUBLISHes at pub_rate 2 took %v, want at least 3 s (2.5 with margin)", took)
	}
	// pub_bytes in its place: 6,000 bytes at 2,000 a second (burst
	// 2,000) take at least 2 s.
	change("live", map[string]string{"pub_rate": "", "pub_bytes": "2000"})
	start = time.Now()
	for i := range 6 {
		if err := cl.Publish("x", make([]byte, 1000+i), 1, false); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took < 1500*time.Millisecond {
		t.Errorf("6,000 bytes at pub_bytes 2000 took %v, want at least 2 s (1.5 with margin)", took)
	}
	cl.Disconnect()

	// max_sessions set while two sessions live: both stay, a third is
	// refused.
	a, _ := h.connectLevel("live", "live:a", packets.V311, 60)
	b, _ := h.connectLevel("live", "live:b", packets.V311, 60)
	v5, _ := h.connectLevel("live", "live:v5", packets.V5, 0)
	change("live", map[string]string{"max_sessions": "1", "pub_bytes": ""})
	_, ack := h.connectLevel("live", "live:c", packets.V311, 60)
	if ack.Code != 0x05 {
		t.Fatalf("a third session with max_sessions 1 and two live: CONNACK 0x%02X, want 0x05", ack.Code)
	}
	roundTrip(t, a, b, "still/live")

	// max_keepalive set on a live 3.1.1 session: silence ends it; an
	// MQTT 5 session keeps what its CONNACK said (no keep alive) until its
	// next CONNECT.
	change("live", map[string]string{"max_keepalive": "1"})
	expectEnd(t, a, 0)
	alive(t, v5)
}

// codes writes reason codes as numbers, "[1 128]".
func codes(cs []packets.ReasonCode) string {
	b := make([]byte, len(cs))
	for i, c := range cs {
		b[i] = byte(c)
	}
	return fmt.Sprint(b)
}

// TestMaxSessionsRaceAcrossReplicas: two replicas, each counting its
// sessions in Redis (authstore/sessions), take CONNECTs of one user at the
// same moment when one place under its max_sessions is left, 200 times:
// exactly one is accepted each time (0x00), the other refused (0x05),
// never both, never neither.
func TestMaxSessionsRaceAcrossReplicas(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	rdb, err := redisconn.NewClient(testenv.RedisURL(h.redis))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	replica := func(id string) string {
		c, err := sessions.New(rdb, sessions.Options{Replica: id})
		if err != nil {
			t.Fatal(err)
		}
		_, addr := h.replicaWith(authstore.Options{}, func(cfg *Config) { cfg.Sessions = c })
		t.Cleanup(c.Close) // after the replica's shutdown (cleanups run last first)
		return addr
	}
	a, b := replica("a"), replica("b")
	h.limitUser("race", map[string]string{"max_sessions": "2"})
	cfg := h.clientTLS(tls.VersionTLS13)
	if _, ack, _ := h.connectRawTo(a, cfg, mqtttest.Creds(packets.V311, "race:0", "race", "pw")); ack.Code != 0 {
		t.Fatalf("the first session: 0x%02X", ack.Code)
	}
	live := func() int {
		n, err := sessions.Live(context.Background(), rdb, redisconn.NewKeys(""), "race")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for round := range 200 {
		var wg sync.WaitGroup
		start := make(chan struct{})
		clients := make([]*mqtttest.Client, 2)
		acks := make([]byte, 2)
		for i, addr := range []string{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn, err := tls.Dial("tcp", addr, cfg)
				if err != nil {
					acks[i] = 0xFF
					return
				}
				<-start
				cl, ack, err := mqtttest.Connect(conn, mqtttest.Creds(packets.V311, fmt.Sprintf("race:%d", i+1), "race", "pw"))
				acks[i], clients[i] = ack.Code, cl
				if err != nil {
					acks[i] = 0xFE
				}
			}()
		}
		close(start)
		wg.Wait()
		if codes := fmt.Sprintf("%02X %02X", acks[0], acks[1]); codes != "00 05" && codes != "05 00" {
			t.Fatalf("round %d: CONNACKs %s through a and b: want one 00 and one 05", round, codes)
		}
		for i, cl := range clients {
			if acks[i] == 0 {
				cl.Disconnect()
			} else {
				cl.Conn.Close()
			}
		}
		testenv.WaitFor(t, 5*time.Second, "the winner counted out", func() bool { return live() == 1 })
	}
}

// TestLongWaitKeepsBrokerAlive: a device held back longer than the
// broker's keep alive (a 600-byte PUBLISH behind another under pub_bytes
// 100: about 5 s, with a keep alive of 2 s, which Mosquitto enforces at
// 3 s) keeps its session: the proxy pings the broker through the wait,
// and both messages arrive.
func TestLongWaitKeepsBrokerAlive(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.limitUser("slow", map[string]string{"pub_bytes": "100"})
	a := h.subscribeArrivals("slow/#")
	cl, ack := h.connectLevel("slow", "slow", packets.V311, 2)
	if !ack.Accepted() {
		t.Fatalf("CONNACK 0x%02X", ack.Code)
	}
	start := time.Now()
	for i := range 2 {
		p := mqtttest.AppendPublish(nil, packets.V311, "slow/x", []byte(fmt.Sprintf("%03d%s", i, make([]byte, 597))), 0, false, 0)
		if _, err := cl.Conn.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, 20*time.Second, "both messages", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.times) == 2
	})
	if took := time.Since(start); took < 4*time.Second {
		t.Errorf("the second PUBLISH arrived after %v: it should have waited about 5 s (600 bytes over a bucket of 100 in debt)", took)
	}
	alive(t, cl)
}
