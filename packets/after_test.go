package packets

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// decoded is what a decoder returned: encode re-encodes it, views are the
// slices it shares with the packet (a Publish's; everything else a decoder
// returns is owned).
type decoded struct {
	encode func() ([]byte, error)
	views  [][]byte
}

// decodeWith decodes pkt at level with the decoder for packets of type t.
func decodeWith(t Type, pkt []byte, level Level) (decoded, error) {
	switch t {
	case PUBLISH:
		p, err := DecodePublish(pkt, level)
		return decoded{func() ([]byte, error) { return AppendPublish(nil, level, &p) }, [][]byte{p.Topic, p.Properties, p.Payload}}, err
	case SUBSCRIBE:
		s, err := DecodeSubscribe(pkt, level)
		return decoded{encode: func() ([]byte, error) { return AppendSubscribe(nil, level, s.PacketID, s.Properties, s.Filters) }}, err
	case SUBACK:
		s, err := DecodeSuback(pkt, level)
		return decoded{encode: func() ([]byte, error) { return AppendSuback(nil, level, s.PacketID, s.Properties, s.Codes) }}, err
	case UNSUBSCRIBE:
		u, err := DecodeUnsubscribe(pkt, level)
		return decoded{encode: func() ([]byte, error) { return AppendUnsubscribe(nil, level, u.PacketID, u.Properties, u.Filters) }}, err
	case UNSUBACK:
		u, err := DecodeUnsuback(pkt, level)
		return decoded{encode: func() ([]byte, error) { return AppendUnsuback(nil, level, u.PacketID, u.Properties, u.Codes) }}, err
	case PUBACK, PUBREC, PUBREL, PUBCOMP:
		a, err := DecodeAck(pkt, level)
		return decoded{encode: func() ([]byte, error) {
			return AppendAckProperties(nil, a.Type, level, a.PacketID, a.Code, a.Properties), nil
		}}, err
	case DISCONNECT:
		d, err := DecodeDisconnect(pkt, level)
		return decoded{encode: func() ([]byte, error) { return AppendDisconnectProperties(nil, level, d.Code, d.Properties), nil }}, err
	}
	return decoded{}, fmt.Errorf("no decoder for %s", t)
}

// decodeAs decodes pkt at level with the decoder for packets of type t and
// re-encodes what it returned.
func decodeAs(t Type, pkt []byte, level Level) (out []byte, views [][]byte, err error) {
	d, err := decodeWith(t, pkt, level)
	if err != nil {
		return nil, nil, err
	}
	out, err = d.encode()
	return out, d.views, err
}

// validPkt returns the valid fixture with that name.
func validPkt(name string) []byte {
	for _, f := range validAfterConnect {
		if f.name == name {
			return f.pkt
		}
	}
	panic("no fixture " + name)
}

func (f pfix) decoder() Type {
	if f.as != 0 {
		return f.as
	}
	return Type(f.pkt[0] >> 4)
}

// lenient reports whether a valid packet of type t at level may have a
// longer encoding than the one its decoded value re-encodes to: the MQTT 5
// acknowledgements and DISCONNECT, whose reason code and property length
// may be written out or left off.
func lenient(t Type, level Level) bool {
	return level == V5 && (t >= PUBACK && t <= PUBCOMP || t == DISCONNECT)
}

func TestAfterConnectValid(t *testing.T) {
	for _, f := range validAfterConnect {
		for _, level := range f.levels {
			t.Run(fmt.Sprintf("%s/%s", f.name, level), func(t *testing.T) {
				out, _, err := decodeAs(f.decoder(), f.pkt, level)
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
				if f.loose {
					if !lenient(f.decoder(), level) || len(out) >= len(f.pkt) {
						t.Fatalf("loose fixture re-encodes to %x", out)
					}
					again, _, err := decodeAs(f.decoder(), out, level)
					if err != nil || !bytes.Equal(again, out) {
						t.Fatalf("canonical form %x does not round trip: %x %v", out, again, err)
					}
					return
				}
				if !bytes.Equal(out, f.pkt) {
					t.Fatalf("round trip differs\n got %x\nwant %x", out, f.pkt)
				}
			})
		}
	}
}

func TestAfterConnectInvalid(t *testing.T) {
	for _, f := range invalidAfterConnect {
		for _, level := range f.levels {
			t.Run(fmt.Sprintf("%s/%s", f.name, level), func(t *testing.T) {
				out, _, err := decodeAs(f.decoder(), f.pkt, level)
				if err == nil {
					t.Fatalf("accepted, re-encodes to %x", out)
				}
				var pe *Error
				if !errors.As(err, &pe) {
					t.Fatalf("error %v is not *Error", err)
				}
				if pe.Code != f.code || pe.Rule != f.rule {
					t.Errorf("code %v rule %q, want %v %q (%v)", pe.Code, pe.Rule, f.code, f.rule, err)
				}
				if !errors.Is(err, f.code) {
					t.Errorf("errors.Is(err, %v) is false", f.code)
				}
			})
		}
	}
}

// Every proper prefix of a valid packet is refused as malformed.
func TestAfterConnectTruncatedEverywhere(t *testing.T) {
	for _, f := range validAfterConnect {
		for _, level := range f.levels {
			for i := 0; i < len(f.pkt); i++ {
				_, _, err := decodeAs(f.decoder(), f.pkt[:i], level)
				var pe *Error
				if !errors.As(err, &pe) || pe.Code != MalformedPacket {
					t.Fatalf("%s at %s: prefix of %d bytes: %v", f.name, level, i, err)
				}
			}
		}
	}
}

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
	if got := p.Properties.Copy().UserProperties(); !reflect.DeepEqual(got, [][2]string{{"k", "v"}, {"k", "v"}}) {
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

// The other decoders own what they return: it survives the reuse of the
// packet's buffer.
func TestDecodeOwnsResults(t *testing.T) {
	for _, f := range validAfterConnect {
		if f.decoder() == PUBLISH {
			continue
		}
		for _, level := range f.levels {
			buf := bytes.Clone(f.pkt)
			d, err := decodeWith(f.decoder(), buf, level)
			if err != nil {
				t.Fatal(err)
			}
			before, _ := d.encode()
			for i := range buf {
				buf[i] = 0xAA
			}
			if after, _ := d.encode(); !bytes.Equal(before, after) {
				t.Errorf("%s at %s: result changed with the buffer", f.name, level)
			}
		}
	}
}

func TestDecodeSubscribeFields(t *testing.T) {
	s, err := DecodeSubscribe(validPkt("SUBSCRIBE 5 options and properties"), V5)
	if err != nil {
		t.Fatal(err)
	}
	if s.PacketID != 2 {
		t.Errorf("packet id %d", s.PacketID)
	}
	if p, ok := s.Properties.Get(PropSubscriptionID); !ok || p.Int != MaxRemainingLength {
		t.Errorf("subscription id %+v %v", p, ok)
	}
	want := []SubscribeFilter{{Filter: "a/b", Options: 0x2E}, {Filter: "c/#", Options: 0x11}, {Filter: "$share/g/d", Options: 0x08}}
	if !reflect.DeepEqual(s.Filters, want) {
		t.Fatalf("filters %+v", s.Filters)
	}
	o := s.Filters[0].Options
	if o.QoS() != 2 || !o.NoLocal() || !o.RetainAsPublished() || o.RetainHandling() != 2 {
		t.Errorf("options %08b: QoS %d NL %v RAP %v RH %d", o, o.QoS(), o.NoLocal(), o.RetainAsPublished(), o.RetainHandling())
	}
	if o := s.Filters[1].Options; o.QoS() != 1 || o.NoLocal() || o.RetainAsPublished() || o.RetainHandling() != 1 {
		t.Errorf("options %08b", o)
	}

	// Invalid filters decode; each carries its own error, index and rule.
	for _, level := range lv3 {
		s, err := DecodeSubscribe(validPkt("SUBSCRIBE 3.1.1 invalid filters decode"), level)
		if err != nil {
			t.Fatal(err)
		}
		rules := []string{"", "MQTT-4.7.3-1", "MQTT-4.7.1-1", "MQTT-4.7.1-2", "MQTT-4.7.1-1", "MQTT-4.8.2-1",
			"MQTT-4.8.2-2", "MQTT-4.8.2-2", "MQTT-4.8.2-2", "MQTT-4.7.1-1"}
		if len(s.Filters) != len(rules) {
			t.Fatalf("%d filters", len(s.Filters))
		}
		for i, f := range s.Filters {
			switch {
			case rules[i] == "" && f.Err != nil:
				t.Errorf("filter %d %q: %v", i, f.Filter, f.Err)
			case rules[i] != "" && (f.Err == nil || f.Err.Code != TopicFilterInvalid || f.Err.Rule != rules[i] ||
				!strings.Contains(f.Err.Msg, fmt.Sprintf("filter %d ", i))):
				t.Errorf("filter %d %q: %v, want rule %s", i, f.Filter, f.Err, rules[i])
			}
		}
	}
	// A proxy forwards the valid subset, keeping the properties.
	s, _ = DecodeSubscribe(validPkt("SUBSCRIBE 5 options and properties"), V5)
	out, err := AppendSubscribe(nil, V5, s.PacketID, s.Properties, s.Filters[1:2])
	if err != nil {
		t.Fatal(err)
	}
	sub, err := DecodeSubscribe(out, V5)
	if err != nil || sub.Properties != s.Properties || len(sub.Filters) != 1 || sub.Filters[0] != s.Filters[1] {
		t.Fatalf("subset: %+v %v", sub, err)
	}
	if _, err := AppendSubscribe(nil, V5, 1, Properties{}, nil); !errors.Is(err, ErrNoFilters) {
		t.Errorf("empty SUBSCRIBE: %v", err)
	}
	if _, err := AppendSubscribe(nil, V311, 1, Properties{}, []SubscribeFilter{{Filter: strings.Repeat("a", 1<<16)}}); !errors.Is(err, ErrFieldTooLong) {
		t.Errorf("long filter: %v", err)
	}
}

func TestDecodeUnsubscribeFields(t *testing.T) {
	u, err := DecodeUnsubscribe(validPkt("UNSUBSCRIBE 3.1.1"), V311)
	if err != nil {
		t.Fatal(err)
	}
	if u.PacketID != 11 || len(u.Filters) != 3 || u.Filters[0].Filter != "a/+/c" || u.Filters[0].Err != nil ||
		u.Filters[1].Filter != "$share/g/#" || u.Filters[1].Err != nil || u.Filters[2].Err == nil || u.Filters[2].Err.Rule != "MQTT-4.7.1-1" {
		t.Fatalf("%+v", u)
	}
	if _, err := AppendUnsubscribe(nil, V5, 1, Properties{}, nil); !errors.Is(err, ErrNoFilters) {
		t.Errorf("empty UNSUBSCRIBE: %v", err)
	}
}

func TestSplitShared(t *testing.T) {
	cases := []struct {
		in, group, rest string
		ok              bool
	}{
		{"$share/g/a/b", "g", "a/b", true},
		{"$share/g/#", "g", "#", true},
		{"$share/g//", "g", "/", true},
		{"$share/g/$share/h/x", "g", "$share/h/x", true},
		{"$share/g", "", "", false},
		{"$share/g/", "", "", false},
		{"$share//a", "", "", false},
		{"$share/+/a", "", "", false},
		{"$share/a#/a", "", "", false},
		{"$share", "", "", false},
		{"$SHARE/g/a", "", "", false}, // case-sensitive
		{"a/$share/g/a", "", "", false},
	}
	for _, c := range cases {
		g, r, ok := SplitShared(c.in)
		if g != c.group || r != c.rest || ok != c.ok {
			t.Errorf("SplitShared(%q) = %q %q %v", c.in, g, r, ok)
		}
	}
}

func TestValidateFilter(t *testing.T) {
	valid := []string{"#", "+", "/", "//", "a", "a/b", "a/+", "+/a", "a/#", "+/+/#", "/#", "$SYS/#", "$share",
		"$share/g/#", "$share/g/+/x", "sport/tennis/player1/#", "€/😀/+"}
	for _, f := range valid {
		if err := ValidateFilter(f); err != nil {
			t.Errorf("ValidateFilter(%q) = %v", f, err)
		}
	}
	invalid := map[string]string{
		"":            "MQTT-4.7.3-1",
		"a#":          "MQTT-4.7.1-1",
		"#/a":         "MQTT-4.7.1-1",
		"a/#/":        "MQTT-4.7.1-1",
		"##":          "MQTT-4.7.1-1",
		"a+":          "MQTT-4.7.1-2",
		"+a":          "MQTT-4.7.1-2",
		"a/++/b":      "MQTT-4.7.1-2",
		"+#":          "MQTT-4.7.1-2",
		"$share//a":   "MQTT-4.8.2-1",
		"$share/g":    "MQTT-4.8.2-2",
		"$share/g/":   "MQTT-4.8.2-2",
		"$share/#/a":  "MQTT-4.8.2-2",
		"$share/g/a+": "MQTT-4.7.1-2",
	}
	for f, rule := range invalid {
		err := ValidateFilter(f)
		var pe *Error
		if !errors.As(err, &pe) || pe.Code != TopicFilterInvalid || pe.Rule != rule {
			t.Errorf("ValidateFilter(%q) = %v, want %s", f, err, rule)
		}
	}
}

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
	if s, err := DecodeSuback(out, V5); err != nil || s.Properties != props || s.Codes[0] != GrantedQoS1 {
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
		if err != nil || a.Type != c.t || a.PacketID != 5 || a.Code != wantCode || a.Properties != wantProps {
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

func TestDisconnectRoundTrip(t *testing.T) {
	d, err := DecodeDisconnect(validPkt("DISCONNECT 5 properties"), V5)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := d.Properties.Get(PropServerReference); !ok || p.Str != "other:1883" || d.Code != NormalDisconnection {
		t.Fatalf("%+v", d)
	}
	for _, c := range []struct {
		level Level
		code  ReasonCode
		want  []byte
	}{{V5, DisconnectWithWill, b(0xE0, 1, 4)}, {V5, Success, b(0xE0, 0)}, {V311, ProtocolError, b(0xE0, 0)}} {
		got := AppendDisconnectProperties(nil, c.level, c.code, Properties{})
		if !bytes.Equal(got, c.want) {
			t.Errorf("%s %v: %x", c.level, c.code, got)
		}
		if d, err := DecodeDisconnect(got, c.level); err != nil || c.level == V5 && d.Code != c.code {
			t.Errorf("decode %x: %+v %v", got, d, err)
		}
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

func TestRawProperties(t *testing.T) {
	p := Properties{}.With(Property{ID: PropUserProperty, Str: "a", Value: "b"}).
		With(Property{ID: PropSubscriptionID, Int: 300}).
		With(Property{ID: PropTopicAlias, Int: 0x1234})
	r := RawProperties(p.raw)
	if a, ok := r.TopicAlias(); !ok || a != 0x1234 {
		t.Errorf("TopicAlias = %d %v", a, ok)
	}
	if got, ok := r.Get(PropSubscriptionID); !ok || got.Int != 300 {
		t.Errorf("Get = %+v %v", got, ok)
	}
	if r.Copy() != p {
		t.Error("Copy() differs")
	}
	// Garbage (never produced by a decoder) is not read past its end.
	for _, g := range []RawProperties{{0x23, 0}, {0x26, 0, 5, 'a'}, {0x7F}, {0x0B, 0x80}, {0x26, 0, 0, 0}} {
		if _, ok := g.TopicAlias(); ok {
			t.Errorf("alias found in %x", g)
		}
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

// Random round trips: encode, decode, encode again; the fields survive and
// the bytes are the same.

type gen struct{ r *rand.Rand }

func (g gen) str(max int, alphabet string) string {
	rs := []rune(alphabet)
	var sb strings.Builder
	for n := g.r.IntN(max + 1); sb.Len() < n; {
		sb.WriteRune(rs[g.r.IntN(len(rs))])
	}
	return sb.String()
}

func (g gen) bin(max int) []byte {
	b := make([]byte, g.r.IntN(max+1))
	for i := range b {
		b[i] = byte(g.r.Uint32())
	}
	return b
}

const levelAlphabet = "abcXYZ019-_ é€😀$"

func (g gen) topic() string {
	levels := make([]string, 1+g.r.IntN(4))
	for i := range levels {
		levels[i] = g.str(8, levelAlphabet)
	}
	if t := strings.Join(levels, "/"); t != "" {
		return t
	}
	return "t"
}

func (g gen) filter() string {
	levels := make([]string, 1+g.r.IntN(4))
	for i := range levels {
		switch g.r.IntN(4) {
		case 0:
			levels[i] = "+"
		default:
			levels[i] = g.str(6, levelAlphabet)
		}
	}
	if g.r.IntN(4) == 0 {
		levels[len(levels)-1] = "#"
	}
	f := strings.Join(levels, "/")
	if g.r.IntN(5) == 0 {
		f = "$share/" + g.str(5, "abcg1é") + "x/" + f
	}
	if g.r.IntN(10) == 0 {
		f = g.str(6, "a/+#") // often invalid
	}
	return f
}

func (g gen) id() uint16 { return uint16(1 + g.r.IntN(65535)) }

func (g gen) users(p Properties) Properties {
	for range g.r.IntN(3) {
		p = p.With(Property{ID: PropUserProperty, Str: g.str(5, levelAlphabet), Value: g.str(5, levelAlphabet)})
	}
	return p
}

func (g gen) publish(level Level) Publish {
	p := Publish{QoS: byte(g.r.IntN(3)), Retain: g.r.IntN(2) == 0, Topic: []byte(g.topic()), Payload: g.bin(300)}
	if p.QoS > 0 {
		p.Dup, p.PacketID = g.r.IntN(2) == 0, g.id()
	}
	if level != V5 {
		return p
	}
	var props Properties
	if g.r.IntN(2) == 0 {
		props = props.With(Property{ID: PropPayloadFormat, Int: uint32(g.r.IntN(2))})
	}
	if g.r.IntN(2) == 0 {
		props = props.With(Property{ID: PropMessageExpiry, Int: g.r.Uint32()})
	}
	if g.r.IntN(3) == 0 {
		props = props.With(Property{ID: PropResponseTopic, Str: g.topic()}).
			With(Property{ID: PropCorrelationData, Str: string(g.bin(10))})
	}
	if g.r.IntN(3) == 0 {
		props = props.With(Property{ID: PropContentType, Str: g.str(10, levelAlphabet)})
	}
	for range g.r.IntN(3) {
		props = props.With(Property{ID: PropSubscriptionID, Int: uint32(1 + g.r.IntN(MaxRemainingLength))})
	}
	if g.r.IntN(2) == 0 {
		props = props.With(Property{ID: PropTopicAlias, Int: uint32(g.id())})
		if g.r.IntN(2) == 0 {
			p.Topic = []byte{}
		}
	}
	p.Properties = RawProperties(g.users(props).raw)
	return p
}

func (g gen) options(level Level, filter string) SubscribeOptions {
	o := SubscribeOptions(g.r.IntN(3))
	if level != V5 {
		return o
	}
	o |= SubscribeOptions(g.r.IntN(3)<<4 | g.r.IntN(2)<<3)
	if !strings.HasPrefix(filter, "$share/") && g.r.IntN(2) == 0 {
		o |= 0x04
	}
	return o
}

func (g gen) props(level Level, ids ...Property) Properties {
	if level != V5 {
		return Properties{}
	}
	var p Properties
	for _, id := range ids {
		if g.r.IntN(2) == 0 {
			p = p.With(id)
		}
	}
	return g.users(p)
}

// randomPacket returns a random valid packet of a random type after CONNECT.
func (g gen) packet(level Level) []byte {
	var out []byte
	var err error
	reason := Property{ID: PropReasonString, Str: g.str(10, levelAlphabet)}
	switch g.r.IntN(7) {
	case 0:
		p := g.publish(level)
		out, err = AppendPublish(nil, level, &p)
	case 1:
		fs := make([]SubscribeFilter, 1+g.r.IntN(4))
		for i := range fs {
			fs[i].Filter = g.filter()
			fs[i].Options = g.options(level, fs[i].Filter)
		}
		out, err = AppendSubscribe(nil, level, g.id(), g.props(level, Property{ID: PropSubscriptionID, Int: uint32(1 + g.r.IntN(1e6))}), fs)
	case 2:
		fs := make([]UnsubscribeFilter, 1+g.r.IntN(4))
		for i := range fs {
			fs[i].Filter = g.filter()
		}
		out, err = AppendUnsubscribe(nil, level, g.id(), g.props(level), fs)
	case 3:
		codes := make([]ReasonCode, 1+g.r.IntN(5))
		all := []ReasonCode{0, 1, 2, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2}
		for i := range codes {
			codes[i] = all[g.r.IntN(len(all))]
			if level == V31 {
				codes[i] = ReasonCode(g.r.IntN(3))
			}
		}
		out, err = AppendSuback(nil, level, g.id(), g.props(level, reason), codes)
	case 4:
		codes := make([]ReasonCode, 1+g.r.IntN(5))
		all := []ReasonCode{0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91}
		for i := range codes {
			codes[i] = all[g.r.IntN(len(all))]
		}
		out, err = AppendUnsuback(nil, level, g.id(), g.props(level, reason), codes)
	case 5:
		t := PUBACK + Type(g.r.IntN(4))
		all := codesFor(t)
		out = AppendAckProperties(nil, t, level, g.id(), all[g.r.IntN(len(all))], g.props(level, reason))
	default:
		all := codesFor(DISCONNECT)
		out = AppendDisconnectProperties(nil, level, all[g.r.IntN(len(all))], g.props(level, reason,
			Property{ID: PropSessionExpiry, Int: g.r.Uint32()}, Property{ID: PropServerReference, Str: "h:1"}))
	}
	if err != nil {
		panic(err)
	}
	return out
}

// codesFor returns the reason codes packet t may carry, in order (the
// generator must be deterministic: it makes fuzz seeds).
func codesFor(t Type) []ReasonCode {
	var all []ReasonCode
	for c := range reasons {
		if c.ValidFor(t) {
			all = append(all, c)
		}
	}
	slices.Sort(all)
	return all
}

func TestAfterConnectRandomRoundTrip(t *testing.T) {
	g := gen{rand.New(rand.NewPCG(7, 8))}
	for i := 0; i < 20000; i++ {
		level := lvAll[i%3]
		pkt := g.packet(level)
		out, _, err := decodeAs(Type(pkt[0]>>4), pkt, level)
		if err != nil {
			t.Fatalf("%s: decode(%x): %v", level, pkt, err)
		}
		if !bytes.Equal(out, pkt) {
			t.Fatalf("%s: round trip differs\n got %x\nwant %x", level, out, pkt)
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

// The decoders allocate only what their results hold.
func TestDecodeAllocations(t *testing.T) {
	cases := []struct {
		name  string
		level Level
		max   float64
	}{
		{"SUBSCRIBE 3.1.1 wildcards and shared", V311, 2}, // one copy of the filters, the list
		{"SUBSCRIBE 5 options and properties", V5, 2},
		{"UNSUBSCRIBE 5", V5, 2},
		{"SUBACK 3.1.1", V311, 1},   // the code list
		{"SUBACK 5", V5, 2},         // the code list, the properties
		{"UNSUBACK 3.1.1", V311, 0}, // nothing to hold
		{"PUBACK 5 code", V5, 0},    // no properties
		{"PUBACK 5 code and properties", V5, 1},
		{"DISCONNECT 5 with will", V5, 0},
		{"DISCONNECT 5 properties", V5, 1},
	}
	for _, c := range cases {
		pkt := validPkt(c.name)
		var err error
		allocs := testing.AllocsPerRun(50, func() {
			switch Type(pkt[0] >> 4) {
			case SUBSCRIBE:
				_, err = DecodeSubscribe(pkt, c.level)
			case UNSUBSCRIBE:
				_, err = DecodeUnsubscribe(pkt, c.level)
			case SUBACK:
				_, err = DecodeSuback(pkt, c.level)
			case UNSUBACK:
				_, err = DecodeUnsuback(pkt, c.level)
			case DISCONNECT:
				_, err = DecodeDisconnect(pkt, c.level)
			default:
				_, err = DecodeAck(pkt, c.level)
			}
		})
		if err != nil || allocs > c.max {
			t.Errorf("%s: %v allocations (at most %v), %v", c.name, allocs, c.max, err)
		}
	}
}
