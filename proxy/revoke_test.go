package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// revocationBound is the promise: a revoked device loses its live
// connection within a second.
const revocationBound = time.Second

// expectClosed reads what the proxy sends until the connection ends, within
// the bound, and checks that the stream ends on a packet boundary; for MQTT
// 5 the last packet must be DISCONNECT 0x98 (administrative action).
func expectClosed(t *testing.T, c *mqtttest.Client, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	_ = c.Conn.SetReadDeadline(deadline)
	var last []byte
	for {
		_, pkt, err := packets.ReadPacket(c.Conn, 1<<20)
		if err != nil {
			switch {
			case errors.Is(err, packets.ErrTruncated):
				t.Fatalf("the connection ended inside a packet: %v", err)
			case isTimeout(err):
				t.Fatalf("still open after %v", within)
			}
			break // EOF or reset: closed
		}
		last = pkt
	}
	if c.Level == packets.V5 && !bytes.Equal(last, []byte{0xE0, 1, 0x98}) {
		t.Fatalf("v5 client's last packet %x, want DISCONNECT 0x98", last)
	}
}

// stillUp checks that a connection relays: pub to sub on a fresh topic.
func stillUp(t *testing.T, sub, pub *mqtttest.Client, topic string) {
	t.Helper()
	payload := []byte("still here " + topic)
	if err := pub.Publish(topic, payload, 1, false); err != nil {
		t.Fatalf("bystander publish: %v", err)
	}
	m, err := sub.ReadPublish(5 * time.Second)
	if err != nil || !bytes.Equal(m.Payload, payload) {
		t.Fatalf("bystander did not receive: %+v %v", m, err)
	}
}

// TestRevocationOnEveryReplica: two proxies on one Redis; a device of the
// revoked user on each is closed within a second (v5 after DISCONNECT 0x98);
// another user's connections stay up and keep delivering.
func TestRevocationOnEveryReplica(t *testing.T) {
	for _, how := range []struct {
		name       string
		redisArgs  []string
		revalidate time.Duration
		revoke     func(h *harness)
	}{
		{"CLI", nil, 0, func(h *harness) {
			if err := h.store.SetEnabled(context.Background(), "rev", false); err != nil {
				t.Fatal(err)
			}
		}},
		{"redis-cli HSET with keyspace notifications", []string{"--notify-keyspace-events", "Kgh"}, 0, func(h *harness) {
			h.hset("rev", "enabled", "false")
		}},
		{"redis-cli DEL with keyspace notifications", []string{"--notify-keyspace-events", "Kgh"}, 0, func(h *harness) {
			h.admin.Del(context.Background(), h.store.UserKey("rev"))
		}},
		{"redis-cli HSET without notifications: periodic re-validation", nil, 200 * time.Millisecond, func(h *harness) {
			h.hset("rev", "enabled", "false")
		}},
		{"password changed", nil, 0, func(h *harness) {
			if err := h.store.SetUser(context.Background(), "rev", operator.Update{Password: ptr("new")}); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(how.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{redisArgs: how.redisArgs, revalidate: how.revalidate})
			_, addr2 := h.replica()
			h.setUser("rev", operator.Update{Password: ptr("pw")})
			h.setUser("other", operator.Update{Password: ptr("pw")})
			cfg := h.clientTLS(tls.VersionTLS13)
			v5, ack, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V5, "rev:5", "rev", "pw"))
			v3, ack3, _ := h.connectRawTo(addr2, cfg, mqtttest.Creds(packets.V311, "rev:3", "rev", "pw"))
			sub, ackS, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V5, "other:sub", "other", "pw"))
			pub, ackP, _ := h.connectRawTo(addr2, cfg, mqtttest.Creds(packets.V311, "other:pub", "other", "pw"))
			if ack.Code|ack3.Code|ackS.Code|ackP.Code != 0 {
				t.Fatal("connect failed")
			}
			if err := sub.Subscribe("bystander/#", 1); err != nil {
				t.Fatal(err)
			}
			stillUp(t, sub, pub, "bystander/before")

			how.revoke(h)
			var wg sync.WaitGroup
			for _, c := range []*mqtttest.Client{v5, v3} {
				wg.Add(1)
				go func() { defer wg.Done(); expectClosed(t, c, revocationBound) }()
			}
			wg.Wait()
			stillUp(t, sub, pub, "bystander/after")
			if _, ack, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V5, "rev:5", "rev", "pw")); ack.Code == 0 {
				t.Fatal("the revoked user connects again")
			}
		})
	}
}

// TestRevocationMidFlood: a revocation while the broker streams QoS 1
// messages to the device: the device receives only whole packets, then
// DISCONNECT 0x98.
func TestRevocationMidFlood(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.setUser("flood", operator.Update{Password: ptr("pw")})
	h.setUser("feeder", operator.Update{Password: ptr("pw")})
	cfg := h.clientTLS(tls.VersionTLS13)
	sub, ack, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V5, "flood:sub", "flood", "pw"))
	if ack.Code != 0 {
		t.Fatal("connect")
	}
	if err := sub.Subscribe("flood/t", 1); err != nil {
		t.Fatal(err)
	}
	pub, _, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V311, "feeder:flood-pub", "feeder", "pw"))
	stop := make(chan struct{})
	var sent atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		payload := bytes.Repeat([]byte("x"), 3000) // several TLS records' worth per read
		for i := 0; i < 200000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := pub.Publish("flood/t", payload, 1, false); err != nil {
				return
			}
			sent.Add(1)
		}
	}()
	// Read whole QoS 1 messages, acknowledging them, until enough have flowed.
	received := 0
	for received < 300 {
		m, err := sub.ReadPublish(10 * time.Second)
		if err != nil || m.QoS != 1 {
			t.Fatalf("before revocation: %+v %v", m, err)
		}
		received++
	}
	if err := h.store.SetEnabled(context.Background(), "flood", false); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, sub, 3*time.Second)
	close(stop)
	<-done
	t.Logf("%d packets received before the revocation, %d published", received, sent.Load())
}

// TestRedisOutageKeepsLiveConnections: with Redis stopped, live
// connections stay (the periodic re-validation fails and keeps them), new
// CONNECTs get "server unavailable"; when Redis is back, notifications
// flow again.
func TestRedisOutageKeepsLiveConnections(t *testing.T) {
	h := newHarness(t, harnessOptions{revalidate: 100 * time.Millisecond})
	h.setUser("stay", operator.Update{Password: ptr("pw")})
	cfg := h.clientTLS(tls.VersionTLS13)
	sub, _, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V5, "stay:sub", "stay", "pw"))
	pub, _, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V311, "stay:pub", "stay", "pw"))
	if err := sub.Subscribe("stay/#", 1); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := h.admin.Save(ctx).Err(); err != nil { // the restart reloads the rules
		t.Fatal(err)
	}
	errorsBefore := testutil.ToFloat64(h.proxy.metrics.Revalidations.WithLabelValues("error"))
	h.redis.Stop()
	testenv.WaitFor(t, 5*time.Second, "re-validations to fail with Redis down", func() bool {
		return testutil.ToFloat64(h.proxy.metrics.Revalidations.WithLabelValues("error")) >= errorsBefore+4
	})
	stillUp(t, sub, pub, "stay/during")
	if _, ack, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V5, "stay:new", "stay", "pw")); ack.Code != 0x88 {
		t.Fatalf("new CONNECT with Redis down: 0x%02X, want 0x88", ack.Code)
	}
	h.redis.Start()
	testenv.WaitFor(t, 5*time.Second, "decisions to recover", func() bool {
		c, ack, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V311, "stay:probe", "stay", "pw"))
		c.Conn.Close()
		return ack.Code == 0
	})
	stillUp(t, sub, pub, "stay/after")
	// Notifications flow again: the subscription was re-established.
	testenv.WaitFor(t, 5*time.Second, "the change subscription to come back", func() bool {
		n, _ := h.admin.PubSubNumSub(ctx, h.store.ChangesChannel()).Result()
		return n[h.store.ChangesChannel()] >= 1
	})
	if err := h.store.SetEnabled(ctx, "stay", false); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, sub, revocationBound)
	expectClosed(t, pub, revocationBound)
}

// TestKickAndNotAfter: "user kick" closes live connections without a rule
// change; a not_after that passes closes the connection at that moment.
func TestKickAndNotAfter(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.setUser("k", operator.Update{Password: ptr("pw")})
	cfg := h.clientTLS(tls.VersionTLS12)
	c1, _, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V5, "k:k1", "k", "pw"))
	c2, _, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V311, "k:k2", "k", "pw"))
	n, err := h.store.Kick(context.Background(), "k")
	if err != nil || n < 1 {
		t.Fatalf("kick reached %d proxies: %v", n, err)
	}
	expectClosed(t, c1, revocationBound)
	expectClosed(t, c2, revocationBound)
	if _, ack, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V311, "k:k3", "k", "pw")); ack.Code != 0 {
		t.Fatal("a kicked user may reconnect: the rules did not change")
	}

	na := time.Now().Add(1500 * time.Millisecond)
	h.setUser("exp", operator.Update{Password: ptr("pw"), NotAfter: &na})
	c, ack, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V5, "exp:e1", "exp", "pw"))
	if ack.Code != 0 {
		t.Fatal("connect before not_after")
	}
	expectClosed(t, c, time.Until(na)+revocationBound)
	if time.Now().Before(na.Truncate(time.Second)) { // not_after is stored to the second
		t.Fatal("closed before not_after")
	}
}
