package proxy

import (
	"crypto/tls"
	"testing"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/schemas"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// TestSchemaEMQXConditionsThroughTheProxy: EMQX rules with qos and
// retain conditions grant what they say, through the relay: a publish
// rule limited to QoS 0 and 1 without retain lets exactly those through
// (a QoS 2 or retained PUBLISH is refused as the topic rules refuse one:
// 0x87), a subscribe rule limited to QoS 1 grants a SUBSCRIBE at QoS 1
// and refuses one at QoS 0, as EMQX's authorizer does.
func TestSchemaEMQXConditionsThroughTheProxy(t *testing.T) {
	h := newHarness(t, harnessOptions{strictTopics: true, redisArgs: []string{"--notify-keyspace-events", "Kghx"}})
	sc, err := schemas.NewEMQX(schemas.EMQXOptions{AuthnCmd: schemas.DefaultEMQXAuthnCmd, AuthzCmd: schemas.DefaultEMQXAuthzCmd,
		PasswordHash: "sha256", SaltPosition: "prefix"})
	if err != nil {
		t.Fatal(err)
	}
	h.do("HSET", "mqtt_user:cond", "password_hash", e2eSHA256, "salt", "s4lt")
	h.do("HSET", "mqtt_acl:cond", "up/${username}", `{"action":"publish","qos":[0,1],"retain":false}`,
		"down/${username}", `{"action":"subscribe","qos":1}`)
	addr := schemaProxy(t, h, sc, 2)
	c, ack, _ := h.connectRawTo(addr, h.clientTLS(tls.VersionTLS13), mqtttest.Creds(packets.V5, "cond:1", "cond", "sha256-pass"))
	if ack.Code != 0 {
		t.Fatalf("CONNACK 0x%02X", ack.Code)
	}
	if a := publishAck(t, c, 1, "up/cond", 1, nil); a.Code != packets.Success && a.Code != packets.NoMatchingSubscribers {
		t.Fatalf("QoS 1 PUBLISH the rule allows: 0x%02X", a.Code)
	}
	if a := publishAck(t, c, 2, "up/cond", 2, nil); a.Code != packets.NotAuthorized {
		t.Fatalf("QoS 2 PUBLISH the rule does not allow: 0x%02X, want 0x87", a.Code)
	}
	retained := mqtttest.AppendPublish(nil, packets.V5, "up/cond", []byte("r"), 1, true, 3)
	if _, err := c.Conn.Write(retained); err != nil {
		t.Fatal(err)
	}
	_, pkt, err := mqtttest.ReadUntil(c.Conn, packets.PUBACK, 1<<16)
	if a, _ := packets.DecodeAck(pkt, packets.V5); err != nil || a.Code != packets.NotAuthorized {
		t.Fatalf("retained PUBLISH the rule does not allow: %x %v, want PUBACK 0x87", pkt, err)
	}
	if got := subscribeAll(t, c, 4, 1, "down/cond"); codes(got) != "[1]" {
		t.Fatalf("SUBSCRIBE at QoS 1: %v", got)
	}
	if got := subscribeAll(t, c, 5, 0, "down/cond"); codes(got) != "[135]" {
		t.Fatalf("SUBSCRIBE at QoS 0 the rule does not allow: %v, want [135]", got)
	}
	alive(t, c)
}
