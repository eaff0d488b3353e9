package packets

import (
	"bytes"
	"fmt"
	"unicode/utf8"
)

// This file is the reader of the packets after CONNECT. Unlike CONNECT's
// decoder, which reads one immutable copy of the packet, wire reads the
// caller's bytes in place: offsets into pkt, a bounds check before every
// field, and no allocation unless something fails. Each decoder then
// decides what its result owns: Publish is a view of pkt (the relay decodes
// one per message); the rest copy the little they keep.

// wire reads the fields of one whole packet b from off. The first failure
// is kept in err and every later read returns zero values, so callers check
// err once per step.
type wire struct {
	b    []byte
	off  int
	what Type // packet being read, for messages and property rules
	err  *Error
	prop PropertyID // property being read, for messages
	// partial: b is the beginning of a longer packet (DecodePublishHead);
	// running out of bytes then sets short instead of being malformed.
	partial, short bool
}

func (w *wire) fail(code ReasonCode, rule, format string, args ...any) {
	if w.err != nil {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if w.prop != 0 {
		msg = fmt.Sprintf("property 0x%02X: %s", byte(w.prop), msg)
	}
	w.err = &Error{Code: code, Rule: rule, Msg: w.what.String() + " " + msg}
}

// need checks that n more bytes are there.
func (w *wire) need(n int, field string) bool {
	if w.err != nil {
		return false
	}
	if n > len(w.b)-w.off {
		w.short = w.partial
		w.fail(MalformedPacket, "", "%s: truncated", field)
		return false
	}
	return true
}

func (w *wire) u8(field string) byte {
	if !w.need(1, field) {
		return 0
	}
	w.off++
	return w.b[w.off-1]
}

func (w *wire) u16(field string) uint16 {
	if !w.need(2, field) {
		return 0
	}
	w.off += 2
	return uint16(w.b[w.off-2])<<8 | uint16(w.b[w.off-1])
}

func (w *wire) u32(field string) uint32 {
	if !w.need(4, field) {
		return 0
	}
	w.off += 4
	b := w.b[w.off-4 : w.off]
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// varint reads a variable byte integer [MQTT-1.5.5].
func (w *wire) varint(field string) int {
	if w.err != nil {
		return 0
	}
	v, n, err := decodeVarint(w.b[w.off:min(len(w.b), w.off+4)])
	switch {
	case err == ErrTruncated:
		w.short = w.partial
		w.fail(MalformedPacket, "", "%s: truncated", field)
		return 0
	case err != nil:
		w.fail(MalformedPacket, "MQTT-1.5.5-1", "%s: malformed variable byte integer", field)
		return 0
	}
	w.off += n
	return v
}

// bin reads two-byte-length-prefixed binary data [MQTT-1.5.6] and returns
// where its bytes are.
func (w *wire) bin(field string) (start, end int) {
	n := int(w.u16(field))
	if !w.need(n, field) {
		return w.off, w.off
	}
	w.off += n
	return w.off - n, w.off
}

// str reads a UTF-8 encoded string: well-formed, no surrogates [MQTT-1.5.4-1]
// ([MQTT-1.5.3-1] in 3.1.1), no U+0000 [MQTT-1.5.4-2] ([MQTT-1.5.3-2]).
// Either is a malformed packet.
func (w *wire) str(field string) (start, end int) {
	start, end = w.bin(field)
	if w.err != nil {
		return start, end
	}
	if v := w.b[start:end]; !utf8.Valid(v) {
		w.fail(MalformedPacket, "MQTT-1.5.4-1", "%s is not well-formed UTF-8", field)
	} else if bytes.IndexByte(v, 0) >= 0 {
		w.fail(MalformedPacket, "MQTT-1.5.4-2", "%s contains U+0000", field)
	}
	return start, end
}

// rest is the number of bytes left.
func (w *wire) rest() int { return len(w.b) - w.off }

// view returns b[start:end] with its capacity cut at end, so that appending
// to what a decoder returns never writes over the bytes that follow.
func view(b []byte, start, end int) []byte { return b[start:end:end] }

// openPacket checks that pkt is exactly one whole packet of type t and
// returns a reader after its fixed header, and the header's flags. A
// framing error is a malformed packet; another type is a protocol error
// (the caller switched on the wrong byte).
func openPacket(pkt []byte, t Type) (wire, byte, *Error) {
	h, err := ParseHeader(pkt)
	switch {
	case err == ErrTruncated:
		return wire{}, 0, &Error{Code: MalformedPacket, Msg: t.String() + " fixed header truncated"}
	case err != nil:
		return wire{}, 0, &Error{Code: MalformedPacket, Rule: "MQTT-1.5.5-1", Msg: t.String() + " remaining length: " + err.Error()}
	case h.Type != t:
		return wire{}, 0, &Error{Code: ProtocolError, Msg: fmt.Sprintf("expected %s, got %s", t, h.Type)}
	case h.Size() > len(pkt):
		return wire{}, 0, &Error{Code: MalformedPacket, Msg: fmt.Sprintf("%s truncated: %d of %d bytes", t, len(pkt), h.Size())}
	case h.Size() < len(pkt):
		return wire{}, 0, &Error{Code: MalformedPacket, Msg: fmt.Sprintf("%d bytes after the %s packet", len(pkt)-h.Size(), t)}
	}
	return wire{b: pkt, off: h.HeaderLen, what: t}, h.Flags, nil
}

// checkFlags checks the fixed header flags of every packet but PUBLISH:
// 0010 for PUBREL [MQTT-3.6.1-1], SUBSCRIBE [MQTT-3.8.1-1] and UNSUBSCRIBE
// [MQTT-3.10.1-1], else 0000 [MQTT-2.1.3-1]; other values are malformed.
// (MQTT 3.1 let a retransmitted PUBREL, SUBSCRIBE or UNSUBSCRIBE carry DUP;
// like mosquitto 2 and mochi-mqtt, this codec requires 0010 there too.)
func (w *wire) checkFlags(flags byte) {
	want, rule := byte(0), "MQTT-2.1.3-1"
	switch w.what {
	case PUBREL:
		want, rule = 2, "MQTT-3.6.1-1"
	case SUBSCRIBE:
		want, rule = 2, "MQTT-3.8.1-1"
	case UNSUBSCRIBE:
		want, rule = 2, "MQTT-3.10.1-1"
	}
	if flags != want {
		w.fail(MalformedPacket, rule, "fixed header flags are 0x%X, must be 0x%X", flags, want)
	}
}

// packetID reads a packet identifier, which must not be 0: SUBSCRIBE,
// UNSUBSCRIBE and PUBLISH with QoS > 0 carry a non-zero one
// [MQTT-2.2.1-3] (a server's PUBLISH [MQTT-2.2.1-4]; [MQTT-2.3.1-1] in
// 3.1.1), and the acknowledgements repeat it [MQTT-2.2.1-5],
// [MQTT-2.2.1-6].
func (w *wire) packetID() uint16 {
	id := w.u16("packet identifier")
	if w.err == nil && id == 0 {
		rule := "MQTT-2.2.1-3"
		switch w.what {
		case PUBACK, PUBREC, PUBREL, PUBCOMP:
			rule = "MQTT-2.2.1-5"
		case SUBACK, UNSUBACK:
			rule = "MQTT-2.2.1-6"
		}
		w.fail(ProtocolError, rule, "packet identifier is 0")
	}
	return id
}

// reasonCode reads a v5 reason code and checks that it is one the packet
// may carry (Table 2-6; the packet's own table in 3.4.2.1 and on). Another
// value is a protocol error.
func (w *wire) reasonCode(field string) ReasonCode {
	c := ReasonCode(w.u8(field))
	if w.err == nil && !c.ValidFor(w.what) {
		w.fail(ProtocolError, "MQTT-2.4", "%s 0x%02X is not defined for %s", field, byte(c), w.what)
	}
	return c
}

// Properties allowed after CONNECT, per packet [MQTT-2.2.2.2] Table 2-4.
const (
	propMaskPublish = 1<<PropPayloadFormat | 1<<PropMessageExpiry | 1<<PropContentType |
		1<<PropResponseTopic | 1<<PropCorrelationData | 1<<PropSubscriptionID | 1<<PropTopicAlias |
		1<<PropUserProperty
	propMaskAck         = 1<<PropReasonString | 1<<PropUserProperty // PUBACK..PUBCOMP, SUBACK, UNSUBACK
	propMaskSubscribe   = 1<<PropSubscriptionID | 1<<PropUserProperty
	propMaskUnsubscribe = 1 << PropUserProperty
	propMaskDisconnect  = 1<<PropSessionExpiry | 1<<PropReasonString | 1<<PropUserProperty | 1<<PropServerReference
)

// propRules returns the properties packet t allows, those it allows more
// than once, and the section whose text makes a repeat a protocol error.
func propRules(t Type) (mask, multi uint64, section string) {
	switch t {
	case PUBLISH:
		// A PUBLISH to a subscriber carries one Subscription Identifier per
		// matching subscription [MQTT-3.3.2.3.8].
		return propMaskPublish, 1<<PropUserProperty | 1<<PropSubscriptionID, "MQTT-3.3.2.3"
	case PUBACK:
		return propMaskAck, 1 << PropUserProperty, "MQTT-3.4.2.2"
	case PUBREC:
		return propMaskAck, 1 << PropUserProperty, "MQTT-3.5.2.2"
	case PUBREL:
		return propMaskAck, 1 << PropUserProperty, "MQTT-3.6.2.2"
	case PUBCOMP:
		return propMaskAck, 1 << PropUserProperty, "MQTT-3.7.2.2"
	case SUBSCRIBE:
		return propMaskSubscribe, 1 << PropUserProperty, "MQTT-3.8.2.1"
	case SUBACK:
		return propMaskAck, 1 << PropUserProperty, "MQTT-3.9.2.1"
	case UNSUBSCRIBE:
		return propMaskUnsubscribe, 1 << PropUserProperty, "MQTT-3.10.2.1"
	case UNSUBACK:
		return propMaskAck, 1 << PropUserProperty, "MQTT-3.11.2.1"
	case DISCONNECT:
		return propMaskDisconnect, 1 << PropUserProperty, "MQTT-3.14.2.2"
	}
	return 0, 0, ""
}

// properties reads the length-prefixed property list of the packet and
// validates it, and returns where the list (without its length) is: every
// identifier known and allowed in this packet (else malformed
// [MQTT-2.2.2-2]), no property twice but those the packet may repeat
// (protocol error), strings well-formed UTF-8 [MQTT-1.5.4-1], and the
// value rules of each property.
func (w *wire) properties() (start, end int) {
	n := w.varint("properties length")
	if w.err != nil {
		return w.off, w.off
	}
	if n > w.rest() {
		w.short = w.partial
		w.fail(MalformedPacket, "", "properties length %d exceeds the packet", n)
		return w.off, w.off
	}
	start, end = w.off, w.off+n
	mask, multi, section := propRules(w.what)
	sub := wire{b: w.b[:end], off: start, what: w.what}
	var seen uint64
	for sub.err == nil && sub.off < end {
		id := PropertyID(sub.u8("property identifier"))
		kind := propKindOf(id)
		if kind == 0 || mask&(1<<id) == 0 {
			sub.fail(MalformedPacket, "MQTT-2.2.2-2", "property 0x%02X not allowed", byte(id))
			break
		}
		if seen&(1<<id) != 0 && multi&(1<<id) == 0 {
			sub.fail(ProtocolError, section, "property 0x%02X appears twice", byte(id))
			break
		}
		seen |= 1 << id
		sub.prop = id
		sub.propertyValue(id, kind)
		sub.prop = 0
	}
	if sub.err != nil {
		w.err = sub.err
		return start, start
	}
	w.off = end
	return start, end
}

// propertyValue reads one property's value and checks its rules.
func (w *wire) propertyValue(id PropertyID, kind byte) {
	switch kind {
	case propKindByte:
		// Payload Format Indicator is 0 or 1 [MQTT-3.3.2.3.2].
		if v := w.u8("value"); w.err == nil && id == PropPayloadFormat && v > 1 {
			w.fail(ProtocolError, "MQTT-3.3.2.3.2", "payload format indicator must be 0 or 1, is %d", v)
		}
	case propKindTwo:
		// A Topic Alias of 0 is not permitted [MQTT-3.3.2-8].
		if v := w.u16("value"); w.err == nil && id == PropTopicAlias && v == 0 {
			w.fail(TopicAliasInvalid, "MQTT-3.3.2-8", "topic alias is 0")
		}
	case propKindFour:
		w.u32("value")
	case propKindVarint:
		// A Subscription Identifier of 0 is a protocol error
		// [MQTT-3.3.2.3.8], [MQTT-3.8.2.1.2].
		if v := w.varint("value"); w.err == nil && id == PropSubscriptionID && v == 0 {
			rule := "MQTT-3.3.2.3.8"
			if w.what == SUBSCRIBE {
				rule = "MQTT-3.8.2.1.2"
			}
			w.fail(ProtocolError, rule, "subscription identifier is 0")
		}
	case propKindString:
		start, end := w.str("value")
		if w.err == nil && id == PropResponseTopic {
			// The Response Topic is a topic name [MQTT-3.3.2-13]: at least
			// one character [MQTT-4.7.3-1], no wildcards [MQTT-3.3.2-14].
			switch v := w.b[start:end]; {
			case len(v) == 0:
				w.fail(ProtocolError, "MQTT-4.7.3-1", "response topic is empty")
			case bytes.ContainsAny(v, "+#"):
				w.fail(ProtocolError, "MQTT-3.3.2-14", "response topic contains a wildcard")
			}
		}
	case propKindBinary:
		w.bin("value")
	case propKindPair:
		w.str("user property name") // [MQTT-1.5.7-1]
		w.str("user property value")
	}
}

// appendProperties appends a v5 property list with its length.
func appendProperties(dst []byte, raw string) []byte {
	return append(appendVarint(dst, len(raw)), raw...)
}

// RawProperties is a validated MQTT 5 property list in wire order, without
// its length prefix, that aliases the packet it was decoded from: the
// zero-copy counterpart of Properties, used by Publish so that the relay
// decodes a PUBLISH without allocating. It is valid while the packet's
// bytes are; Copy makes an owned one.
type RawProperties []byte

// propEnd returns where the property starting at off ends, or -1 when r
// does not hold a whole known property there.
func (r RawProperties) propEnd(off int) int {
	if off >= len(r) {
		return -1
	}
	kind := propKindOf(PropertyID(r[off]))
	off++
	switch kind {
	case propKindByte:
		off++
	case propKindTwo:
		off += 2
	case propKindFour:
		off += 4
	case propKindVarint:
		_, n, err := decodeVarint(r[off:min(len(r), off+4)])
		if err != nil {
			return -1
		}
		off += n
	case propKindString, propKindBinary, propKindPair:
		fields := 1
		if kind == propKindPair {
			fields = 2
		}
		for range fields {
			if off+2 > len(r) {
				return -1
			}
			off += 2 + (int(r[off])<<8 | int(r[off+1]))
		}
	default:
		return -1
	}
	if off > len(r) {
		return -1
	}
	return off
}

// find returns where the first property id is, without allocating.
func (r RawProperties) find(id PropertyID) (start, end int, ok bool) {
	for off := 0; off < len(r); {
		end := r.propEnd(off)
		if end < 0 {
			return 0, 0, false
		}
		if PropertyID(r[off]) == id {
			return off, end, true
		}
		off = end
	}
	return 0, 0, false
}

// TopicAlias returns the Topic Alias property (0x23), without allocating.
func (r RawProperties) TopicAlias() (uint16, bool) {
	start, _, ok := r.find(PropTopicAlias)
	if !ok {
		return 0, false
	}
	return uint16(r[start+1])<<8 | uint16(r[start+2]), true
}

// Get returns the first property with the given id; a string value is
// copied.
func (r RawProperties) Get(id PropertyID) (Property, bool) {
	start, end, ok := r.find(id)
	if !ok {
		return Property{}, false
	}
	p, _ := readProperty(string(r[start:end]))
	return p, true
}

// Copy returns an owned copy of r.
func (r RawProperties) Copy() Properties { return Properties{raw: string(r)} }
