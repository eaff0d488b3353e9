package packets

import (
	"bytes"
	"testing"
)

func TestConnack(t *testing.T) {
	cases := []struct {
		level Level
		sp    bool
		code  ReasonCode
		props Properties
		want  []byte
		ok    bool
	}{
		{V311, true, Success, Properties{}, b(0x20, 2, 1, 0), true},
		{V311, true, BadUserNameOrPassword, Properties{}, b(0x20, 2, 0, 4), true}, // no session present on failure
		{V31, false, NotAuthorized, Properties{}, b(0x20, 2, 0, 5), true},
		{V311, false, ClientIdentifierNotValid, Properties{}, b(0x20, 2, 0, 2), true},
		{V311, false, UnsupportedProtocolVersion, Properties{}, b(0x20, 2, 0, 1), true},
		{V311, false, ServerUnavailable, Properties{}, b(0x20, 2, 0, 3), true},
		{V311, false, MalformedPacket, Properties{}, nil, false},
		{V5, false, BadUserNameOrPassword, Properties{}, b(0x20, 3, 0, 0x86, 0), true},
		{V5, false, NotAuthorized, Properties{}.With(Property{ID: PropReasonString, Str: "no"}),
			pkt(0x20, b(0, 0x87), props(b(0x1F), s("no"))), true},
	}
	for _, c := range cases {
		got, ok := AppendConnack(nil, c.level, c.sp, c.code, c.props)
		if ok != c.ok || !bytes.Equal(got, c.want) {
			t.Errorf("AppendConnack(%d, %v, %v) = %x %v, want %x %v", c.level, c.sp, c.code, got, ok, c.want, c.ok)
			continue
		}
		if !ok {
			continue
		}
		ack, err := DecodeConnack(got, c.level)
		if err != nil {
			t.Fatalf("DecodeConnack(%x): %v", got, err)
		}
		wantCode := byte(c.code)
		if c.level != V5 {
			wantCode, _ = c.code.V3()
		}
		if ack.Code != wantCode || ack.SessionPresent != (c.sp && c.code == Success) || !bytes.Equal(ack.Properties, c.props) {
			t.Errorf("DecodeConnack(%x) = %+v", got, ack)
		}
	}
	for _, bad := range [][]byte{b(0x20, 2, 2, 0), b(0x20, 3, 0, 0, 9), b(0x30, 2, 0, 0), b(0x20, 1, 0), b(0x20, 4, 0, 0, 5, 0x7F)} {
		if _, err := DecodeConnack(bad, V5); err == nil {
			t.Errorf("DecodeConnack(%x) accepted", bad)
		}
	}
}
