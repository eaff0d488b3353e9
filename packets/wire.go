package packets

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// This file is the one reader of packet fields. wire reads the caller's
// bytes in place: offsets into the packet, a bounds check before every
// field, and no allocation unless something fails. Each decoder then
// decides what its result owns: Publish is a view of the packet (the relay
// decodes one per message); the rest copy out the little they keep, once.

// Error is a decoding or validation failure. Code is the MQTT 5 reason code
// a server answers it with (MalformedPacket, ProtocolError,
// UnsupportedProtocolVersion, ClientIdentifierNotValid; after CONNECT also
// TopicNameInvalid, TopicAliasInvalid, and TopicFilterInvalid for one
// filter); for MQTT 3.1/3.1.1, Code.V3 says whether a CONNACK is due or the
// connection is just closed.
// Rule names the normative statement of the specification that was broken.
type Error struct {
	Code ReasonCode
	Rule string
	Msg  string
}

func (e *Error) Error() string {
	if e.Rule != "" {
		return fmt.Sprintf("packets: %s [%s]", e.Msg, e.Rule)
	}
	return "packets: " + e.Msg
}

// Unwrap lets errors.Is(err, packets.MalformedPacket) and the like match.
func (e *Error) Unwrap() error { return e.Code }

// wire reads the fields of one whole packet (or property list) b from
// off. The first failure is kept in err and every later read returns zero
// values, so callers check err once per step.
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
	if w.err != nil || n > len(w.b)-w.off {
		w.truncated(field)
		return false
	}
	return true
}

// truncated fails on field running past the bytes, unless w failed
// before.
func (w *wire) truncated(field string) {
	if w.err == nil {
		w.short = w.partial
		w.fail(MalformedPacket, "", "%s: truncated", field)
	}
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
		w.truncated(field)
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

// str reads a UTF-8 encoded string [MQTT-1.5.4] (see utf8).
func (w *wire) str(field string) (start, end int) {
	start, end = w.bin(field)
	w.utf8(field, start, end)
	return start, end
}

// utf8 checks that b[start:end] is a UTF-8 encoded string: well-formed,
// no surrogates [MQTT-1.5.4-1] ([MQTT-1.5.3-1] in 3.1.1), no U+0000
// [MQTT-1.5.4-2] ([MQTT-1.5.3-2]). Either is a malformed packet.
func (w *wire) utf8(field string, start, end int) {
	if v := w.b[start:end]; !utf8.Valid(v) || bytes.IndexByte(v, 0) >= 0 {
		w.badUTF8(field, v)
	}
}

// badUTF8 fails on v, a string that is not UTF-8.
func (w *wire) badUTF8(field string, v []byte) {
	if !utf8.Valid(v) {
		w.fail(MalformedPacket, "MQTT-1.5.4-1", "%s is not well-formed UTF-8", field)
	} else {
		w.fail(MalformedPacket, "MQTT-1.5.4-2", "%s contains U+0000", field)
	}
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

func appendString(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}
