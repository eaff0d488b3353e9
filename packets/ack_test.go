package packets

import (
	"bytes"
	"testing"
)

func TestAppendAck(t *testing.T) {
	reason := Properties{}.With(Property{ID: PropReasonString, Str: "no"})
	cases := []struct {
		t     Type
		level Level
		code  ReasonCode
		props Properties
		want  []byte
	}{
		{PUBACK, V311, Success, Properties{}, b(0x40, 2, 0, 5)},
		{PUBREC, V31, Success, Properties{}, b(0x50, 2, 0, 5)},
		{PUBREL, V311, Success, Properties{}, b(0x62, 2, 0, 5)},
		{PUBCOMP, V311, Success, Properties{}, b(0x70, 2, 0, 5)},
		{PUBACK, V311, NotAuthorized, reason, b(0x40, 2, 0, 5)}, // v3 has no reason: dropped
		{PUBACK, V5, Success, Properties{}, b(0x40, 2, 0, 5)},   // shortest: code omitted
		{PUBACK, V5, NotAuthorized, Properties{}, b(0x40, 3, 0, 5, 0x87)},
		{PUBREL, V5, PacketIdentifierNotFound, Properties{}, b(0x62, 3, 0, 5, 0x92)},
		{PUBACK, V5, NotAuthorized, reason, pkt(0x40, b(0, 5, 0x87), props(b(0x1F), s("no")))},
		{PUBCOMP, V5, Success, reason, pkt(0x70, b(0, 5, 0x00), props(b(0x1F), s("no")))},
	}
	for _, c := range cases {
		got := AppendAckProperties(nil, c.t, c.level, 5, c.code, c.props)
		if !bytes.Equal(got, c.want) {
			t.Errorf("AppendAckProperties(%s, %s, %v) = %x, want %x", c.t, c.level, c.code, got, c.want)
			continue
		}
		a, err := DecodeAck(got, c.level)
		wantCode, wantProps := c.code, c.props
		if c.level != V5 {
			wantCode, wantProps = Success, Properties{}
		}
		if err != nil || a.Type != c.t || a.PacketID != 5 || a.Code != wantCode || !bytes.Equal(a.Properties, wantProps) {
			t.Errorf("DecodeAck(%x) = %+v %v", got, a, err)
		}
	}
	if got := AppendAck(nil, PUBREC, V5, 1, NoMatchingSubscribers); !bytes.Equal(got, b(0x50, 3, 0, 1, 0x10)) {
		t.Errorf("AppendAck: %x", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("AppendAck of a PUBLISH did not panic")
		}
	}()
	AppendAck(nil, PUBLISH, V5, 1, Success)
}
