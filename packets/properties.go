package packets

import (
	"encoding/binary"
	"fmt"
)

// PropertyID identifies an MQTT 5 property [MQTT-2.2.2.2].
type PropertyID byte

// Properties this codec knows.
const (
	PropPayloadFormat               PropertyID = 0x01
	PropMessageExpiry               PropertyID = 0x02
	PropContentType                 PropertyID = 0x03
	PropResponseTopic               PropertyID = 0x08
	PropCorrelationData             PropertyID = 0x09
	PropSubscriptionID              PropertyID = 0x0B
	PropSessionExpiry               PropertyID = 0x11
	PropAssignedClientID            PropertyID = 0x12
	PropServerKeepAlive             PropertyID = 0x13
	PropAuthMethod                  PropertyID = 0x15
	PropAuthData                    PropertyID = 0x16
	PropRequestProblemInfo          PropertyID = 0x17
	PropWillDelay                   PropertyID = 0x18
	PropRequestResponseInfo         PropertyID = 0x19
	PropResponseInfo                PropertyID = 0x1A
	PropServerReference             PropertyID = 0x1C
	PropReasonString                PropertyID = 0x1F
	PropReceiveMaximum              PropertyID = 0x21
	PropTopicAliasMaximum           PropertyID = 0x22
	PropTopicAlias                  PropertyID = 0x23
	PropMaximumQoS                  PropertyID = 0x24
	PropRetainAvailable             PropertyID = 0x25
	PropUserProperty                PropertyID = 0x26
	PropMaximumPacketSize           PropertyID = 0x27
	PropWildcardSubAvailable        PropertyID = 0x28
	PropSubIDAvailable              PropertyID = 0x29
	PropSharedSubAvailable          PropertyID = 0x2A
	maxPropertyID                              = 0x2A
	propKindByte                               = 1
	propKindTwo                                = 2
	propKindFour                               = 4
	propKindVarint                             = 5
	propKindString                             = 6
	propKindBinary                             = 7
	propKindPair                               = 8
	propMaskAllowAllKnownForReplies            = ^uint64(0)
	propMaskConnect                 uint64     = 1<<PropSessionExpiry | 1<<PropReceiveMaximum | 1<<PropMaximumPacketSize |
		1<<PropTopicAliasMaximum | 1<<PropRequestResponseInfo | 1<<PropRequestProblemInfo |
		1<<PropUserProperty | 1<<PropAuthMethod | 1<<PropAuthData
	propMaskWill uint64 = 1<<PropWillDelay | 1<<PropPayloadFormat | 1<<PropMessageExpiry |
		1<<PropContentType | 1<<PropResponseTopic | 1<<PropCorrelationData | 1<<PropUserProperty
)

// propKinds gives each known property's data type [MQTT-2.2.2.2]; 0 is unknown.
var propKinds = [maxPropertyID + 1]byte{
	PropPayloadFormat: propKindByte, PropMessageExpiry: propKindFour, PropContentType: propKindString,
	PropResponseTopic: propKindString, PropCorrelationData: propKindBinary, PropSubscriptionID: propKindVarint,
	PropSessionExpiry: propKindFour, PropAssignedClientID: propKindString, PropServerKeepAlive: propKindTwo,
	PropAuthMethod: propKindString, PropAuthData: propKindBinary, PropRequestProblemInfo: propKindByte,
	PropWillDelay: propKindFour, PropRequestResponseInfo: propKindByte, PropResponseInfo: propKindString,
	PropServerReference: propKindString, PropReasonString: propKindString, PropReceiveMaximum: propKindTwo,
	PropTopicAliasMaximum: propKindTwo, PropTopicAlias: propKindTwo, PropMaximumQoS: propKindByte,
	PropRetainAvailable: propKindByte, PropUserProperty: propKindPair, PropMaximumPacketSize: propKindFour,
	PropWildcardSubAvailable: propKindByte, PropSubIDAvailable: propKindByte, PropSharedSubAvailable: propKindByte,
}

// Property is one decoded MQTT 5 property. Integer properties use Int;
// strings and binary data use Str; a user property is the pair Str, Value.
type Property struct {
	ID    PropertyID
	Int   uint32
	Str   string
	Value string
}

// Properties is a validated, ordered MQTT 5 property list, held in its wire
// encoding (without the length prefix) so that re-encoding is byte-for-byte.
// The zero value is an empty list.
type Properties struct{ raw string }

// size is the encoded length in bytes, without the length prefix.
func (p Properties) size() int { return len(p.raw) }

// all calls f for each property in wire order until f returns false.
func (p Properties) all(f func(Property) bool) {
	for off := 0; off < len(p.raw); {
		prop, n := readProperty(p.raw[off:])
		if n == 0 || !f(prop) {
			return
		}
		off += n
	}
}

// Get returns the first property with the given id.
func (p Properties) Get(id PropertyID) (prop Property, ok bool) {
	p.all(func(q Property) bool {
		if q.ID == id {
			prop, ok = q, true
			return false
		}
		return true
	})
	return prop, ok
}

// UserProperties returns the user properties (0x26) as key/value pairs, in order.
func (p Properties) UserProperties() [][2]string {
	var out [][2]string
	p.all(func(q Property) bool {
		if q.ID == PropUserProperty {
			out = append(out, [2]string{q.Str, q.Value})
		}
		return true
	})
	return out
}

// With returns p with prop appended. It is meant for building packets (tests,
// replies); it does not check that prop is allowed in any given packet.
func (p Properties) With(prop Property) Properties {
	b := []byte(p.raw)
	b = append(b, byte(prop.ID))
	switch propKindOf(prop.ID) {
	case propKindByte:
		b = append(b, byte(prop.Int))
	case propKindTwo:
		b = binary.BigEndian.AppendUint16(b, uint16(prop.Int))
	case propKindFour:
		b = binary.BigEndian.AppendUint32(b, prop.Int)
	case propKindVarint:
		b = appendVarint(b, int(prop.Int))
	case propKindString, propKindBinary:
		b = appendString(b, prop.Str)
	case propKindPair:
		b = appendString(appendString(b, prop.Str), prop.Value)
	default:
		panic(fmt.Sprintf("packets: unknown property 0x%02X", byte(prop.ID)))
	}
	return Properties{raw: string(b)}
}

func propKindOf(id PropertyID) byte {
	if int(id) < len(propKinds) {
		return propKinds[id]
	}
	return 0
}

// readProperty reads one property from an already validated encoding.
func readProperty(s string) (Property, int) {
	d := decoder{s: s}
	id := PropertyID(d.u8("property"))
	prop := Property{ID: id}
	switch propKindOf(id) {
	case propKindByte:
		prop.Int = uint32(d.u8(""))
	case propKindTwo:
		prop.Int = uint32(d.u16(""))
	case propKindFour:
		prop.Int = d.u32("")
	case propKindVarint:
		prop.Int = uint32(d.varint(""))
	case propKindString, propKindBinary:
		prop.Str = d.bin("")
	case propKindPair:
		prop.Str = d.bin("")
		prop.Value = d.bin("")
	default:
		return prop, 0
	}
	if d.err != nil {
		return prop, 0
	}
	return prop, d.off
}

// properties reads a length-prefixed property list and validates it: every
// identifier known and allowed by mask (else a malformed packet
// [MQTT-2.2.2.2]), no property other than a user property twice (protocol
// error [MQTT-3.1.2.11]), strings well-formed UTF-8 [MQTT-1.5.4-1], and the
// value rules of CONNECT and will properties.
func (d *decoder) properties(what string, mask uint64) Properties {
	n := d.varint(what)
	if d.err != nil {
		return Properties{}
	}
	if n > len(d.s)-d.off {
		d.fail(MalformedPacket, "", "%s properties length %d exceeds the packet", what, n)
		return Properties{}
	}
	start, end := d.off, d.off+n
	sub := decoder{s: d.s[:end], off: start}
	var seen uint64
	for sub.err == nil && sub.off < end {
		id := PropertyID(sub.u8(what))
		kind := propKindOf(id)
		if sub.err != nil {
			break
		}
		if kind == 0 || mask&(1<<id) == 0 {
			sub.fail(MalformedPacket, "MQTT-2.2.2-2", "%s property 0x%02X not allowed", what, byte(id))
			break
		}
		if id != PropUserProperty && seen&(1<<id) != 0 {
			sub.fail(ProtocolError, "MQTT-3.1.2.11", "%s property 0x%02X appears twice", what, byte(id))
			break
		}
		seen |= 1 << id
		sub.prop = id
		name := what
		switch kind {
		case propKindByte:
			v := sub.u8(name)
			switch id {
			case PropPayloadFormat, PropRequestProblemInfo, PropRequestResponseInfo:
				if v > 1 && sub.err == nil {
					sub.fail(ProtocolError, "MQTT-3.1.2.11", "%s must be 0 or 1, is %d", name, v)
				}
			}
		case propKindTwo:
			if sub.u16(name) == 0 && id == PropReceiveMaximum && sub.err == nil {
				sub.fail(ProtocolError, "MQTT-3.1.2.11.3", "receive maximum must not be 0")
			}
		case propKindFour:
			if sub.u32(name) == 0 && id == PropMaximumPacketSize && sub.err == nil {
				sub.fail(ProtocolError, "MQTT-3.1.2.11.4", "maximum packet size must not be 0")
			}
		case propKindVarint:
			sub.varint(name)
		case propKindString:
			v := sub.str(name)
			if id == PropResponseTopic && sub.err == nil {
				sub.topicName(name, v)
			}
		case propKindBinary:
			sub.bin(name)
		case propKindPair:
			sub.str(name)
			sub.str(name)
		}
		sub.prop = 0
	}
	if sub.err != nil {
		d.err = sub.err
		return Properties{}
	}
	if seen&(1<<PropAuthData) != 0 && seen&(1<<PropAuthMethod) == 0 {
		d.fail(ProtocolError, "MQTT-3.1.2.11.10", "authentication data without authentication method")
		return Properties{}
	}
	d.off = end
	return Properties{raw: d.s[start:end]}
}
