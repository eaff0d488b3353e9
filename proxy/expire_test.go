package proxy

import (
	"context"
	"crypto/tls"
	"sync"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// TestExpiredUserClosedWithKghx: with notify-keyspace-events Kghx (the
// documented setting), a user hash that an operator let expire (EXPIRE, as
// with redis-cli) closes the user's live connections within a second of
// the expiry, v5 after DISCONNECT 0x98, without waiting for the periodic
// re-validation; another user's connections stay up.
func TestExpiredUserClosedWithKghx(t *testing.T) {
	h := newHarness(t, harnessOptions{redisArgs: []string{"--notify-keyspace-events", "Kghx"}, revalidate: time.Hour})
	h.setUser("temp", operator.Update{Password: ptr("pw")})
	h.setUser("other", operator.Update{Password: ptr("pw")})
	cfg := h.clientTLS(tls.VersionTLS13)
	v5, ack5, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V5, "temp:5", "temp", "pw"))
	v3, ack3, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V311, "temp:3", "temp", "pw"))
	sub, ackS, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V5, "other:sub", "other", "pw"))
	pub, ackP, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V311, "other:pub", "other", "pw"))
	if ack5.Code|ack3.Code|ackS.Code|ackP.Code != 0 {
		t.Fatal("connect failed")
	}
	if err := sub.Subscribe("bystander/#", 1); err != nil {
		t.Fatal(err)
	}
	stillUp(t, sub, pub, "bystander/before")

	const ttl = 300 * time.Millisecond
	if err := h.admin.PExpire(context.Background(), h.store.UserKey("temp"), ttl).Err(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, c := range []*mqtttest.Client{v5, v3} {
		wg.Add(1)
		go func() { defer wg.Done(); expectClosed(t, c, ttl+revocationBound) }()
	}
	wg.Wait()
	if n := h.admin.Exists(context.Background(), h.store.UserKey("temp")).Val(); n != 0 {
		t.Fatalf("the connections closed but the user hash still exists")
	}
	stillUp(t, sub, pub, "bystander/after")
	if _, ack, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V5, "temp:5", "temp", "pw")); ack.Code == 0 {
		t.Fatal("the expired user connects again")
	}
}
