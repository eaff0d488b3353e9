package mountpoint

import (
	"bytes"
	"testing"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/relay"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

func publish(t testing.TB, level packets.Level, p packets.Publish) []byte {
	t.Helper()
	pkt, err := packets.AppendPublish(nil, level, &p)
	if err != nil {
		t.Fatal(err)
	}
	return pkt
}

func decodePublish(t *testing.T, pkt []byte, level packets.Level) packets.Publish {
	t.Helper()
	p, err := packets.DecodePublish(pkt, level)
	if err != nil {
		t.Fatalf("%x: %v", pkt, err)
	}
	return p
}

func aliasProps(n uint16) packets.Properties {
	return packets.Properties{}.With(packets.Property{ID: packets.PropTopicAlias, Int: uint32(n)})
}

// TestUpPutsTopicsUnderTheMountpoint: a device's PUBLISH topic, its
// SUBSCRIBE and UNSUBSCRIBE filters (a shared one behind its group) reach
// the broker under the mountpoint; everything else of the packet, QoS,
// flags, properties, payload and options, is kept; a PUBLISH with an
// alias alone passes as it is; other packets pass.
func TestUpPutsTopicsUnderTheMountpoint(t *testing.T) {
	for _, level := range []packets.Level{packets.V311, packets.V5} {
		f := New(level, "acme/", Options{})
		in := packets.Publish{QoS: 1, Retain: true, PacketID: 7, Topic: []byte("a/b"), Payload: []byte("hello")}
		if level == packets.V5 {
			in.Properties = aliasProps(3)
		}
		v := f.Up(publish(t, level, in))
		got := decodePublish(t, v.Broker, level)
		if string(got.Topic) != "acme/a/b" || string(got.Payload) != "hello" || got.QoS != 1 || !got.Retain || got.PacketID != 7 ||
			!bytes.Equal(got.Properties, in.Properties) || v.Client != nil || v.End {
			t.Fatalf("v%d PUBLISH up: %+v %+v", level, got, v)
		}
		if level == packets.V5 {
			aliasOnly := publish(t, level, packets.Publish{Properties: aliasProps(3), Payload: []byte("again")})
			if v := f.Up(aliasOnly); !bytes.Equal(v.Broker, aliasOnly) {
				t.Fatalf("alias-only PUBLISH: %x, want it unchanged", v.Broker)
			}
		}
		sub, _ := packets.AppendSubscribe(nil, level, 9, packets.Properties{}, []packets.SubscribeFilter{
			{Filter: "x/#", Options: 1}, {Filter: "$share/g/y/+", Options: 2}, {Filter: "#", Options: 0}})
		s, err := packets.DecodeSubscribe(f.Up(sub).Broker, level)
		if err != nil || s.PacketID != 9 || len(s.Filters) != 3 || s.Filters[0].Filter != "acme/x/#" || s.Filters[1].Filter != "$share/g/acme/y/+" ||
			s.Filters[2].Filter != "acme/#" || s.Filters[0].Options != 1 || s.Filters[1].Options != 2 {
			t.Fatalf("v%d SUBSCRIBE up: %+v %v", level, s, err)
		}
		unsub, _ := packets.AppendUnsubscribe(nil, level, 10, packets.Properties{}, []packets.UnsubscribeFilter{{Filter: "x/#"}, {Filter: "$share/g/y/+"}})
		u, err := packets.DecodeUnsubscribe(f.Up(unsub).Broker, level)
		if err != nil || u.PacketID != 10 || u.Filters[0].Filter != "acme/x/#" || u.Filters[1].Filter != "$share/g/acme/y/+" {
			t.Fatalf("v%d UNSUBSCRIBE up: %+v %v", level, u, err)
		}
		ping := []byte{0xC0, 0}
		if v := f.Up(ping); !bytes.Equal(v.Broker, ping) {
			t.Fatalf("PINGREQ: %x", v.Broker)
		}
	}
}

// TestDownTakesTopicsOutOfTheMountpoint: a broker PUBLISH under the
// mountpoint reaches the device without it; one outside never does, and
// is acknowledged to the broker by the proxy (QoS 1 PUBACK; QoS 2 PUBREC,
// then PUBCOMP for the broker's PUBREL); a topic that is the mountpoint
// alone is outside (it would be empty).
func TestDownTakesTopicsOutOfTheMountpoint(t *testing.T) {
	var outside []string
	f := New(packets.V311, "acme/", Options{Outside: func(b []byte) { outside = append(outside, string(b)) }})
	v := f.Down(publish(t, packets.V311, packets.Publish{Topic: []byte("acme/a/b"), Payload: []byte("p"), QoS: 1, PacketID: 4}))
	if got := decodePublish(t, v.Client, packets.V311); string(got.Topic) != "a/b" || string(got.Payload) != "p" || got.PacketID != 4 || v.Broker != nil {
		t.Fatalf("inside: %+v %+v", got, v)
	}
	for _, c := range []struct {
		topic string
		qos   byte
		ack   packets.Type
	}{{"other/a", 0, 0}, {"acme", 1, packets.PUBACK}, {"acme/", 2, packets.PUBREC}, {"acmeX/a", 1, packets.PUBACK}} {
		p := packets.Publish{Topic: []byte(c.topic), QoS: c.qos, Payload: []byte("secret")}
		if c.qos > 0 {
			p.PacketID = 11
		}
		v := f.Down(publish(t, packets.V311, p))
		if v.Client != nil || v.End {
			t.Fatalf("outside %q reached the device: %+v", c.topic, v)
		}
		if c.ack == 0 && v.Broker != nil || c.ack != 0 && (len(v.Broker) == 0 || packets.Type(v.Broker[0]>>4) != c.ack) {
			t.Fatalf("outside %q QoS %d: broker answer %x, want %v", c.topic, c.qos, v.Broker, c.ack)
		}
	}
	if len(outside) != 4 {
		t.Fatalf("Outside hook: %q", outside)
	}
	if f.WantsDown(packets.PUBREL) != relay.WantWhole {
		t.Fatal("a withheld QoS 2 delivery awaits its PUBREL, which the filter must see")
	}
	rel := packets.AppendAck(nil, packets.PUBREL, packets.V311, 11, packets.Success)
	if v := f.Down(rel); len(v.Broker) == 0 || packets.Type(v.Broker[0]>>4) != packets.PUBCOMP || v.Client != nil {
		t.Fatalf("PUBREL of the withheld delivery: %+v", v)
	}
	other := packets.AppendAck(nil, packets.PUBREL, packets.V311, 12, packets.Success)
	if v := f.Down(other); !bytes.Equal(v.Client, other) || f.WantsDown(packets.PUBREL) != relay.WantPass {
		t.Fatalf("another PUBREL: %+v", v)
	}
}

// TestDownAliases: the broker's aliases are followed when the device
// allows them: an alias the broker set to a topic under the mountpoint
// delivers (with the alias alone, as the device maps it to the stripped
// topic); one it set or re-pointed outside delivers nothing; one never set
// ends the session. Without the device's leave, a PUBLISH without a topic
// is withheld.
func TestDownAliases(t *testing.T) {
	if v := New(packets.V5, "t/", Options{}).Down(publish(t, packets.V5, packets.Publish{Properties: aliasProps(1), Payload: []byte("0")})); v.Client != nil || v.End {
		t.Fatalf("an alias the device never allowed: %+v", v)
	}
	var ended string
	f := New(packets.V5, "t/", Options{DeviceAliases: true, Ended: func(cause string, err error) { ended = cause }})
	set := f.Down(publish(t, packets.V5, packets.Publish{Topic: []byte("t/x"), Properties: aliasProps(1), Payload: []byte("1")}))
	if got := decodePublish(t, set.Client, packets.V5); string(got.Topic) != "x" {
		t.Fatalf("setting the alias: %+v", got)
	}
	only := publish(t, packets.V5, packets.Publish{Properties: aliasProps(1), Payload: []byte("2")})
	if v := f.Down(only); !bytes.Equal(v.Client, only) {
		t.Fatalf("alias inside: %+v", v)
	}
	if v := f.Down(publish(t, packets.V5, packets.Publish{Topic: []byte("u/x"), Properties: aliasProps(1), Payload: []byte("3")})); v.Client != nil {
		t.Fatalf("re-pointed outside: %+v", v)
	}
	if v := f.Down(only); v.Client != nil {
		t.Fatalf("alias now outside reached the device: %+v", v)
	}
	v := f.Down(publish(t, packets.V5, packets.Publish{Properties: aliasProps(2), Payload: []byte("4")}))
	if !v.End || ended != "broker_malformed" || len(v.Client) == 0 || packets.Type(v.Client[0]>>4) != packets.DISCONNECT {
		t.Fatalf("alias never set: %+v (%q)", v, ended)
	}
}

// TestDownHeadRewritesALargePublish: a large PUBLISH judged from its head
// gets a head without the mountpoint whose remaining length counts the
// payload still to stream; head and rest make the stripped packet.
func TestDownHeadRewritesALargePublish(t *testing.T) {
	payload := bytes.Repeat([]byte("z"), 5000)
	for _, level := range []packets.Level{packets.V311, packets.V5} {
		f := New(level, "tenant/", Options{})
		whole := publish(t, level, packets.Publish{Topic: []byte("tenant/big"), QoS: 1, PacketID: 3, Payload: payload})
		if _, ok := f.DownHead(whole[:5], len(whole)); ok {
			t.Fatal("decided on a head without the topic")
		}
		head := whole[:64]
		v, ok := f.DownHead(head, len(whole))
		if !ok || v.End {
			t.Fatalf("v%d: %+v %v", level, v, ok)
		}
		out := append(bytes.Clone(v.Client), whole[64:]...)
		got := decodePublish(t, out, level)
		if string(got.Topic) != "big" || !bytes.Equal(got.Payload, payload) || got.PacketID != 3 {
			t.Fatalf("v%d rewritten: topic %q payload %d", level, got.Topic, len(got.Payload))
		}
		if v, ok := f.DownHead(publish(t, level, packets.Publish{Topic: []byte("x/big"), Payload: payload})[:64], len(whole)); !ok || v.Client != nil {
			t.Fatalf("v%d outside, from its head: %+v", level, v)
		}
	}
}

// TestMalformedEndsTheSession: a device packet that does not decode ends
// the session (MQTT 5 with a DISCONNECT carrying its code), as does a
// topic too long once prefixed.
func TestMalformedEndsTheSession(t *testing.T) {
	f := New(packets.V5, "m/", Options{})
	bad := []byte{0x30, 0x02, 0x00, 0x05} // a PUBLISH whose topic runs past the packet
	if v := f.Up(bad); !v.End || v.Cause != "malformed" || len(v.Client) == 0 {
		t.Fatalf("malformed PUBLISH: %+v", v)
	}
	long := publish(t, packets.V5, packets.Publish{Topic: bytes.Repeat([]byte("a"), 0xFFFF-1)})
	v := f.Up(long)
	if !v.End || len(v.Client) < 3 || packets.ReasonCode(v.Client[2]) != packets.TopicNameInvalid {
		t.Fatalf("a topic past 65535 bytes once prefixed: %+v", v)
	}
	if v := New(packets.V311, "m/", Options{}).Malformed(packets.ErrTooLarge); !v.End || v.Client != nil {
		t.Fatalf("3.1.1 stream that cannot be framed: %+v", v)
	}
}

// FuzzFilter: whatever bytes a device or a broker sends, the filter
// neither panics nor lets a broker PUBLISH outside the mountpoint reach
// the device; a PUBLISH it delivers decodes, without the mountpoint.
func FuzzFilter(f *testing.F) {
	for _, level := range []packets.Level{packets.V311, packets.V5} {
		p := packets.Publish{Topic: []byte("fz/a"), QoS: 1, PacketID: 1, Payload: []byte("x")}
		if level == packets.V5 {
			p.Properties = aliasProps(1)
		}
		pkt, _ := packets.AppendPublish(nil, level, &p)
		f.Add(byte(level), pkt)
		sub, _ := packets.AppendSubscribe(nil, level, 2, packets.Properties{}, []packets.SubscribeFilter{{Filter: "$share/g/#", Options: 1}})
		f.Add(byte(level), sub)
	}
	f.Fuzz(func(t *testing.T, lv byte, pkt []byte) {
		level := packets.V311
		if lv%2 == 1 {
			level = packets.V5
		}
		if len(pkt) == 0 {
			return
		}
		h, err := packets.ParseHeader(pkt)
		if err != nil || h.Size() != len(pkt) {
			return // the relay hands filters whole packets only
		}
		fl := New(level, "fz/", Options{DeviceAliases: lv&2 != 0})
		fl.Up(pkt)
		v := fl.Down(pkt)
		if h.Type != packets.PUBLISH || v.Client == nil || v.End {
			return
		}
		// Nothing outside the mountpoint: the topic delivered is the
		// broker's without it (an alias alone: one set inside).
		in, _ := packets.SpanPublish(pkt)
		out, err := packets.SpanPublish(v.Client)
		if err != nil || out.End > out.Start && !bytes.Equal(append([]byte("fz/"), v.Client[out.Start:out.End]...), pkt[in.Start:in.End]) {
			t.Fatalf("delivered %x for %x: %v", v.Client, pkt, err)
		}
		// A packet that decodes is delivered as one that decodes.
		if _, err := packets.DecodePublish(pkt, level); err == nil {
			if _, err := packets.DecodePublish(v.Client, level); err != nil {
				t.Fatalf("delivered a PUBLISH that does not decode: %x -> %x: %v", pkt, v.Client, err)
			}
		}
	})
}

// BenchmarkFilter: a 1 KiB PUBLISH of a device put under the mountpoint,
// and the broker's delivery of it taken back out, the relay saying both
// are written after each: the filter's whole cost per message.
func BenchmarkFilter(b *testing.B) {
	for _, level := range []packets.Level{packets.V311, packets.V5} {
		b.Run(level.String(), func(b *testing.B) {
			f := New(level, "tenants/acme/", Options{})
			up := publish(b, level, packets.Publish{Topic: []byte("devices/u/telemetry"), Payload: make([]byte, 1024)})
			down := publish(b, level, packets.Publish{Topic: []byte("tenants/acme/devices/u/telemetry"), Payload: make([]byte, 1024)})
			b.ReportAllocs()
			b.SetBytes(int64(len(up)))
			for b.Loop() {
				if v := f.Up(up); len(v.Broker) != len(down) {
					b.Fatal(len(v.Broker))
				}
				if v := f.Down(down); len(v.Client) != len(up) {
					b.Fatal(len(v.Client))
				}
				f.Written(true)
				f.Written(false)
			}
		})
	}
}

// TestArenaKeepsEveryPacketUntilWritten: packets rewritten in a row, more
// than one pooled buffer holds, all stay intact until the relay says they
// are written; after that the buffers serve again.
func TestArenaKeepsEveryPacketUntilWritten(t *testing.T) {
	f := New(packets.V311, "m/", Options{})
	var outs [][]byte
	for i := range 100 {
		payload := bytes.Repeat([]byte{byte(i)}, 700)
		outs = append(outs, f.Up(publish(t, packets.V311, packets.Publish{Topic: []byte("t"), Payload: payload})).Broker)
	}
	for i, out := range outs {
		p := decodePublish(t, out, packets.V311)
		if string(p.Topic) != "m/t" || !bytes.Equal(p.Payload, bytes.Repeat([]byte{byte(i)}, 700)) {
			t.Fatalf("packet %d changed before it was written", i)
		}
	}
	f.Written(true)
	if f.up.cur != nil || f.up.used != nil {
		t.Fatal("the arena kept its buffers after written")
	}
	if got := decodePublish(t, f.Up(publish(t, packets.V311, packets.Publish{Topic: []byte("x"), Payload: []byte("y")})).Broker, packets.V311); string(got.Topic) != "m/x" {
		t.Fatalf("after written: %q", got.Topic)
	}
}
