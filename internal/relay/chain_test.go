package relay

import (
	"bytes"
	"strings"
	"testing"

	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// prefixFilter is a toy mountpoint: topics get "m/" toward the broker and
// lose it toward the device; a broker PUBLISH outside it is withheld.
type prefixFilter struct{}

func (prefixFilter) Up(pkt []byte) Verdict {
	p, err := packets.DecodePublish(pkt, packets.V311)
	if err != nil {
		return Verdict{Broker: pkt}
	}
	p.Topic = append([]byte("m/"), p.Topic...)
	out, _ := packets.AppendPublish(nil, packets.V311, &p)
	return Verdict{Broker: out}
}
func (prefixFilter) Malformed(error) Verdict { return Verdict{End: true} }
func (prefixFilter) WantsDown(t packets.Type) Want {
	if t == packets.PUBLISH {
		return WantHead
	}
	return WantPass
}
func (f prefixFilter) Down(pkt []byte) Verdict {
	v, _ := f.DownHead(pkt, len(pkt))
	return v
}
func (prefixFilter) DownHead(head []byte, size int) (Verdict, bool) {
	p, rest, err := packets.DecodePublishHead(head, packets.V311)
	if err != nil {
		return Verdict{}, false
	}
	topic, ok := strings.CutPrefix(string(p.Topic), "m/")
	if !ok {
		return Verdict{}, true
	}
	p.Topic = []byte(topic)
	out, _ := packets.AppendPublishHead(nil, packets.V311, &p, rest)
	return Verdict{Client: append(out, p.Payload...)}, true
}

// noFilter is a toy topic rule: topic "no" is refused both ways (QoS 1,
// acknowledged by the proxy), topic "end" ends the session.
type noFilter struct{}

func (noFilter) Up(pkt []byte) Verdict {
	p, err := packets.DecodePublish(pkt, packets.V311)
	switch {
	case err != nil:
		return Verdict{Broker: pkt}
	case string(p.Topic) == "no":
		return Verdict{Client: packets.AppendAck(nil, packets.PUBACK, packets.V311, p.PacketID, 0)}
	case string(p.Topic) == "end":
		return Verdict{End: true, Cause: "acl", Client: []byte{0xE0, 0}}
	}
	return Verdict{Broker: pkt}
}
func (noFilter) Malformed(error) Verdict { return Verdict{End: true, Cause: "malformed"} }
func (noFilter) WantsDown(t packets.Type) Want {
	if t == packets.PUBLISH {
		return WantHead
	}
	return WantPass
}
func (f noFilter) Down(pkt []byte) Verdict {
	v, _ := f.DownHead(pkt, len(pkt))
	return v
}
func (noFilter) DownHead(head []byte, _ int) (Verdict, bool) {
	p, _, err := packets.DecodePublishHead(head, packets.V311)
	if err != nil {
		return Verdict{}, false
	}
	if string(p.Topic) == "no" {
		return Verdict{Broker: packets.AppendAck(nil, packets.PUBACK, packets.V311, p.PacketID, 0)}, true
	}
	return Verdict{Client: head}, true
}

// subackFilter wants SUBACKs whole and passes them.
type subackFilter struct{ noFilter }

func (subackFilter) WantsDown(t packets.Type) Want {
	if t == packets.SUBACK {
		return WantWhole
	}
	return WantPass
}

func pub(topic string, id uint16, payload string) []byte {
	p := packets.Publish{Topic: []byte(topic), Payload: []byte(payload)}
	if id != 0 {
		p.QoS, p.PacketID = 1, id
	}
	b, _ := packets.AppendPublish(nil, packets.V311, &p)
	return b
}

// TestChain: filters run device side first for the client's packets and
// broker side first for the broker's, each on what the one before it left;
// a withheld packet stops the chain and keeps the answers given so far;
// End stops it; WantsDown is the most any filter wants.
func TestChain(t *testing.T) {
	if NewChain(packets.V311) != nil || NewChain(packets.V311, nil, noFilter{}) != (noFilter{}) {
		t.Fatal("a chain of none is nil, of one the filter itself")
	}
	c := NewChain(packets.V311, noFilter{}, prefixFilter{})
	if v := c.Up(pub("ok", 0, "x")); !bytes.Equal(v.Broker, pub("m/ok", 0, "x")) || v.Client != nil || v.End {
		t.Fatalf("allowed up: %+v", v)
	}
	if v := c.Up(pub("no", 3, "x")); v.Broker != nil || !bytes.Equal(v.Client, []byte{0x40, 2, 0, 3}) {
		t.Fatalf("refused up: %+v", v)
	}
	if v := c.Up(pub("end", 0, "x")); !v.End || v.Cause != "acl" || !bytes.Equal(v.Client, []byte{0xE0, 0}) {
		t.Fatalf("ending up: %+v", v)
	}
	if v := c.Down(pub("m/ok", 0, "x")); !bytes.Equal(v.Client, pub("ok", 0, "x")) || v.Broker != nil {
		t.Fatalf("allowed down: %+v", v)
	}
	if v := c.Down(pub("m/no", 4, "x")); v.Client != nil || !bytes.Equal(v.Broker, []byte{0x40, 2, 0, 4}) {
		t.Fatalf("refused down (after the mountpoint, by the topic rule): %+v", v)
	}
	if v := c.Down(pub("elsewhere", 0, "x")); v.Client != nil || v.Broker != nil {
		t.Fatalf("outside the mountpoint: %+v", v)
	}
	// A large PUBLISH from its head: undecided until its variable header
	// is complete, then the rewritten head with the size it leaves.
	big := pub("m/big", 0, strings.Repeat("b", 100000))
	if _, ok := c.DownHead(big[:6], len(big)); ok {
		t.Fatal("decided before the topic came")
	}
	v, ok := c.DownHead(big[:100], len(big))
	want := pub("big", 0, strings.Repeat("b", 100000))
	if !ok || !bytes.Equal(v.Client, want[:98]) {
		t.Fatalf("a large PUBLISH's head: %v %x", ok, v.Client)
	}
	if w := NewChain(packets.V311, noFilter{}, subackFilter{}).WantsDown(packets.SUBACK); w != WantWhole {
		t.Fatalf("WantsDown(SUBACK) = %v", w)
	}
	if w := c.WantsDown(packets.PUBREL); w != WantPass {
		t.Fatalf("WantsDown(PUBREL) = %v", w)
	}
}
