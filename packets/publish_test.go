package packets

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"testing"
)

func TestDecodePublishFields(t *testing.T) {
	p, err := DecodePublish(validPkt("PUBLISH 3.1.1 QoS 1 DUP RETAIN"), V311)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Dup || p.QoS != 1 || !p.Retain || string(p.Topic) != "sensors/42/temp" || p.PacketID != 7 ||
		len(p.Properties) != 0 || string(p.Payload) != "21.5" {
		t.Fatalf("3.1.1: %+v", p)
	}

	p, err = DecodePublish(validPkt("PUBLISH 5 every PUBLISH property"), V5)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Dup || p.QoS != 1 || p.Retain || string(p.Topic) != "req/42" || p.PacketID != 9 || string(p.Payload) != `{"t":21.5}` {
		t.Fatalf("5: %+v", p)
	}
	if a, ok := p.TopicAlias(); !ok || a != 5 {
		t.Errorf("topic alias %d %v", a, ok)
	}
	checks := []Property{
		{ID: PropPayloadFormat, Int: 1},
		{ID: PropMessageExpiry, Int: 3600},
		{ID: PropContentType, Str: "application/json"},
		{ID: PropResponseTopic, Str: "resp/42"},
		{ID: PropCorrelationData, Str: "\x00\x01corr"},
		{ID: PropSubscriptionID, Int: 129},
		{ID: PropTopicAlias, Int: 5},
	}
	for _, want := range checks {
		if got, ok := p.Properties.Get(want.ID); !ok || got != want {
			t.Errorf("property 0x%02X: %+v %v, want %+v", byte(want.ID), got, ok, want)
		}
	}
	if got := p.Properties.Clone().UserProperties(); !reflect.DeepEqual(got, [][2]string{{"k", "v"}, {"k", "v"}}) {
		t.Errorf("user properties %v", got)
	}
	if _, ok := p.Properties.Get(PropSessionExpiry); ok {
		t.Error("session expiry found")
	}

	p, err = DecodePublish(validPkt("PUBLISH 5 topic alias only"), V5)
	if a, ok := p.TopicAlias(); err != nil || len(p.Topic) != 0 || !ok || a != 3 {
		t.Fatalf("alias only: %+v %v", p, err)
	}
	if p, _ := DecodePublish(validPkt("PUBLISH 3.1.1 QoS 0"), V311); len(p.Properties) != 0 {
		t.Fatal("3.1.1 PUBLISH has properties")
	}
	if _, ok := (&Publish{}).TopicAlias(); ok {
		t.Fatal("alias in an empty Publish")
	}
}

// A Publish is a view of its packet, each slice capped at its end so that
// appending to one never writes over what follows it.
func TestDecodePublishViews(t *testing.T) {
	buf := bytes.Clone(validPkt("PUBLISH 5 every PUBLISH property"))
	p, err := DecodePublish(buf, V5)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range [][]byte{p.Topic, p.Properties, p.Payload} {
		if cap(v) != len(v) {
			t.Errorf("slice %d: cap %d, len %d", i, cap(v), len(v))
		}
	}
	_ = append(p.Topic, 'X')
	if !bytes.Equal(buf, validPkt("PUBLISH 5 every PUBLISH property")) {
		t.Fatal("append to Topic wrote into the packet")
	}
	buf[len(buf)-1] = '!'
	if p.Payload[len(p.Payload)-1] != '!' {
		t.Fatal("Payload is not a view of the packet")
	}
}

// DecodePublish runs once per message in the relay: it must not allocate.
func TestDecodePublishDoesNotAllocate(t *testing.T) {
	for _, c := range []struct {
		level Level
		pkt   []byte
	}{{V311, publish311KiB}, {V5, publish5KiB}} {
		var sink Publish
		allocs := testing.AllocsPerRun(100, func() {
			p, err := DecodePublish(c.pkt, c.level)
			if err != nil {
				t.Fatal(err)
			}
			sink = p
		})
		if allocs != 0 || len(sink.Payload) != 1024 {
			t.Errorf("%s: %v allocations per DecodePublish", c.level, allocs)
		}
	}
}

// The decoded fields are the encoded ones.
func TestPublishRandomFields(t *testing.T) {
	g := gen{rand.New(rand.NewPCG(9, 10))}
	for i := 0; i < 5000; i++ {
		level := lvAll[i%3]
		p := g.publish(level)
		enc, err := AppendPublish(nil, level, &p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodePublish(enc, level)
		if err != nil {
			t.Fatalf("decode(%x): %v", enc, err)
		}
		if got.Dup != p.Dup || got.QoS != p.QoS || got.Retain != p.Retain || got.PacketID != p.PacketID ||
			!bytes.Equal(got.Topic, p.Topic) || !bytes.Equal(got.Properties, p.Properties) || !bytes.Equal(got.Payload, p.Payload) {
			t.Fatalf("decode(encode(p)) != p\n got %+v\nwant %+v", got, p)
		}
	}
}
