package packets

import (
	"bytes"
	"errors"
	"testing"
)

func TestSuback(t *testing.T) {
	codes := []ReasonCode{GrantedQoS0, GrantedQoS1, GrantedQoS2, NotAuthorized, TopicFilterInvalid}
	cases := []struct {
		level Level
		codes []ReasonCode
		want  []byte
		err   error
	}{
		// 3.1.1: every failure is 0x80.
		{V311, codes, pkt(0x90, b(0, 7), b(0, 1, 2, 0x80, 0x80)), nil},
		{V5, codes, pkt(0x90, b(0, 7), props(), b(0, 1, 2, 0x87, 0x8F)), nil},
		{V31, codes[:3], pkt(0x90, b(0, 7), b(0, 1, 2)), nil},
		// 3.1 has no failure code: the caller decides.
		{V31, codes, nil, ErrCodeNotAllowed},
		{V5, []ReasonCode{MalformedPacket}, nil, ErrCodeNotAllowed},
		{V5, []ReasonCode{NoMatchingSubscribers}, nil, ErrCodeNotAllowed},
		{V311, []ReasonCode{3}, nil, ErrCodeNotAllowed},
		{V311, nil, nil, ErrNoFilters},
	}
	for _, c := range cases {
		got, err := AppendSuback(nil, c.level, 7, Properties{}, c.codes)
		if !errors.Is(err, c.err) || !bytes.Equal(got, c.want) {
			t.Errorf("AppendSuback(%s, %v) = %x %v, want %x %v", c.level, c.codes, got, err, c.want, c.err)
			continue
		}
		if err != nil {
			continue
		}
		s, err := DecodeSuback(got, c.level)
		if err != nil || s.PacketID != 7 || len(s.Codes) != len(c.codes) {
			t.Errorf("DecodeSuback(%x) = %+v %v", got, s, err)
		}
	}
	props := Properties{}.With(Property{ID: PropReasonString, Str: "partly"})
	out, _ := AppendSuback(nil, V5, 9, props, []ReasonCode{GrantedQoS1})
	if s, err := DecodeSuback(out, V5); err != nil || !bytes.Equal(s.Properties, props) || s.Codes[0] != GrantedQoS1 {
		t.Errorf("v5 with properties: %+v %v", s, err)
	}
}

func TestUnsuback(t *testing.T) {
	if got, _ := AppendUnsuback(nil, V311, 0x0102, Properties{}.With(Property{ID: PropReasonString, Str: "x"}), []ReasonCode{NotAuthorized}); !bytes.Equal(got, b(0xB0, 2, 1, 2)) {
		t.Errorf("3.1.1: %x", got)
	}
	got, err := AppendUnsuback(nil, V5, 1, Properties{}, []ReasonCode{Success, NoSubscriptionExisted})
	if err != nil || !bytes.Equal(got, b(0xB0, 5, 0, 1, 0, 0, 0x11)) {
		t.Errorf("5: %x %v", got, err)
	}
	if _, err := AppendUnsuback(nil, V5, 1, Properties{}, []ReasonCode{GrantedQoS1}); !errors.Is(err, ErrCodeNotAllowed) {
		t.Errorf("granted QoS 1 in UNSUBACK: %v", err)
	}
	if _, err := AppendUnsuback(nil, V5, 1, Properties{}, nil); !errors.Is(err, ErrNoFilters) {
		t.Errorf("no code: %v", err)
	}
	if u, err := DecodeUnsuback(b(0xB0, 2, 0, 9), V31); err != nil || u.PacketID != 9 || u.Codes != nil {
		t.Errorf("3.1: %+v %v", u, err)
	}
}
