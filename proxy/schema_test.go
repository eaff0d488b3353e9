package proxy

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/schemas"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// Hashes made by Python's hashlib and crypt module (libxcrypt), not by
// this code base:
//
//	sha256("s4lt" + "sha256-pass"), sha256("s4lt" + "new-pass")
//	crypt.crypt("bcrypt-pass", "$2a$05$DDDDDDDDDDDDDDDDDDDDD.")
//	"PBKDF2$sha512$100000$" + b64(salt) + "$" + b64(pbkdf2_hmac("sha512", b"goauth-pass", b"0123456789abcdef", 100000, 32))
const (
	e2eSHA256    = "e222730a3efebea28fd0bc3c138cdbb69377388d0cd1de3f6b8ec96450fe3dc5"
	e2eSHA256New = "c7211a67838ecba2d26931b84ea34087f6ca42e0d6f79d607266ad67ed00b835"
	e2eBcrypt    = "$2a$05$DDDDDDDDDDDDDDDDDDDDD.m9iDMKbZP6JE6aXIzVn3VC8Xze48S/m"
	e2ePBKDF2    = "PBKDF2$sha512$100000$MDEyMzQ1Njc4OWFiY2RlZg==$ZZcyTkb9jJdWxCWxyq8jDJ23R3dj7nY7TlS0u2KHH/g="
)

// schemaProxy starts, beside the harness's own, a proxy whose store reads
// the schema, and waits until its change feed is subscribed to the
// schema's keyspace patterns (patterns of them, besides the native
// store's two). It returns the proxy's TLS address.
func schemaProxy(t *testing.T, h *harness, sc schemas.Schema, patterns int64) string {
	t.Helper()
	_, addr := h.replicaWith(authstore.Options{Schema: sc}, nil)
	testenv.WaitFor(t, 10*time.Second, "the change feeds to subscribe", func() bool {
		n, err := h.admin.PubSubNumPat(context.Background()).Result()
		return err == nil && n >= 2+patterns
	})
	return addr
}

// echo publishes (QoS 0) to a topic the device subscribed to and reads
// its own message back through the broker.
func echo(t *testing.T, c *mqtttest.Client, topic string) {
	t.Helper()
	payload := []byte("echo " + topic)
	if err := c.Publish(topic, payload, 0, false); err != nil {
		t.Fatal(err)
	}
	if m, err := c.ReadPublish(5 * time.Second); err != nil || m.Topic != topic || string(m.Payload) != string(payload) {
		t.Fatalf("%s: read %+v %v", topic, m, err)
	}
}

// alive checks that a session is up: a PINGREQ gets its PINGRESP.
func alive(t *testing.T, c *mqtttest.Client) {
	t.Helper()
	if _, err := c.Conn.Write([]byte{0xC0, 0}); err != nil {
		t.Fatalf("PINGREQ: %v", err)
	}
	for {
		h, _, err := c.ReadPacket(5 * time.Second)
		if err != nil {
			t.Fatalf("no PINGRESP: %v", err)
		}
		if h.Type == packets.PINGRESP {
			return
		}
	}
}

// do runs a command as an operator of the other product would, with
// redis-cli.
func (h *harness) do(args ...any) {
	h.t.Helper()
	if err := h.admin.Do(context.Background(), args...).Err(); err != nil {
		h.t.Fatalf("%v: %v", args, err)
	}
}

// TestSchemaEMQXThroughTheProxy: devices of an EMQX fleet, laid out as
// EMQX's Redis authenticator and authorizer document it, connect through
// the proxy to the broker; wrong passwords get 0x04 / 0x86; topic rules
// hold (a superuser's too); and changes made as an EMQX operator makes
// them (HSET mqtt_user:..., HDEL mqtt_acl:..., DEL) end live sessions
// within a second while a bystander's keeps relaying.
func TestSchemaEMQXThroughTheProxy(t *testing.T) {
	h := newHarness(t, harnessOptions{strictTopics: true, redisArgs: []string{"--notify-keyspace-events", "Kghx"}})
	sc, err := schemas.NewEMQX(schemas.EMQXOptions{AuthnCmd: schemas.DefaultEMQXAuthnCmd, AuthzCmd: schemas.DefaultEMQXAuthzCmd,
		PasswordHash: "sha256", SaltPosition: "prefix"})
	if err != nil {
		t.Fatal(err)
	}
	// As in EMQX's documentation: HSET mqtt_user:<name> password_hash ...
	// salt ... is_superuser ...; HSET mqtt_acl:<name> <topic> <action>.
	for _, u := range []string{"pw", "acl", "gone", "boss", "bystander"} {
		h.do("HSET", "mqtt_user:"+u, "password_hash", e2eSHA256, "salt", "s4lt")
		h.do("HSET", "mqtt_acl:"+u, "devices/${username}/#", "all", "public/#", `{"action":"subscribe"}`)
	}
	h.do("HSET", "mqtt_user:boss", "is_superuser", "1")
	addr := schemaProxy(t, h, sc, 2)
	cfg := h.clientTLS(tls.VersionTLS13)
	connect := func(level packets.Level, user, pass string) (*mqtttest.Client, byte) {
		c, ack, _ := h.connectRawTo(addr, cfg, mqtttest.Creds(level, user+":1", user, pass))
		return c, ack.Code
	}
	if _, code := connect(packets.V5, "pw", "wrong"); code != 0x86 {
		t.Fatalf("v5 wrong password: 0x%02X, want 0x86", code)
	}
	if _, code := connect(packets.V311, "pw", "wrong"); code != 0x04 {
		t.Fatalf("3.1.1 wrong password: 0x%02X, want 0x04", code)
	}
	if _, code := connect(packets.V5, "nobody", "sha256-pass"); code != 0x86 {
		t.Fatalf("v5 unknown user: 0x%02X, want 0x86", code)
	}
	clients := map[string]*mqtttest.Client{}
	for _, u := range []string{"pw", "acl", "gone", "boss", "bystander"} {
		c, code := connect(packets.V5, u, "sha256-pass")
		if code != 0 {
			t.Fatalf("%s: CONNACK 0x%02X", u, code)
		}
		clients[u] = c
	}
	by := clients["bystander"]
	if got := subscribeCodes(t, by, 1, "devices/bystander/#", "public/#", "devices/pw/#", "#"); got[0] != 1 || got[1] != 1 || got[2] != 0x87 || got[3] != 0x87 {
		t.Fatalf("bystander's SUBACK %v, want 1 1 0x87 0x87", got)
	}
	if got := subscribeCodes(t, clients["acl"], 1, "devices/acl/#"); got[0] != 1 {
		t.Fatalf("acl's SUBACK %v", got)
	}
	if got := subscribeCodes(t, clients["boss"], 1, "#"); got[0] != 1 {
		t.Fatalf("the superuser's SUBACK %v", got)
	}
	if a := publishAck(t, clients["pw"], 1, "public/x", 1, nil); a.Code != packets.NotAuthorized {
		t.Fatalf("publish to a subscribe-only rule: 0x%02X", a.Code)
	}
	if a := publishAck(t, clients["pw"], 2, "devices/bystander/x", 1, nil); a.Code != packets.NotAuthorized {
		t.Fatalf("publish to another device's topic: 0x%02X", a.Code)
	}
	echo(t, by, "devices/bystander/up")

	for _, c := range []struct {
		name   string
		change func()
		who    string
		code   byte
	}{
		{"HSET mqtt_user:pw password_hash", func() { h.do("HSET", "mqtt_user:pw", "password_hash", e2eSHA256New) }, "pw", 0x98},
		{"HDEL mqtt_acl:acl", func() { h.do("HDEL", "mqtt_acl:acl", "devices/${username}/#") }, "acl", 0x87},
		{"DEL mqtt_user:gone", func() { h.do("DEL", "mqtt_user:gone") }, "gone", 0x98},
		{"HSET mqtt_user:boss is_superuser 0", func() { h.do("HSET", "mqtt_user:boss", "is_superuser", "0") }, "boss", 0x87},
	} {
		alive(t, clients[c.who])
		start := time.Now()
		c.change()
		expectClosedWith(t, clients[c.who], revocationBound, c.code)
		t.Logf("%s: closed %v after the change", c.name, time.Since(start).Round(time.Millisecond))
	}
	echo(t, by, "devices/bystander/after")
	if _, code := connect(packets.V5, "pw", "sha256-pass"); code != 0x86 {
		t.Fatalf("the old password after the change: 0x%02X", code)
	}
	if _, code := connect(packets.V5, "pw", "new-pass"); code != 0 {
		t.Fatalf("the new password: 0x%02X", code)
	}
}

// TestSchemaGoAuthThroughTheProxy: devices of a mosquitto-go-auth fleet,
// laid out as its Redis backend documents it, through the proxy; readwrite
// does not include subscribe; and changes made as its operator makes them
// (SET, SREM alice:racls, SREM common:racls, DEL root:su) end the live
// sessions they concern within a second.
func TestSchemaGoAuthThroughTheProxy(t *testing.T) {
	h := newHarness(t, harnessOptions{strictTopics: true, redisArgs: []string{"--notify-keyspace-events", "K$sghx"}})
	sc, err := schemas.NewGoAuth(schemas.GoAuthOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// As in mosquitto-go-auth's README: the hash under the user name, the
	// superuser under <name>:su, ACL sets <name>:sacls, racls, wacls,
	// rwacls, and common:* with %u.
	h.do("SET", "alice", e2ePBKDF2)
	h.do("SADD", "alice:sacls", "devices/alice/#")
	h.do("SADD", "alice:racls", "devices/alice/#")
	h.do("SET", "bob", e2eBcrypt)
	h.do("SADD", "bob:rwacls", "devices/bob/#")
	h.do("SET", "carol", e2eBcrypt)
	h.do("SET", "root", e2eBcrypt)
	h.do("SET", "root:su", "true")
	h.do("SADD", "common:sacls", "fleet/%u/#")
	h.do("SADD", "common:racls", "fleet/%u/#")
	h.do("SADD", "common:wacls", "fleet/%u/status")
	addr := schemaProxy(t, h, sc, 1)
	cfg := h.clientTLS(tls.VersionTLS13)
	connect := func(level packets.Level, user, pass string) (*mqtttest.Client, byte) {
		c, ack, _ := h.connectRawTo(addr, cfg, mqtttest.Creds(level, user+":1", user, pass))
		return c, ack.Code
	}
	if _, code := connect(packets.V311, "alice", "bcrypt-pass"); code != 0x04 {
		t.Fatalf("3.1.1 wrong password: 0x%02X, want 0x04", code)
	}
	alice, code := connect(packets.V5, "alice", "goauth-pass")
	bob, code2 := connect(packets.V5, "bob", "bcrypt-pass")
	carol, code3 := connect(packets.V5, "carol", "bcrypt-pass")
	root, code4 := connect(packets.V5, "root", "bcrypt-pass")
	if code|code2|code3|code4 != 0 {
		t.Fatalf("CONNACKs 0x%02X 0x%02X 0x%02X 0x%02X", code, code2, code3, code4)
	}
	if got := subscribeCodes(t, alice, 1, "devices/alice/#", "devices/bob/#"); got[0] != 1 || got[1] != 0x87 {
		t.Fatalf("alice's SUBACK %v", got)
	}
	// bob's rwacls let it publish, not subscribe.
	if got := subscribeCodes(t, bob, 1, "devices/bob/#"); got[0] != 0x87 {
		t.Fatalf("bob subscribes with readwrite only: %v", got)
	}
	if a := publishAck(t, bob, 2, "devices/alice/cmd", 1, nil); a.Code != packets.NotAuthorized {
		t.Fatalf("bob publishes to alice's topic: 0x%02X", a.Code)
	}
	if a := publishAck(t, bob, 3, "devices/bob/x", 1, nil); a.Code >= 0x80 { // 0x10: no subscriber
		t.Fatalf("bob's rwacls publish: 0x%02X", a.Code)
	}
	if got := subscribeCodes(t, carol, 1, "fleet/carol/#"); got[0] != 1 {
		t.Fatalf("carol's common rule: %v", got)
	}
	if got := subscribeCodes(t, root, 1, "#"); got[0] != 1 {
		t.Fatalf("the superuser's SUBACK %v", got)
	}
	echo(t, carol, "fleet/carol/status")

	for _, c := range []struct {
		name   string
		change func()
		who    *mqtttest.Client
		code   byte
	}{
		{"SREM alice:racls", func() { h.do("SREM", "alice:racls", "devices/alice/#") }, alice, 0x87},
		{"SET bob", func() { h.do("SET", "bob", e2ePBKDF2) }, bob, 0x98},
		{"SREM common:racls", func() { h.do("SREM", "common:racls", "fleet/%u/#") }, carol, 0x87},
		{"DEL root:su", func() { h.do("DEL", "root:su") }, root, 0x87},
	} {
		alive(t, c.who)
		start := time.Now()
		c.change()
		expectClosedWith(t, c.who, revocationBound, c.code)
		t.Logf("%s: closed %v after the change", c.name, time.Since(start).Round(time.Millisecond))
	}
	if _, code := connect(packets.V5, "bob", "goauth-pass"); code != 0 {
		t.Fatalf("bob's new password: 0x%02X", code)
	}
}
