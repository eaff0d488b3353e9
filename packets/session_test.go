package packets

// Tests of the packets a session exchanges after CONNECT, whatever their
// type: the fixtures, truncation, ownership, allocations, random round trips.

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
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
	p.Properties = g.users(props)
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

// The decoders allocate only what their results hold.
func TestDecodeAllocations(t *testing.T) {
	cases := []struct {
		name  string
		level Level
		max   float64
	}{
		{"SUBSCRIBE 3.1.1 wildcards and shared", V311, 2}, // one copy of the filters, the list
		{"SUBSCRIBE 5 options and properties", V5, 3},     // and one of the properties
		{"UNSUBSCRIBE 5", V5, 3},
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
