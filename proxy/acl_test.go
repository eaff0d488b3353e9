package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// subscribeCodes sends one SUBSCRIBE with filters (QoS 1 each) and returns
// the SUBACK's codes.
func subscribeCodes(t *testing.T, c *mqtttest.Client, id uint16, filters ...string) []packets.ReasonCode {
	t.Helper()
	var fs []packets.SubscribeFilter
	for _, f := range filters {
		fs = append(fs, packets.SubscribeFilter{Filter: f, Options: 1})
	}
	pkt, err := packets.AppendSubscribe(nil, c.Level, id, packets.Properties{}, fs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Conn.Write(pkt); err != nil {
		t.Fatal(err)
	}
	for {
		h, p, err := c.ReadPacket(10 * time.Second)
		if err != nil {
			t.Fatalf("waiting for the SUBACK: %v", err)
		}
		if h.Type != packets.SUBACK {
			continue
		}
		ack, err := packets.DecodeSuback(p, c.Level)
		if err != nil || ack.PacketID != id {
			t.Fatalf("SUBACK %x: %+v %v", p, ack, err)
		}
		return ack.Codes
	}
}

// publishAck publishes and returns the acknowledgement (PUBACK for QoS 1,
// PUBREC for QoS 2; nil for QoS 0).
func publishAck(t *testing.T, c *mqtttest.Client, id uint16, topic string, qos byte, props packets.Properties) *packets.Ack {
	t.Helper()
	p := packets.Publish{QoS: qos, Topic: []byte(topic), Payload: []byte("from " + topic), Properties: props}
	if qos > 0 {
		p.PacketID = id
	}
	pkt, err := packets.AppendPublish(nil, c.Level, &p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Conn.Write(pkt); err != nil {
		t.Fatal(err)
	}
	if qos == 0 {
		return nil
	}
	want := packets.PUBACK
	if qos == 2 {
		want = packets.PUBREC
	}
	for {
		h, raw, err := c.ReadPacket(10 * time.Second)
		if err != nil {
			t.Fatalf("waiting for the %v: %v", want, err)
		}
		if h.Type == want {
			a, err := packets.DecodeAck(raw, c.Level)
			if err != nil {
				t.Fatal(err)
			}
			return &a
		}
	}
}

// expectNothing checks that c receives no PUBLISH within d.
func expectNothing(t *testing.T, c *mqtttest.Client, d time.Duration, what string) {
	t.Helper()
	if m, err := c.ReadPublish(d); err == nil {
		t.Fatalf("%s: received %q on %s", what, m.Payload, m.Topic)
	}
}

// brokerSaw reports whether any connection to the broker carried s (the
// test forwarder keeps each connection's first bytes).
func (h *harness) brokerSaw(s string) bool {
	for _, b := range h.front.seen() {
		if bytes.Contains(b, []byte(s)) {
			return true
		}
	}
	return false
}

// TestTopicRules: two users with devices/%u/# against real Mosquitto and
// HiveMQ CE: alice's # subscription is refused and she receives nothing
// of bob's; a mixed SUBSCRIBE gets its codes in order; her PUBLISH to
// bob's topic never reaches the broker, at any QoS, with each version's
// acknowledgement.
func TestTopicRules(t *testing.T) {
	for _, b := range brokers {
		t.Run(b, func(t *testing.T) {
			o := harnessOptions{backend: b, strictTopics: true}
			if b == "hivemq" {
				o.backendPass = brokerSecret
			}
			h := newHarness(t, o)
			for _, u := range []string{"alice", "bob"} {
				h.setUser(u, operator.Update{Password: ptr("pw"), Publish: &[]string{"devices/%u/#"}, Subscribe: &[]string{"devices/%u/#"}})
			}
			for _, lv := range []packets.Level{packets.V311, packets.V5} {
				t.Run("MQTT "+lv.String(), func(t *testing.T) { topicRules(t, h, lv) })
			}
		})
	}
}

func topicRules(t *testing.T, h *harness, lv packets.Level) {
	cfg := h.clientTLS(tls.VersionTLS13)
	tag := strings.ReplaceAll(lv.String(), ".", "")
	// Publishers and subscribers on separate connections: a publisher
	// waiting for its acknowledgement skips what is delivered to it.
	alice, ack, _ := h.connectRaw(cfg, mqtttest.Creds(lv, "alice:"+tag, "alice", "pw"))
	aliceSub, ack1, _ := h.connectRaw(cfg, mqtttest.Creds(lv, "alice:sub-"+tag, "alice", "pw"))
	bob, ack2, _ := h.connectRaw(cfg, mqtttest.Creds(lv, "bob:"+tag, "bob", "pw"))
	bobPub, ack3, _ := h.connectRaw(cfg, mqtttest.Creds(lv, "bob:pub-"+tag, "bob", "pw"))
	if ack.Code|ack1.Code|ack2.Code|ack3.Code != 0 {
		t.Fatal("connect failed")
	}
	refused := packets.ReasonCode(0x80)
	if lv == packets.V5 {
		refused = packets.NotAuthorized
	}
	if got := subscribeCodes(t, aliceSub, 1, "#"); !slices.Equal(got, []packets.ReasonCode{refused}) {
		t.Fatalf("alice subscribes #: %v", got)
	}
	if got := subscribeCodes(t, bob, 1, "devices/bob/#"); !slices.Equal(got, []packets.ReasonCode{1}) {
		t.Fatalf("bob subscribes his own: %v", got)
	}
	// Mixed: granted, refused, granted, in the device's order.
	if got := subscribeCodes(t, aliceSub, 2, "devices/alice/+", "devices/+/cmd", "devices/alice/x/#"); !slices.Equal(got, []packets.ReasonCode{1, refused, 1}) {
		t.Fatalf("mixed SUBSCRIBE: %v", got)
	}
	// Bob's traffic does not reach alice.
	if err := bobPub.Publish("devices/bob/data", []byte("bob's"), 1, false); err != nil {
		t.Fatal(err)
	}
	if m, err := bob.ReadPublish(5 * time.Second); err != nil || m.Topic != "devices/bob/data" {
		t.Fatalf("bob's own message: %+v %v", m, err)
	}
	expectNothing(t, aliceSub, 300*time.Millisecond, "alice after bob published")
	// Alice's PUBLISH to bob's topic is withheld at every QoS.
	target := "devices/bob/cmd-" + tag
	for qos := byte(0); qos <= 2; qos++ {
		a := publishAck(t, alice, uint16(10+qos), target, qos, nil)
		switch {
		case qos == 0 && a != nil, qos > 0 && a == nil:
			t.Fatalf("QoS %d: ack %+v", qos, a)
		case qos > 0 && lv == packets.V5 && a.Code != packets.NotAuthorized:
			t.Fatalf("QoS %d: reason 0x%02X, want 0x87", qos, a.Code)
		case qos > 0 && a.PacketID != uint16(10+qos):
			t.Fatalf("QoS %d: ack for id %d", qos, a.PacketID)
		}
		if qos == 2 && lv != packets.V5 {
			// 3.x: the proxy completes the flow; the broker never sees the id.
			if _, err := alice.Conn.Write(packets.AppendAck(nil, packets.PUBREL, lv, 12, packets.Success)); err != nil {
				t.Fatal(err)
			}
			if h2, p, err := alice.ReadPacket(5 * time.Second); err != nil || h2.Type != packets.PUBCOMP || p[3] != 12 {
				t.Fatalf("PUBREL for the withheld QoS 2: %v %x %v", h2.Type, p, err)
			}
		}
	}
	expectNothing(t, bob, 300*time.Millisecond, "bob after alice's denied publishes")
	// Her own topics work: the session is alive.
	if a := publishAck(t, alice, 20, "devices/alice/x/y", 1, nil); a == nil || a.Code != 0 {
		t.Fatalf("allowed publish: %+v", a)
	}
	if m, err := aliceSub.ReadPublish(5 * time.Second); err != nil || m.Topic != "devices/alice/x/y" {
		t.Fatalf("alice's own message: %+v %v", m, err)
	}
	if h.brokerSaw(target) {
		t.Fatalf("the broker received a PUBLISH to %s", target)
	}
	if !h.brokerSaw("devices/alice/x/y") {
		t.Fatal("the forwarder saw no allowed PUBLISH: the check above proves nothing")
	}
}

// TestTopicAliasTrick: an MQTT 5 alias set on an allowed topic, then
// re-pointed at a denied one (withheld), then used alone, is judged by the
// denied topic; once that topic is allowed, the alias-only PUBLISH is
// delivered under it, never under the broker's older mapping.
func TestTopicAliasTrick(t *testing.T) {
	for _, b := range brokers {
		t.Run(b, func(t *testing.T) {
			o := harnessOptions{backend: b, strictTopics: true, redisArgs: []string{"--notify-keyspace-events", "Kghx"}}
			if b == "hivemq" {
				o.backendPass = brokerSecret
			}
			h := newHarness(t, o)
			h.setUser("mal", operator.Update{Password: ptr("pw"), Publish: &[]string{"devices/%u/#"}, Subscribe: &[]string{"devices/%u/#"}})
			h.setUser("vic", operator.Update{Password: ptr("pw"), Subscribe: &[]string{"devices/%u/#"}})
			cfg := h.clientTLS(tls.VersionTLS13)
			mal, _, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V5, "mal", "mal", "pw"))
			malSub, _, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V5, "mal:sub", "mal", "pw"))
			vic, _, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V5, "vic", "vic", "pw"))
			if got := subscribeCodes(t, malSub, 1, "devices/mal/#"); got[0] != 1 {
				t.Fatalf("subscribe: %v", got)
			}
			if got := subscribeCodes(t, vic, 1, "devices/vic/#"); got[0] != 1 {
				t.Fatalf("subscribe: %v", got)
			}
			alias := packets.Properties{byte(packets.PropTopicAlias), 0, 1} // Topic Alias 1
			// 1. Set on an allowed topic: delivered.
			if a := publishAck(t, mal, 1, "devices/mal/a", 1, alias); a.Code != 0 {
				t.Fatalf("allowed: 0x%02X", a.Code)
			}
			if m, err := malSub.ReadPublish(5 * time.Second); err != nil || m.Topic != "devices/mal/a" {
				t.Fatalf("%+v %v", m, err)
			}
			// 2. Re-pointed at vic's topic: withheld.
			if a := publishAck(t, mal, 2, "devices/vic/x", 1, alias); a.Code != packets.NotAuthorized {
				t.Fatalf("re-pointed: 0x%02X", a.Code)
			}
			// 3. Alias alone: judged by vic's topic, withheld; without the
			// tracking the broker would deliver it under devices/mal/a.
			if a := publishAck(t, mal, 3, "", 1, alias); a.Code != packets.NotAuthorized {
				t.Fatalf("alias-only: 0x%02X", a.Code)
			}
			expectNothing(t, malSub, 300*time.Millisecond, "mal after the alias-only publish")
			expectNothing(t, vic, 100*time.Millisecond, "vic after the alias-only publish")
			// 4. The topic allowed live: the alias-only PUBLISH goes out
			// under vic's topic, never mal's.
			h.hset("mal", "publish", "devices/%u/# devices/vic/x")
			deadline := time.Now().Add(5 * time.Second)
			for {
				a := publishAck(t, mal, 4, "", 1, alias)
				if a.Code == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the new rule never applied")
				}
				time.Sleep(20 * time.Millisecond) // until the notification has been applied
			}
			if m, err := vic.ReadPublish(5 * time.Second); err != nil || m.Topic != "devices/vic/x" {
				t.Fatalf("vic got %+v %v", m, err)
			}
			expectNothing(t, malSub, 300*time.Millisecond, "mal after the alias was synced")
		})
	}
}

// TestNameNeverInjectsWildcards: a user named with + or / gets nothing
// from its %u patterns, end to end.
func TestNameNeverInjectsWildcards(t *testing.T) {
	h := newHarness(t, harnessOptions{strictTopics: true})
	cfg := h.clientTLS(tls.VersionTLS13)
	for _, name := range []string{"+", "a/b", "#"} {
		h.setUser(name, operator.Update{Password: ptr("pw"), ClientIDs: &[]string{"*"}, Publish: &[]string{"devices/%u/#"}, Subscribe: &[]string{"devices/%u/#"}})
		c, ack, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V5, fmt.Sprintf("inj-%d", len(name)), name, "pw"))
		if ack.Code != 0 {
			t.Fatalf("%q: CONNACK 0x%02X", name, ack.Code)
		}
		for _, f := range []string{"devices/+/#", "devices/#", "devices/x/y"} {
			if got := subscribeCodes(t, c, 1, f); got[0] != packets.NotAuthorized {
				t.Errorf("user %q subscribes %s: 0x%02X", name, f, got[0])
			}
		}
		if a := publishAck(t, c, 2, "devices/x/y", 1, nil); a.Code != packets.NotAuthorized {
			t.Errorf("user %q publishes devices/x/y: 0x%02X", name, a.Code)
		}
	}
}

// TestTopicRulesChangeLive: on two replicas, removing a user's subscribe
// rights ends its live v5 sessions with DISCONNECT 0x87 within a second;
// new publish rights apply to the next PUBLISH; a change to a role reaches
// all the users holding it.
func TestTopicRulesChangeLive(t *testing.T) {
	h := newHarness(t, harnessOptions{strictTopics: true, redisArgs: []string{"--notify-keyspace-events", "Kghx"}})
	_, addr2 := h.replica()
	cfg := h.clientTLS(tls.VersionTLS13)
	h.setUser("live", operator.Update{Password: ptr("pw"), Subscribe: &[]string{"devices/%u/#"}, Publish: &[]string{"devices/%u/in"}})
	a, _, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V5, "live:a", "live", "pw"))
	b, _, _ := h.connectRawTo(addr2, cfg, mqtttest.Creds(packets.V5, "live:b", "live", "pw"))
	for _, c := range []*mqtttest.Client{a, b} {
		if got := subscribeCodes(t, c, 1, "devices/live/#"); got[0] != 1 {
			t.Fatalf("subscribe: %v", got)
		}
	}
	// New publish rights, without reconnecting.
	if ack := publishAck(t, a, 2, "devices/live/out", 1, nil); ack.Code != packets.NotAuthorized {
		t.Fatalf("before the grant: 0x%02X", ack.Code)
	}
	h.hset("live", "publish", "devices/%u/in devices/%u/out")
	waitPublishAllowed(t, a, "devices/live/out")
	// And taken back: the topic just allowed (and remembered as allowed)
	// is refused on the next PUBLISH after the change.
	h.hset("live", "publish", "devices/%u/in")
	waitPublishRefused(t, a, "devices/live/out")
	if ack := publishAck(t, a, 3, "devices/live/in", 1, nil); ack.Code != 0 {
		t.Fatalf("the remaining grant: 0x%02X", ack.Code)
	}
	// Subscribe rights removed: both sessions end with 0x87.
	start := time.Now()
	if err := h.admin.HDel(context.Background(), h.store.UserKey("live"), "subscribe").Err(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*mqtttest.Client{a, b} {
		expectClosedWith(t, c, revocationBound, 0x87)
	}
	t.Logf("both replicas closed the sessions %v after HDEL", time.Since(start).Round(time.Millisecond))

	// A role change reaches every user holding it.
	if err := h.store.SetRole(context.Background(), "fleet", operator.RoleUpdate{Subscribe: &[]string{"fleet/#"}}); err != nil {
		t.Fatal(err)
	}
	var fleet []*mqtttest.Client
	for i, u := range []string{"f1", "f2"} {
		h.setUser(u, operator.Update{Password: ptr("pw"), Roles: &[]string{"fleet"}})
		addr := []string{h.addr, addr2}[i]
		c, ack, _ := h.connectRawTo(addr, cfg, mqtttest.Creds(packets.V5, u, u, "pw"))
		if ack.Code != 0 {
			t.Fatal("connect")
		}
		if got := subscribeCodes(t, c, 1, "fleet/cmd/#"); got[0] != 1 {
			t.Fatalf("%s subscribe: %v", u, got)
		}
		fleet = append(fleet, c)
	}
	if err := h.store.SetRole(context.Background(), "fleet", operator.RoleUpdate{Subscribe: &[]string{"fleet/status/#"}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range fleet {
		expectClosedWith(t, c, revocationBound, 0x87)
	}
}

// waitPublishAllowed publishes to topic (QoS 1) until the PUBACK says
// success: the rule change is applied within the revocation bound.
func waitPublishAllowed(t *testing.T, c *mqtttest.Client, topic string) {
	t.Helper()
	deadline := time.Now().Add(revocationBound)
	for id := uint16(100); ; id++ {
		if a := publishAck(t, c, id, topic, 1, nil); a.Code == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish to %s still refused after %v", topic, revocationBound)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitPublishRefused publishes to topic (QoS 1) until the PUBACK says
// 0x87: the rule change is applied within the revocation bound.
func waitPublishRefused(t *testing.T, c *mqtttest.Client, topic string) {
	t.Helper()
	deadline := time.Now().Add(revocationBound)
	for id := uint16(1000); ; id++ {
		if a := publishAck(t, c, id, topic, 1, nil); a.Code == packets.NotAuthorized {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish to %s still allowed after %v", topic, revocationBound)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPublishVerdictRemembered: the last allowed topic is judged by one
// comparison, and only under the rules that allowed it.
func TestPublishVerdictRemembered(t *testing.T) {
	compile := func(publish ...string) *policy.TopicRules {
		var ps []policy.Pattern
		for _, f := range publish {
			ps = append(ps, policy.Pattern{Filter: f, Source: "user"})
		}
		r, err := policy.CompileTopics(ps, nil, "u", "c")
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	f := &aclFilter{}
	f.rules.Store(compile("a/#"))
	for range 2 {
		if !f.mayPublish([]byte("a/b"), 0, false) {
			t.Fatal("a/b under a/#")
		}
	}
	if f.mayPublish([]byte("a"), 0, false) == false || f.mayPublish([]byte("b/a"), 0, false) {
		t.Fatal("a under a/# is allowed, b/a is not")
	}
	if f.mayPublish([]byte("b/a"), 0, false) {
		t.Fatal("a denial was remembered as allowed")
	}
	f.mayPublish([]byte("a/b"), 0, false)
	f.rules.Store(compile("c/#")) // a rule change
	if f.mayPublish([]byte("a/b"), 0, false) {
		t.Fatal("allowed under the rules before the change")
	}
	if !f.mayPublish([]byte("c/d"), 0, false) || f.mayPublish([]byte("c/"), 0, false) == false {
		t.Fatal("c/# grants")
	}
}

// expectClosedWith is expectClosed with the v5 DISCONNECT's reason code.
func expectClosedWith(t *testing.T, c *mqtttest.Client, within time.Duration, code byte) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last []byte
	for {
		_ = c.Conn.SetReadDeadline(deadline)
		_, pkt, err := packets.ReadPacket(c.Conn, 1<<20)
		if err != nil {
			if isTimeout(err) {
				t.Fatalf("still open after %v", within)
			}
			break
		}
		last = pkt
	}
	if !bytes.Equal(last, []byte{0xE0, 1, code}) {
		t.Fatalf("last packet %x, want DISCONNECT 0x%02X", last, code)
	}
}

// TestMalformedAfterConnect: a packet that does not decode after the
// CONNECT ends the session (MQTT 5: DISCONNECT 0x81 first) and never
// reaches the broker.
func TestMalformedAfterConnect(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.setUser("bad", operator.Update{Password: ptr("pw")})
	cfg := h.clientTLS(tls.VersionTLS13)
	for i, c := range []struct {
		level packets.Level
		pkt   []byte
		last  []byte // nil: closed without a packet
	}{
		{packets.V5, []byte{0x36, 0x0A, 0, 6, 'b', 'a', 'd', '/', 'q', '3', 0, 1, 0, 'x'}, []byte{0xE0, 1, 0x81}}, // QoS 3 [MQTT-3.3.1-4]
		{packets.V5, []byte{0x80, 0x09, 0, 1, 0, 0, 3, 'b', 'a', 'd', 1}, []byte{0xE0, 1, 0x81}},                  // SUBSCRIBE flags 0 [MQTT-3.8.1-1]
		{packets.V311, []byte{0x36, 0x09, 0, 6, 'b', 'a', 'd', '/', 'q', '3', 0, 1, 'x'}, nil},
		{packets.V5, []byte{0x30, 0x80, 0x80, 0x80, 0x80, 0x01}, []byte{0xE0, 1, 0x81}}, // a fifth length byte
	} {
		cl, ack, _ := h.connectRaw(cfg, mqtttest.Creds(c.level, fmt.Sprintf("bad:%d", i), "bad", "pw"))
		if ack.Code != 0 {
			t.Fatal("connect")
		}
		if _, err := cl.Conn.Write(c.pkt); err != nil {
			t.Fatal(err)
		}
		_ = cl.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		var last []byte
		for {
			_, p, err := packets.ReadPacket(cl.Conn, 1<<16)
			if err != nil {
				if isTimeout(err) {
					t.Fatalf("case %d: still open", i)
				}
				break
			}
			last = p
		}
		if !bytes.Equal(last, c.last) {
			t.Fatalf("case %d: last packet %x, want %x", i, last, c.last)
		}
	}
	if h.brokerSaw("bad/q3") {
		t.Fatal("a malformed PUBLISH reached the broker")
	}
}
