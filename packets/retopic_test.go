package packets

import (
	"bytes"
	"errors"
	"testing"
	"unicode/utf8"
)

// TestRetopic: a PUBLISH of each level and QoS, whole and as a head, gets
// another topic; everything else decodes as it was.
func TestRetopic(t *testing.T) {
	for _, level := range []Level{V311, V5} {
		for qos := range byte(3) {
			p := Publish{QoS: qos, Retain: true, Topic: []byte("a/b"), Payload: bytes.Repeat([]byte("p"), 300)}
			if qos > 0 {
				p.PacketID, p.Dup = 77, true
			}
			if level == V5 {
				p.Properties = Properties{}.With(Property{ID: PropTopicAlias, Int: 4})
			}
			pkt, _ := AppendPublish(nil, level, &p)
			s, err := SpanPublish(pkt)
			if err != nil || string(pkt[s.Start:s.End]) != "a/b" || s.QoS != qos || s.PacketID != p.PacketID {
				t.Fatalf("v%d QoS %d: %+v %v", level, qos, s, err)
			}
			out, err := AppendRetopic(nil, pkt, s, []byte("tenant/a/b"))
			got, derr := DecodePublish(out, level)
			if err != nil || derr != nil || string(got.Topic) != "tenant/a/b" || !bytes.Equal(got.Payload, p.Payload) || got.PacketID != p.PacketID ||
				got.QoS != qos || !got.Retain || got.Dup != p.Dup || !bytes.Equal(got.Properties, p.Properties) {
				t.Fatalf("v%d QoS %d: %+v %v %v", level, qos, got, err, derr)
			}
			head := pkt[:s.End+4]
			hs, err := SpanPublish(head)
			if err != nil || hs != s {
				t.Fatalf("head: %+v %v", hs, err)
			}
			hout, _ := AppendRetopic(nil, head, hs, []byte("x"))
			whole := append(hout, pkt[len(head):]...)
			if got, err := DecodePublish(whole, level); err != nil || string(got.Topic) != "x" || !bytes.Equal(got.Payload, p.Payload) {
				t.Fatalf("head and rest: %+v %v", got, err)
			}
			if _, err := SpanPublish(pkt[:s.Start+1]); !errors.Is(err, ErrTruncated) {
				t.Fatalf("cut in the topic: %v", err)
			}
		}
	}
	for _, bad := range [][]byte{{0x30, 0x01, 0x00}, {0x30, 0x03, 0x00, 0x05, 'a'}, {0x36, 0x02, 0x00, 0x00}, {0x20, 0x02, 0x00, 0x00}, {0x32, 0x03, 0x00, 0x01, 'a'}} {
		var pe *Error
		if _, err := SpanPublish(bad); !errors.As(err, &pe) {
			t.Errorf("%x: %v", bad, err)
		}
	}
}

// FuzzRetopic: SpanPublish never panics, finds the topic DecodePublish
// finds, and AppendRetopic of a PUBLISH that decodes decodes to it with the
// new topic.
func FuzzRetopic(f *testing.F) {
	for _, level := range []Level{V311, V5} {
		for _, p := range []Publish{{Topic: []byte("t"), Payload: []byte("x")}, {QoS: 1, PacketID: 9, Topic: []byte("a/b/c")},
			{QoS: 2, PacketID: 3, Topic: []byte("é/ü"), Payload: bytes.Repeat([]byte{0}, 40)}} {
			pkt, _ := AppendPublish(nil, level, &p)
			f.Add(byte(level), pkt, []byte("pre/"))
		}
	}
	f.Fuzz(func(t *testing.T, lv byte, pkt, prefix []byte) {
		level := V311
		if lv%2 == 1 {
			level = V5
		}
		s, err := SpanPublish(pkt)
		if err != nil {
			return
		}
		if s.Start < 0 || s.End > len(pkt) || s.Start > s.End {
			t.Fatalf("span %+v of %d bytes", s, len(pkt))
		}
		p, derr := DecodePublish(pkt, level)
		if derr != nil || len(prefix) > 100 || bytes.ContainsAny(prefix, "+#\x00") || !utf8.Valid(prefix) {
			return
		}
		if !bytes.Equal(p.Topic, pkt[s.Start:s.End]) || s.PacketID != p.PacketID {
			t.Fatalf("span %+v, DecodePublish %+v", s, p)
		}
		topic := append(bytes.Clone(prefix), p.Topic...)
		out, err := AppendRetopic(nil, pkt, s, topic)
		if err != nil {
			return
		}
		got, err := DecodePublish(out, level)
		if err != nil || !bytes.Equal(got.Topic, topic) || !bytes.Equal(got.Payload, p.Payload) || !bytes.Equal(got.Properties, p.Properties) ||
			got.QoS != p.QoS || got.PacketID != p.PacketID || got.Retain != p.Retain || got.Dup != p.Dup {
			t.Fatalf("%x retopic %q: %x %+v %v", pkt, topic, out, got, err)
		}
	})
}
