package packets

import (
	"testing"
)

// FuzzPeekPublish: whatever the bytes, PeekPublish does not panic, and
// on every PUBLISH DecodePublish accepts it reads the same QoS, retain
// flag and payload size. The seed corpus is testdata/fuzz/FuzzPeekPublish.
func FuzzPeekPublish(f *testing.F) {
	for _, p := range []Publish{
		{QoS: 0, Topic: []byte("a/b"), Payload: []byte("hello")},
		{QoS: 1, Retain: true, Topic: []byte("t"), PacketID: 7, Payload: make([]byte, 300)},
		{QoS: 2, Topic: []byte("x"), PacketID: 1, Properties: Properties{}.With(Property{ID: PropContentType, Str: "text/plain"})},
	} {
		for _, level := range []Level{V311, V5} {
			pkt, err := AppendPublish(nil, level, &p)
			if err != nil {
				continue
			}
			f.Add(byte(level), pkt)
		}
	}
	f.Fuzz(func(t *testing.T, level byte, pkt []byte) {
		lv := V311
		if level&1 == 1 {
			lv = V5
		}
		shape, err := PeekPublish(pkt, lv)
		p, derr := DecodePublish(pkt, lv)
		if derr != nil {
			return
		}
		if err != nil || shape.QoS != p.QoS || shape.Retain != p.Retain || shape.PayloadLen != len(p.Payload) {
			t.Fatalf("% x: PeekPublish %+v %v, DecodePublish QoS %d retain %v payload %d", pkt, shape, err, p.QoS, p.Retain, len(p.Payload))
		}
	})
}

// TestPeekPublishRefuses: a packet that is not a PUBLISH, a QoS of 3,
// and lengths past the packet are errors, never a size.
func TestPeekPublishRefuses(t *testing.T) {
	for _, c := range []struct {
		name string
		pkt  []byte
	}{
		{"SUBSCRIBE", []byte{0x82, 5, 0, 1, 0, 1, 'a'}},
		{"QoS 3", []byte{0x36, 5, 0, 1, 'a', 0, 1}},
		{"topic past the end", []byte{0x30, 3, 0, 9, 'a'}},
		{"packet id past the end", []byte{0x32, 3, 0, 1, 'a'}},
		{"cut", []byte{0x30, 9, 0, 1, 'a'}},
		{"v5 properties past the end", []byte{0x30, 5, 0, 1, 'a', 9, 'x'}},
	} {
		if s, err := PeekPublish(c.pkt, V5); err == nil {
			t.Errorf("%s: %+v, want an error", c.name, s)
		}
	}
}
