package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/relay"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// persistent is a CONNECT that keeps its broker session: clean session 0
// in 3.1.1, clean start 0 with a session expiry in 5.
func persistent(level packets.Level, clientID, user string) packets.Connect {
	c := mqtttest.Creds(level, clientID, user, "pw")
	c.CleanStart = false
	if level == packets.V5 {
		c.Properties = packets.Properties{}.With(packets.Property{ID: packets.PropSessionExpiry, Int: 300})
	}
	return c
}

// receiveUntil reads PUBLISHes, completing each flow as a device would
// (PUBACK; PUBREC, then PUBCOMP for the broker's PUBREL), until one with
// payload want arrives; it returns the topics of every PUBLISH before it.
func receiveUntil(t *testing.T, c *mqtttest.Client, want string) []string {
	t.Helper()
	var before []string
	for {
		h, pkt, err := c.ReadPacket(15 * time.Second)
		if err != nil {
			t.Fatalf("waiting for %q: %v (received before: %v)", want, err, before)
		}
		switch h.Type {
		case packets.PUBREL:
			a, _ := packets.DecodeAck(pkt, c.Level)
			_, _ = c.Conn.Write(packets.AppendAck(nil, packets.PUBCOMP, c.Level, a.PacketID, packets.Success))
			continue
		case packets.PUBLISH:
		default:
			continue
		}
		p, err := packets.DecodePublish(pkt, c.Level)
		if err != nil {
			t.Fatalf("a PUBLISH that does not decode: %v", err)
		}
		switch p.QoS {
		case 1:
			_, _ = c.Conn.Write(packets.AppendAck(nil, packets.PUBACK, c.Level, p.PacketID, packets.Success))
		case 2:
			_, _ = c.Conn.Write(packets.AppendAck(nil, packets.PUBREC, c.Level, p.PacketID, packets.Success))
		}
		if string(p.Payload) == want {
			return before
		}
		before = append(before, string(p.Topic))
	}
}

// TestRestoredSessionObeysNarrowedRules is the security review's first
// finding: a device with a persistent session subscribes to
// devices/dev1/# and leaves; its rule is narrowed to devices/%u/status;
// it comes back to its session, which the broker restores with the old
// subscription. It receives neither the message queued on
// devices/dev1/secret while it was away nor the later ones, and it does
// receive what it may still read, queued and live. Withheld deliveries at
// QoS 1 and 2, more of them than the broker's inflight window, are
// acknowledged by the proxy: the broker's flow never stalls.
func TestRestoredSessionObeysNarrowedRules(t *testing.T) {
	for _, b := range brokers {
		for _, level := range []packets.Level{packets.V311, packets.V5} {
			t.Run(fmt.Sprintf("%s/%s", b, level), func(t *testing.T) {
				o := harnessOptions{backend: b, strictTopics: true}
				if b == "hivemq" {
					o.backendPass = brokerSecret
				}
				h := newHarness(t, o)
				h.setUser("dev1", operator.Update{Password: ptr("pw"), Subscribe: &[]string{"devices/%u/#"}})
				h.setUser("ops", operator.Update{Password: ptr("pw"), Publish: &[]string{"devices/#"}})
				cfg := h.clientTLS(tls.VersionTLS13)

				dev, ack, _ := h.connectRaw(cfg, persistent(level, "dev1", "dev1"))
				if ack.Code != 0 {
					t.Fatalf("connect: 0x%02X", ack.Code)
				}
				if got := subscribeCodes(t, dev, 1, "devices/dev1/#"); got[0] >= 0x80 {
					t.Fatalf("subscribe: %v", got)
				}
				// QoS 2 granted: the broker delivers at the publisher's QoS.
				if got := subscribeCodes(t, dev, 2, "devices/dev1/#"); got[0] >= 0x80 {
					t.Fatalf("subscribe: %v", got)
				}
				dev.Disconnect()

				h.hset("dev1", "subscribe", "devices/%u/status")
				ops, _, _ := h.connectRaw(cfg, mqtttest.Creds(level, "ops", "ops", "pw"))
				if a := publishAck(t, ops, 1, "devices/dev1/secret", 1, nil); a.Code != 0 {
					t.Fatalf("ops publish: 0x%02X", a.Code)
				}
				if err := ops.Publish("devices/dev1/status", []byte("queued-status"), 1, false); err != nil {
					t.Fatal(err)
				}

				dev, ack, _ = h.connectRaw(cfg, persistent(level, "dev1", "dev1"))
				if ack.Code != 0 || !ack.SessionPresent {
					t.Fatalf("reconnect: 0x%02X, session present %v", ack.Code, ack.SessionPresent)
				}
				if before := receiveUntil(t, dev, "queued-status"); len(before) > 0 {
					t.Fatalf("the restored session delivered %v", before)
				}
				// Live: more withheld QoS 1 and 2 deliveries than an inflight
				// window (mosquitto's 20, HiveMQ's receive maximum), then one
				// the device may read.
				for i := range 30 {
					if err := ops.Publish("devices/dev1/secret", []byte("live-secret"), byte(1+i%2), false); err != nil {
						t.Fatal(err)
					}
				}
				if err := ops.Publish("devices/dev1/status", []byte("live-status"), 2, false); err != nil {
					t.Fatal(err)
				}
				if before := receiveUntil(t, dev, "live-status"); len(before) > 0 {
					t.Fatalf("the session delivered %v", before)
				}
				if got := testutil.ToFloat64(h.proxy.metrics.ACLDenied.WithLabelValues("deliver")); got < 31 {
					t.Fatalf("withheld deliveries counted %v, want 31", got)
				}
			})
		}
	}
}

// TestRestoredSessionRealClients: the same story with mosquitto_sub -c
// (3.1.1 and 5) and Debian's python3-paho-mqtt with clean_session=False:
// the first message the device gets back on its restored session is the
// one it may still read.
func TestRestoredSessionRealClients(t *testing.T) {
	h := newHarness(t, harnessOptions{strictTopics: true})
	h.setUser("ops", operator.Update{Password: ptr("pw"), Publish: &[]string{"devices/#"}})
	_, port, _ := net.SplitHostPort(h.addr)
	ca := certFile(h.certDir, "ca.pem")
	cfg := h.clientTLS(tls.VersionTLS13)
	publish := func(topic string) {
		ops, _, _ := h.connectRaw(cfg, mqtttest.Creds(packets.V311, "ops", "ops", "pw"))
		defer ops.Disconnect()
		if a := publishAck(t, ops, 1, topic, 1, nil); a.Code != 0 {
			t.Fatalf("publish: 0x%02X", a.Code)
		}
	}
	story := func(t *testing.T, user string, subscribe, receive func() string) {
		h.setUser(user, operator.Update{Password: ptr("pw"), Subscribe: &[]string{"devices/%u/#"}})
		subscribe()
		h.hset(user, "subscribe", "devices/%u/status")
		publish("devices/" + user + "/secret")
		publish("devices/" + user + "/status")
		if got := receive(); got != "devices/"+user+"/status" {
			t.Fatalf("the first message on the restored session: %q, want the status", got)
		}
	}
	bin := testenv.LookPath(t, "mosquitto_sub")
	for _, v := range []string{"mqttv311", "mqttv5"} {
		t.Run("mosquitto_sub/"+v, func(t *testing.T) {
			user := "sub" + strings.TrimPrefix(v, "mqttv")
			args := []string{"-h", "localhost", "-p", port, "--cafile", ca, "-u", user, "-P", "pw", "-i", user, "-V", v, "-c", "-q", "1"}
			if v == "mqttv5" {
				args = append(args, "-x", "300")
			}
			story(t, user, func() string {
				// -E: exit once subscribed, leaving the session behind.
				out, err := exec.Command(bin, append(args, "-t", "devices/"+user+"/#", "-E")...).CombinedOutput()
				if err != nil {
					t.Fatalf("mosquitto_sub -E: %v\n%s", err, out)
				}
				return ""
			}, func() string {
				// It subscribes to what it may still read; the broker
				// restores the old subscription beside it.
				out, err := exec.Command(bin, append(args, "-t", "devices/"+user+"/status", "-v", "-C", "1", "-W", "10")...).CombinedOutput()
				if err != nil {
					t.Fatalf("mosquitto_sub -C 1: %v\n%s", err, out)
				}
				topic, _, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
				return topic
			})
		})
	}
	t.Run("python3-paho-mqtt", func(t *testing.T) {
		py := pythonPaho(t)
		run := func(mode string) string {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, py, "-c", pahoPersistent, "localhost", port, ca, "pysub", "pw", mode).CombinedOutput()
			if err != nil {
				t.Fatalf("paho %s: %v\n%s", mode, err, out)
			}
			return strings.TrimSpace(string(out))
		}
		story(t, "pysub", func() string { return run("subscribe") }, func() string { return run("receive") })
	})
}

// pahoPersistent connects with clean_session=False (MQTT 3.1.1): in mode
// subscribe it subscribes to devices/<user>/# and disconnects; in mode
// receive it prints the topic of the first message it gets.
const pahoPersistent = `
import ssl, sys, paho.mqtt.client as mqtt
host, port, ca, user, pw, mode = sys.argv[1:7]
c = mqtt.Client(client_id=user, clean_session=False, protocol=mqtt.MQTTv311)
c.username_pw_set(user, pw)
c.tls_set(ca_certs=ca)
def on_connect(client, userdata, flags, rc):
    if mode == "subscribe":
        client.subscribe("devices/%s/#" % user, 1)
def on_subscribe(client, userdata, mid, granted):
    client.disconnect()
def on_message(client, userdata, msg):
    print(msg.topic)
    client.disconnect()
c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
c.connect(host, int(port), 30)
c.loop_forever(timeout=5)
`

// TestDeliveryFilter drives the broker's side of a v5 session's topic
// filter in process: deliveries are judged by the topic their alias
// stands for; a withheld delivery that set an alias leaves the device's
// mapping stale, so a later alias-only delivery allowed by new rules goes
// out with its topic; withheld QoS 1 and 2 deliveries are acknowledged to
// the broker (PUBACK; PUBREC, then PUBCOMP for its PUBREL, which the
// device never sees); a large delivery is judged from its head.
func TestDeliveryFilter(t *testing.T) {
	p, err := New(Config{Brokers: Backend{Addr: "127.0.0.1:1"}, Auth: allowAll{}, RevalidateInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	s, _ := pipeSession(t, p, policy.Request{Username: "u", Protocol: packets.V5})
	rules := func(subscribe ...string) *policy.TopicRules {
		var ps []policy.Pattern
		for _, f := range subscribe {
			ps = append(ps, policy.Pattern{Filter: f, Source: "user"})
		}
		r, err := policy.CompileTopics(nil, ps, "u", "c")
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	connProps := packets.Properties{}.With(packets.Property{ID: packets.PropTopicAliasMaximum, Int: 10})
	f := newACLFilter(s, rules("ok/#"), connProps, packets.Connack{}, DenyDrop)
	pub := func(topic string, alias uint16, qos byte, id uint16, payload string) []byte {
		p := packets.Publish{Topic: []byte(topic), QoS: qos, PacketID: id, Payload: []byte(payload)}
		if alias != 0 {
			p.Properties = packets.Properties{byte(packets.PropTopicAlias), byte(alias >> 8), byte(alias)}
		}
		b, err := packets.AppendPublish(nil, packets.V5, &p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	down := func(pkt []byte) relay.Verdict {
		t.Helper()
		if f.WantsDown(packets.Type(pkt[0]>>4)) == relay.WantPass {
			return relay.Verdict{Client: pkt}
		}
		return f.Down(pkt)
	}
	// Alias 1 set on an allowed topic passes as it is, and so does its use.
	for _, pkt := range [][]byte{pub("ok/a", 1, 0, 0, "x"), pub("", 1, 0, 0, "y")} {
		if v := down(pkt); !bytes.Equal(v.Client, pkt) || v.Broker != nil {
			t.Fatalf("allowed delivery: %+v", v)
		}
	}
	// Alias 2 set on a refused topic, QoS 1: withheld, PUBACK to the broker.
	if v := down(pub("secret/x", 2, 1, 7, "s")); v.Client != nil || !bytes.Equal(v.Broker, packets.AppendAck(nil, packets.PUBACK, packets.V5, 7, 0)) {
		t.Fatalf("refused QoS 1 delivery: %+v", v)
	}
	// Alias 1 re-pointed to a refused topic, QoS 2: withheld, PUBREC; the
	// broker's PUBREL is answered with PUBCOMP and never reaches the device.
	if v := down(pub("secret/y", 1, 2, 8, "s")); v.Client != nil || !bytes.Equal(v.Broker, packets.AppendAck(nil, packets.PUBREC, packets.V5, 8, 0)) {
		t.Fatalf("refused QoS 2 delivery: %+v", v)
	}
	pubrel := packets.AppendAck(nil, packets.PUBREL, packets.V5, 8, 0)
	if v := down(pubrel); v.Client != nil || !bytes.Equal(v.Broker, packets.AppendAck(nil, packets.PUBCOMP, packets.V5, 8, 0)) {
		t.Fatalf("PUBREL of a withheld delivery: %+v", v)
	}
	if v := down(pubrel); !bytes.Equal(v.Client, pubrel) {
		t.Fatalf("a PUBREL of the device's own flow passes: %+v", v)
	}
	// Alias-only uses of refused topics stay withheld.
	if v := down(pub("", 1, 0, 0, "s")); v.Client != nil {
		t.Fatalf("alias-only delivery to a refused topic: %+v", v)
	}
	// The rules widen: alias 1 (the device still maps it to ok/a) goes out
	// with its topic, secret/y, once; then alias-only again.
	f.rules.Store(rules("ok/#", "secret/#"))
	v := down(pub("", 1, 0, 0, "z"))
	got, err := packets.DecodePublish(v.Client, packets.V5)
	if a, _ := got.TopicAlias(); err != nil || string(got.Topic) != "secret/y" || a != 1 || string(got.Payload) != "z" {
		t.Fatalf("an alias the device maps elsewhere: %+v %v", got, err)
	}
	if pkt := pub("", 1, 0, 0, "w"); !bytes.Equal(down(pkt).Client, pkt) {
		t.Fatal("a synced alias is rewritten again")
	}
	// A large delivery is judged from its head: refused, it is dropped
	// whole (the rest of its payload never reaches the device); allowed,
	// its head passes.
	f.rules.Store(rules("ok/#"))
	big := pub("secret/big", 0, 1, 9, strings.Repeat("b", 100000))
	if _, ok := f.DownHead(big[:5], len(big)); ok {
		t.Fatal("decided from a fixed header alone")
	}
	if v, ok := f.DownHead(big[:64], len(big)); !ok || v.Client != nil || !bytes.Equal(v.Broker, packets.AppendAck(nil, packets.PUBACK, packets.V5, 9, 0)) {
		t.Fatalf("a large refused delivery: %v %+v", ok, v)
	}
	big = pub("ok/big", 0, 0, 0, strings.Repeat("b", 100000))
	if v, ok := f.DownHead(big[:64], len(big)); !ok || !bytes.Equal(v.Client, big[:64]) {
		t.Fatalf("a large allowed delivery: %v %+v", ok, v)
	}
	// A delivery using an alias the broker never set cannot be judged: the
	// session ends.
	if v := down(pub("", 9, 0, 0, "?")); !v.End {
		t.Fatalf("an alias never set: %+v", v)
	}
	if n := testutil.ToFloat64(p.metrics.ACLDenied.WithLabelValues("deliver")); n != 4 {
		t.Fatalf("withheld deliveries counted %v, want 4", n)
	}
}
