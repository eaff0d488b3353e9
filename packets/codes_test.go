package packets

import (
	"testing"
)

// TestReasonTable pins DESIGN.md's "Decisions and CONNACK codes" table.
func TestReasonTable(t *testing.T) {
	table := []struct {
		v5 ReasonCode
		v3 byte
		ok bool
	}{
		{Success, 0x00, true},
		{BadUserNameOrPassword, 0x04, true},
		{NotAuthorized, 0x05, true},
		{ClientIdentifierNotValid, 0x02, true},
		{UnsupportedProtocolVersion, 0x01, true},
		{ServerUnavailable, 0x03, true},
		{MalformedPacket, 0, false},
		{ProtocolError, 0, false},
	}
	for _, r := range table {
		v3, ok := r.v5.V3()
		if v3 != r.v3 || ok != r.ok {
			t.Errorf("%v.V3() = 0x%02X %v, want 0x%02X %v", r.v5, v3, ok, r.v3, r.ok)
		}
	}
	if NotAuthorized.Error() != "mqtt: not authorized (0x87)" {
		t.Errorf("Error() = %q", NotAuthorized.Error())
	}
}

func TestReasonCodeValidFor(t *testing.T) {
	cases := []struct {
		c    ReasonCode
		t    Type
		want bool
	}{
		{Success, PUBACK, true}, {Success, SUBACK, true}, {Success, DISCONNECT, true},
		{GrantedQoS2, SUBACK, true}, {GrantedQoS2, PUBACK, false},
		{NoMatchingSubscribers, PUBREC, true}, {NoMatchingSubscribers, PUBREL, false},
		{PacketIdentifierNotFound, PUBCOMP, true}, {PacketIdentifierNotFound, PUBACK, false},
		{TopicFilterInvalid, UNSUBACK, true}, {TopicFilterInvalid, PUBACK, false},
		{TopicAliasInvalid, DISCONNECT, true}, {MalformedPacket, SUBACK, false},
		{ReasonCode(0x05), DISCONNECT, false}, {Success, Type(16), false},
	}
	for _, c := range cases {
		if got := c.c.ValidFor(c.t); got != c.want {
			t.Errorf("%v.ValidFor(%s) = %v", c.c, c.t, got)
		}
	}
	// Every code of the table has a name and is valid somewhere.
	for c, r := range reasons {
		if r.name == "" || r.pkts == 0 {
			t.Errorf("0x%02X: %+v", byte(c), r)
		}
	}
	if TopicFilterInvalid.String() != "topic filter invalid (0x8F)" {
		t.Errorf("%s", TopicFilterInvalid)
	}
	if _, ok := TopicAliasInvalid.V3(); ok {
		t.Error("topic alias invalid has a v3 CONNACK code")
	}
}
