package packets

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// PropertyID identifies an MQTT 5 property (section 2.2.2.2).
type PropertyID byte

// Properties this codec knows.
const (
	PropPayloadFormat        PropertyID = 0x01
	PropMessageExpiry        PropertyID = 0x02
	PropContentType          PropertyID = 0x03
	PropResponseTopic        PropertyID = 0x08
	PropCorrelationData      PropertyID = 0x09
	PropSubscriptionID       PropertyID = 0x0B
	PropSessionExpiry        PropertyID = 0x11
	PropAssignedClientID     PropertyID = 0x12
	PropServerKeepAlive      PropertyID = 0x13
	PropAuthMethod           PropertyID = 0x15
	PropAuthData             PropertyID = 0x16
	PropRequestProblemInfo   PropertyID = 0x17
	PropWillDelay            PropertyID = 0x18
	PropRequestResponseInfo  PropertyID = 0x19
	PropResponseInfo         PropertyID = 0x1A
	PropServerReference      PropertyID = 0x1C
	PropReasonString         PropertyID = 0x1F
	PropReceiveMaximum       PropertyID = 0x21
	PropTopicAliasMaximum    PropertyID = 0x22
	PropTopicAlias           PropertyID = 0x23
	PropMaximumQoS           PropertyID = 0x24
	PropRetainAvailable      PropertyID = 0x25
	PropUserProperty         PropertyID = 0x26
	PropMaximumPacketSize    PropertyID = 0x27
	PropWildcardSubAvailable PropertyID = 0x28
	PropSubIDAvailable       PropertyID = 0x29
	PropSharedSubAvailable   PropertyID = 0x2A
	maxPropertyID                       = 0x2A
	// The kinds of value; the byte, two- and four-byte ones are their sizes.
	propKindByte   = 1
	propKindTwo    = 2
	propKindFour   = 4
	propKindVarint = 5
	propKindString = 6
	propKindBinary = 7
	propKindPair   = 8
)

// propKinds gives each known property's data type (section 2.2.2.2, Table
// 2-4); 0 is unknown.
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

// Properties is an MQTT 5 property list in its wire encoding (without the
// length prefix), in wire order, so that re-encoding is byte-for-byte: the
// one property type of every packet. A nil list is empty. The decoders
// validate the lists they return: DecodePublish's aliases the packet (the
// relay decodes a PUBLISH without allocating), valid while the packet's
// bytes are (Clone makes an owned copy); every other decoder's is a copy
// its result owns. A list built with With, or by hand, is written as held.
type Properties []byte

// Get returns the first property with the given id; a string value is
// copied.
func (p Properties) Get(id PropertyID) (Property, bool) {
	off, ok := p.find(id)
	if !ok {
		return Property{}, false
	}
	return p.at(off), true
}

// TopicAlias returns the Topic Alias property (0x23), without allocating.
func (p Properties) TopicAlias() (uint16, bool) {
	off, ok := p.find(PropTopicAlias)
	if !ok {
		return 0, false
	}
	return uint16(p[off+1])<<8 | uint16(p[off+2]), true
}

// UserProperties returns the user properties (0x26) as key/value pairs, in order.
func (p Properties) UserProperties() [][2]string {
	var out [][2]string
	for off, end := 0, 0; off < len(p); off = end {
		if end = p.next(off); end < 0 {
			break
		}
		if PropertyID(p[off]) == PropUserProperty {
			prop := p.at(off)
			out = append(out, [2]string{prop.Str, prop.Value})
		}
	}
	return out
}

// find returns where the first property id in p is, without allocating.
func (p Properties) find(id PropertyID) (int, bool) {
	for off, end := 0, 0; off < len(p); off = end {
		if end = p.next(off); end < 0 {
			break
		}
		if PropertyID(p[off]) == id {
			return off, true
		}
	}
	return 0, false
}

// next returns where the property at off ends, or -1 when p does not
// hold a whole known property there: a list no decoder produced is read
// no further than its end. It skips values without reading them, so that
// finding a Topic Alias on the relay's path is cheap.
func (p Properties) next(off int) int {
	kind := propKindOf(PropertyID(p[off]))
	off++
	switch kind {
	case propKindByte, propKindTwo, propKindFour:
		off += int(kind) // the value's size
	case propKindVarint:
		_, n, err := decodeVarint(p[off:min(len(p), off+4)])
		if err != nil {
			return -1
		}
		off += n
	case propKindString, propKindBinary, propKindPair:
		for range 1 + btoi(kind == propKindPair) {
			if off+2 > len(p) {
				return -1
			}
			off += 2 + (int(p[off])<<8 | int(p[off+1]))
		}
	default:
		return -1
	}
	if off > len(p) {
		return -1
	}
	return off
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// at reads the property at off, which next found whole; its strings are
// copied.
func (p Properties) at(off int) Property {
	w := wire{b: p, off: off}
	id := PropertyID(w.u8("property identifier"))
	n, start, end := w.propertyValue(id, false)
	prop := Property{ID: id, Int: n}
	switch propKindOf(id) {
	case propKindString, propKindBinary:
		prop.Str = string(p[start:end])
	case propKindPair:
		prop.Str, prop.Value = string(p[start:end]), string(p[end+2:w.off])
	}
	return prop
}

// Clone returns a copy of p that owns its bytes.
func (p Properties) Clone() Properties { return bytes.Clone(p) }

// With returns a copy of p with prop appended (p itself is not changed).
// It is meant for building packets (tests, replies); it does not check
// that prop is allowed in any given packet.
func (p Properties) With(prop Property) Properties {
	b := append(p[:len(p):len(p)], byte(prop.ID))
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
	return b
}

// ownProperties returns a copy of pkt[start:end], a validated property
// list: nil when it is empty.
func ownProperties(pkt []byte, start, end int) Properties {
	if end == start {
		return nil
	}
	return bytes.Clone(pkt[start:end])
}

// appendProperties appends p with its length prefix.
func appendProperties(dst []byte, p Properties) []byte {
	return append(appendVarint(dst, len(p)), p...)
}

// sizeWithLength is the encoded length of p with its length prefix.
func (p Properties) sizeWithLength() int { return varintLen(len(p)) + len(p) }

func propKindOf(id PropertyID) byte {
	if int(id) < len(propKinds) {
		return propKinds[id]
	}
	return 0
}

// propertyValue reads the value of property id at w.off: an integer (n),
// or where binary data, a string or a user property's name is
// (start:end; a user property's value follows it, up to w.off). With
// validate, its strings must be UTF-8 [MQTT-1.5.4] (a user property's
// name and value both [MQTT-1.5.7-1]). An unknown id is a malformed
// packet.
func (w *wire) propertyValue(id PropertyID, validate bool) (n uint32, start, end int) {
	switch propKindOf(id) {
	case propKindByte:
		n = uint32(w.u8("value"))
	case propKindTwo:
		n = uint32(w.u16("value"))
	case propKindFour:
		n = w.u32("value")
	case propKindVarint:
		n = uint32(w.varint("value"))
	case propKindBinary:
		start, end = w.bin("value")
	case propKindString:
		if start, end = w.bin("value"); validate {
			w.utf8("value", start, end)
		}
	case propKindPair:
		if start, end = w.bin("user property name"); validate {
			w.utf8("user property name", start, end)
		}
		if vs, ve := w.bin("user property value"); validate {
			w.utf8("user property value", vs, ve)
		}
	default:
		w.fail(MalformedPacket, "MQTT-2.2.2-2", "property 0x%02X is unknown", byte(id))
	}
	return n, start, end
}

// propRules is what the property list of one packet may hold (Table 2-4)
// and the rule each check cites there. Identifiers another packet allows
// are a malformed packet here [MQTT-2.2.2-2], and so are unknown ones.
type propRules struct {
	name    string // "will " for the will properties, in messages
	allowed uint64 // the properties the packet may carry
	repeat  uint64 // those it may carry more than once
	twice   string // the section whose text makes another repeat a protocol error
	flag    string // the rule a 0-or-1 property above 1 breaks
	wild    string // the rule a wildcard in a Response Topic breaks
	nonZero uint64 // the properties whose value 0 is an error (see zeroRule)
	subID   string // the rule a Subscription Identifier of 0 breaks
}

// Property sets of the table.
const (
	propsFlags  = 1<<PropPayloadFormat | 1<<PropRequestProblemInfo | 1<<PropRequestResponseInfo // 0 or 1
	propsLimits = 1<<PropReceiveMaximum | 1<<PropMaximumPacketSize                              // not 0
	propsIDs    = 1<<PropTopicAlias | 1<<PropSubscriptionID                                     // not 0
	propsUser   = 1 << PropUserProperty
	propsAck    = 1<<PropReasonString | propsUser // PUBACK..PUBCOMP, SUBACK, UNSUBACK
)

// connectRules are the rules of CONNECT's properties: the same text
// (3.1.2.11) cites each check of CONNECT's, the will's and CONNACK's lists.
func connectRules(name string, allowed uint64) propRules {
	return propRules{name: name, allowed: allowed, repeat: propsUser, twice: "MQTT-3.1.2.11", flag: "MQTT-3.1.2.11",
		wild: "MQTT-3.3.2-2", nonZero: propsLimits}
}

// sessionRules are the rules of a packet after CONNECT whose repeats
// section names.
func sessionRules(allowed uint64, section string) propRules {
	return propRules{allowed: allowed, repeat: propsUser, twice: section, flag: "MQTT-3.3.2.3.2",
		wild: "MQTT-3.3.2-14", nonZero: propsIDs, subID: "MQTT-3.3.2.3.8"}
}

// propTable is the one table of property rules, per packet type.
var propTable = func() (t [AUTH + 1]propRules) {
	t[CONNECT] = connectRules("", 1<<PropSessionExpiry|propsLimits|1<<PropTopicAliasMaximum|1<<PropRequestResponseInfo|
		1<<PropRequestProblemInfo|propsUser|1<<PropAuthMethod|1<<PropAuthData)
	// A broker's CONNACK is read leniently: any known property, under
	// CONNECT's value rules.
	t[CONNACK] = connectRules("", ^uint64(0))
	t[PUBLISH] = sessionRules(1<<PropPayloadFormat|1<<PropMessageExpiry|1<<PropContentType|1<<PropResponseTopic|
		1<<PropCorrelationData|propsIDs|propsUser, "MQTT-3.3.2.3")
	// A PUBLISH to a subscriber carries one Subscription Identifier per
	// matching subscription [MQTT-3.3.2.3.8].
	t[PUBLISH].repeat |= 1 << PropSubscriptionID
	t[PUBACK] = sessionRules(propsAck, "MQTT-3.4.2.2")
	t[PUBREC] = sessionRules(propsAck, "MQTT-3.5.2.2")
	t[PUBREL] = sessionRules(propsAck, "MQTT-3.6.2.2")
	t[PUBCOMP] = sessionRules(propsAck, "MQTT-3.7.2.2")
	t[SUBSCRIBE] = sessionRules(1<<PropSubscriptionID|propsUser, "MQTT-3.8.2.1")
	t[SUBSCRIBE].subID = "MQTT-3.8.2.1.2"
	t[SUBACK] = sessionRules(propsAck, "MQTT-3.9.2.1")
	t[UNSUBSCRIBE] = sessionRules(propsUser, "MQTT-3.10.2.1")
	t[UNSUBACK] = sessionRules(propsAck, "MQTT-3.11.2.1")
	t[DISCONNECT] = sessionRules(1<<PropSessionExpiry|1<<PropReasonString|propsUser|1<<PropServerReference, "MQTT-3.14.2.2")
	return t
}()

// willRules are the rules of a CONNECT's will properties.
var willRules = connectRules("will ", 1<<PropWillDelay|1<<PropPayloadFormat|1<<PropMessageExpiry|1<<PropContentType|
	1<<PropResponseTopic|1<<PropCorrelationData|propsUser)

// properties reads the length-prefixed property list of the packet,
// validates it under r, and returns where the list (without its length)
// is: every identifier known and allowed in the packet (else malformed
// [MQTT-2.2.2-2]), no property twice but those the packet may repeat
// (protocol error), strings well-formed UTF-8 [MQTT-1.5.4-1], and the
// value rules of each property.
func (w *wire) properties(r *propRules) (start, end int) {
	n := w.varint("properties length")
	if w.err != nil {
		return w.off, w.off
	}
	if n > w.rest() {
		w.short = w.partial
		w.fail(MalformedPacket, "", "%sproperties length %d exceeds the packet", r.name, n)
		return w.off, w.off
	}
	start, end = w.off, w.off+n
	sub := wire{b: w.b[:end], off: start, what: w.what}
	var seen uint64
	for sub.err == nil && sub.off < end {
		id := PropertyID(sub.u8("property identifier"))
		switch {
		case sub.err != nil:
		case propKindOf(id) == 0 || r.allowed&(1<<id) == 0:
			sub.fail(MalformedPacket, "MQTT-2.2.2-2", "%sproperty 0x%02X not allowed", r.name, byte(id))
		case seen&(1<<id) != 0 && r.repeat&(1<<id) == 0:
			sub.fail(ProtocolError, r.twice, "%sproperty 0x%02X appears twice", r.name, byte(id))
		}
		seen |= 1 << id
		sub.prop = id
		if n, vs, ve := sub.propertyValue(id, true); (propsFlags|r.nonZero|1<<PropResponseTopic)&(1<<id) != 0 {
			sub.checkValue(r, id, n, vs, ve)
		}
		sub.prop = 0
	}
	if sub.err == nil && seen&(1<<PropAuthData) != 0 && seen&(1<<PropAuthMethod) == 0 {
		sub.fail(ProtocolError, "MQTT-3.1.2.11.10", "authentication data without authentication method")
	}
	if sub.err != nil {
		w.err = sub.err
		return start, start
	}
	w.off = end
	return start, end
}

// checkValue checks the value v of property id under r: a 0-or-1
// property is 0 or 1, a limit or identifier is not 0, and a Response Topic
// is a topic name [MQTT-3.3.2-13].
func (w *wire) checkValue(r *propRules, id PropertyID, n uint32, start, end int) {
	switch {
	case w.err != nil:
	case propsFlags&(1<<id) != 0 && n > 1:
		w.fail(ProtocolError, r.flag, "must be 0 or 1, is %d", n)
	case r.nonZero&(1<<id) != 0 && n == 0:
		code, rule := zeroRule(r, id)
		w.fail(code, rule, "must not be 0")
	case id == PropResponseTopic:
		w.topicName("response topic", start, end, r.wild)
	}
}

// zeroRule is how a value of 0 of property id is answered under r.
func zeroRule(r *propRules, id PropertyID) (ReasonCode, string) {
	switch id {
	case PropReceiveMaximum:
		return ProtocolError, "MQTT-3.1.2.11.3"
	case PropMaximumPacketSize:
		return ProtocolError, "MQTT-3.1.2.11.4"
	case PropTopicAlias:
		return TopicAliasInvalid, "MQTT-3.3.2-8" // a Topic Alias of 0 is not permitted
	}
	return ProtocolError, r.subID // [MQTT-3.3.2.3.8], [MQTT-3.8.2.1.2]
}
