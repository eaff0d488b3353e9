package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// brokers are the real backends every end-to-end scenario runs against.
var brokers = []string{"mosquitto", "hivemq"}

// brokerSecret is the BACKEND_PASSWORD of the end-to-end harnesses.
const brokerSecret = "broker-secret"

// TestEndToEnd runs the product's scenarios against real Mosquitto and real
// HiveMQ CE, with real Redis: the bug report both ways on resumed TLS 1.2
// and 1.3 sessions, v3.1.1 and v5 publish/subscribe, a will on an abrupt
// drop, a persistent session across a reconnect, what the broker received,
// and a broker restart while the proxy runs.
func TestEndToEnd(t *testing.T) {
	for _, b := range brokers {
		t.Run(b, func(t *testing.T) {
			o := harnessOptions{backend: b}
			if b == "hivemq" {
				// HiveMQ CE admits any password: it records what it got.
				o.backendPass = brokerSecret
			}
			h := newHarness(t, o)
			t.Run("bug report", func(t *testing.T) { bugReport(t, h) })
			t.Run("publish subscribe", func(t *testing.T) { publishSubscribe(t, h) })
			t.Run("will on drop", func(t *testing.T) { willOnDrop(t, h) })
			t.Run("persistent session", func(t *testing.T) { persistentSession(t, h) })
			if b == "hivemq" {
				t.Run("what HiveMQ received", func(t *testing.T) { hivemqReceived(t, h) })
			}
			t.Run("broker restart", func(t *testing.T) { brokerRestart(t, h) })
		})
	}
}

func publishSubscribe(t *testing.T, h *harness) {
	h.setUser("ps", operator.Update{Password: ptr("pw")})
	cfg := h.clientTLS(tls.VersionTLS13)
	c3, a3, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V311, "ps:3", "ps", "pw"))
	c5, a5, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V5, "ps:5", "ps", "pw"))
	if a3.Code|a5.Code != 0 {
		t.Fatalf("CONNACK 0x%02X 0x%02X", a3.Code, a5.Code)
	}
	roundTrip(t, c3, c5, "ps/v5-to-v311")
	roundTrip(t, c5, c3, "ps/v311-to-v5")
	c3.Disconnect()
	c5.Disconnect()
}

func willOnDrop(t *testing.T, h *harness) {
	h.setUser("wl", operator.Update{Password: ptr("pw")})
	cfg := h.clientTLS(tls.VersionTLS13)
	watcher, _, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V5, "wl:will-watcher", "wl", "pw"))
	if err := watcher.Subscribe("will/+", 1); err != nil {
		t.Fatal(err)
	}
	for _, lv := range []packets.Level{packets.V311, packets.V5} {
		c := mqtttest.Creds(lv, "wl:will-dev", "wl", "pw")
		c.WillFlag, c.WillQoS, c.WillTopic, c.WillPayload = true, 1, "will/dev", "gone "+string('0'+lv)
		dev, ack, _ := h.connectRaw(cfg, c)
		if ack.Code != 0 {
			t.Fatalf("CONNECT with will: 0x%02X", ack.Code)
		}
		dev.Conn.Close() // no DISCONNECT: the device drops
		m, err := watcher.ReadPublish(10 * time.Second)
		if err != nil || string(m.Payload) != c.WillPayload {
			t.Fatalf("level %d: will %+v %v", lv, m, err)
		}
	}
	watcher.Disconnect()
}

func persistentSession(t *testing.T, h *harness) {
	h.setUser("pst", operator.Update{Password: ptr("pw")})
	cfg := h.clientTLS(tls.VersionTLS12)
	pub, _, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V311, "pst:pub", "pst", "pw"))
	defer pub.Disconnect()
	for _, lv := range []packets.Level{packets.V311, packets.V5} {
		c := mqtttest.Creds(lv, "pst:dev-"+string('0'+lv), "pst", "pw")
		c.CleanStart = false
		if lv == packets.V5 {
			c.Properties = packets.Properties{}.With(packets.Property{ID: packets.PropSessionExpiry, Int: 300})
		}
		topic := "pst/" + string('0'+lv)
		dev, ack, _ := h.connectRaw(cfg, c)
		if ack.Code != 0 {
			t.Fatalf("first CONNECT: 0x%02X", ack.Code)
		}
		if err := dev.Subscribe(topic, 1); err != nil {
			t.Fatal(err)
		}
		before := h.proxy.Sessions()
		dev.Disconnect()
		testenv.WaitFor(t, 5*time.Second, "the session to be relayed no more", func() bool { return h.proxy.Sessions() == before-1 })
		if err := pub.Publish(topic, []byte("while away"), 1, false); err != nil {
			t.Fatal(err)
		}
		dev, ack, resumed := h.connectRaw(cfg, c)
		if ack.Code != 0 || !ack.SessionPresent || !resumed {
			t.Fatalf("reconnect: CONNACK 0x%02X session present %v, TLS resumed %v", ack.Code, ack.SessionPresent, resumed)
		}
		m, err := dev.ReadPublish(10 * time.Second)
		if err != nil || string(m.Payload) != "while away" {
			t.Fatalf("queued message: %+v %v", m, err)
		}
		dev.Disconnect()
	}
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// hivemqReceived: the CONNECT HiveMQ got carries the device's user name (or
// the configured one) and the backend password, never the device's password.
func hivemqReceived(t *testing.T, h *harness) {
	h.setUser("hq", operator.Update{Password: ptr("device-secret")})
	cfg := h.clientTLS(tls.VersionTLS13)
	c, ack, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V5, "hq:kept", "hq", "device-secret"))
	if ack.Code != 0 {
		t.Fatalf("CONNACK 0x%02X", ack.Code)
	}
	c.Disconnect()
	replaced := h.proxyWith(func(c *Config) {
		b := c.Brokers.(Backend)
		b.Username, b.Password = "svc", "svc-secret"
		c.Brokers = b
	})
	c, ack, _ = h.connectRawTo(replaced, cfg, mqtttest.Creds(packets.V311, "hq:replaced", "hq", "device-secret"))
	if ack.Code != 0 {
		t.Fatalf("CONNACK 0x%02X", ack.Code)
	}
	c.Disconnect()
	h.broker.WaitOutput("client=hq:replaced", 10*time.Second)
	for id, want := range map[string]string{
		"hq:kept":     "username=hq password_sha256=" + sha(brokerSecret),
		"hq:replaced": "username=svc password_sha256=" + sha("svc-secret"),
	} {
		lines := h.broker.OutputLines("HIVEMQ CONNECT client=" + id + " ")
		if len(lines) == 0 || !strings.Contains(lines[0], want) {
			t.Errorf("HiveMQ recorded %q for %s, want %q", lines, id, want)
		}
	}
	if strings.Contains(h.broker.Output(), sha("device-secret")) {
		t.Fatal("the device's password reached HiveMQ")
	}
}

func brokerRestart(t *testing.T, h *harness) {
	h.setUser("rs", operator.Update{Password: ptr("pw")})
	cfg := h.clientTLS(tls.VersionTLS13)
	h.broker.Stop()
	for lv, want := range map[packets.Level]byte{packets.V311: 0x03, packets.V5: 0x88} {
		if _, ack, _ := h.connectRaw(cfg, mqtttest.Creds(lv, "rs", "rs", "pw")); ack.Code != want {
			t.Fatalf("broker down, level %d: CONNACK 0x%02X, want 0x%02X", lv, ack.Code, want)
		}
	}
	h.broker.Start()
	testenv.WaitFor(t, 60*time.Second, "CONNECTs to be accepted again", func() bool {
		c, ack, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V5, "rs", "rs", "pw"))
		defer c.Conn.Close()
		return ack.Code == 0
	})
}

// bugReport reproduces the report both ways on resumed TLS sessions: a
// refusal does not stick to the session once the credentials are right, and
// an acceptance does not stick to it once the user is disabled.
func bugReport(t *testing.T, h *harness) {
	h.setUser("alice", operator.Update{Password: ptr("right")})
	for _, tv := range tlsVersions {
		t.Run(tv.name+"/v3.1.1", func(t *testing.T) {
			h.hset("alice", "enabled", "true")
			cfg := h.clientTLS(tv.v)
			_, ack, resumed := h.connectRaw(cfg, mqtttest.Creds(packets.V311, "alice:dev-a", "alice", "wrong"))
			if ack.Code != 0x04 || resumed {
				t.Fatalf("wrong password: CONNACK 0x%02X resumed=%v, want 0x04 on a full handshake", ack.Code, resumed)
			}
			sub, ack, resumed := h.connectRaw(cfg, mqtttest.Creds(packets.V311, "alice:dev-a", "alice", "right"))
			if !resumed {
				t.Fatal("second connection did not resume the TLS session")
			}
			if ack.Code != 0 {
				t.Fatalf("right password on resumed session: CONNACK 0x%02X, want 0 (the bug)", ack.Code)
			}
			pub, ack, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V311, "alice:dev-a-pub", "alice", "right"))
			if ack.Code != 0 {
				t.Fatalf("publisher: 0x%02X", ack.Code)
			}
			roundTrip(t, sub, pub, "bug/"+tv.name)
			sub.Disconnect()
			pub.Disconnect()

			// The mirror: accepted, then disabled with plain HSET.
			h.hset("alice", "enabled", "false")
			_, ack, resumed = h.connectRaw(cfg, mqtttest.Creds(packets.V311, "alice:dev-a", "alice", "right"))
			if !resumed || ack.Code != 0x05 {
				t.Fatalf("disabled user on resumed session: CONNACK 0x%02X resumed=%v, want 0x05 resumed", ack.Code, resumed)
			}
			h.hset("alice", "enabled", "true")
			c, ack, resumed := h.connectRaw(cfg, mqtttest.Creds(packets.V311, "alice:dev-a", "alice", "right"))
			if !resumed || ack.Code != 0 {
				t.Fatalf("re-enabled on resumed session: 0x%02X resumed=%v", ack.Code, resumed)
			}
			c.Disconnect()
		})
		t.Run(tv.name+"/v5", func(t *testing.T) {
			h.hset("alice", "enabled", "true")
			cfg := h.clientTLS(tv.v)
			_, ack, resumed, err := h.connectPaho(cfg, "alice:dev-a5", "alice", "wrong", nil)
			if err == nil || ack == nil || ack.ReasonCode != 0x86 || resumed {
				t.Fatalf("wrong password: %+v resumed=%v err=%v, want 0x86", ack, resumed, err)
			}
			got := make(chan *paho.Publish, 1)
			sub, ack, resumed, err := h.connectPaho(cfg, "alice:dev-a5", "alice", "right", func(p *paho.Publish) { got <- p })
			if err != nil || !resumed || ack.ReasonCode != 0 {
				t.Fatalf("right password on resumed session: %+v resumed=%v err=%v", ack, resumed, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "bug5/" + tv.name, QoS: 1}}}); err != nil {
				t.Fatal(err)
			}
			pub, _, _, err := h.connectPaho(cfg, "alice:dev-a5-pub", "alice", "right", nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pub.Publish(ctx, &paho.Publish{Topic: "bug5/" + tv.name, QoS: 1, Payload: []byte("v5")}); err != nil {
				t.Fatal(err)
			}
			select {
			case p := <-got:
				if string(p.Payload) != "v5" {
					t.Fatalf("payload %q", p.Payload)
				}
			case <-ctx.Done():
				t.Fatal("no message through the proxy")
			}

			h.hset("alice", "enabled", "false")
			_, ack, resumed, err = h.connectPaho(cfg, "alice:dev-a5", "alice", "right", nil)
			if err == nil || !resumed || ack == nil || ack.ReasonCode != 0x87 {
				t.Fatalf("disabled on resumed session: %+v resumed=%v err=%v, want 0x87", ack, resumed, err)
			}
			h.hset("alice", "enabled", "true")
		})
	}
}
