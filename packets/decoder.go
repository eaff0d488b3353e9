package packets

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf8"
)

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

// decoder reads fields from s at off. The first failure is kept in err and
// every later read returns zero values, so callers check err once per step.
type decoder struct {
	s    string
	off  int
	err  *Error
	prop PropertyID // property being read, for error messages
}

func (d *decoder) fail(code ReasonCode, rule, format string, args ...any) {
	if d.err != nil {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if d.prop != 0 {
		msg = fmt.Sprintf("property 0x%02X: %s", byte(d.prop), msg)
	}
	d.err = &Error{Code: code, Rule: rule, Msg: msg}
}

func (d *decoder) need(n int, field string) bool {
	if d.err != nil {
		return false
	}
	if n > len(d.s)-d.off {
		d.fail(MalformedPacket, "", "%s: truncated", field)
		return false
	}
	return true
}

func (d *decoder) u8(field string) byte {
	if !d.need(1, field) {
		return 0
	}
	d.off++
	return d.s[d.off-1]
}

func (d *decoder) u16(field string) uint16 {
	if !d.need(2, field) {
		return 0
	}
	d.off += 2
	return uint16(d.s[d.off-2])<<8 | uint16(d.s[d.off-1])
}

func (d *decoder) u32(field string) uint32 {
	if !d.need(4, field) {
		return 0
	}
	d.off += 4
	b := d.s[d.off-4 : d.off]
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func (d *decoder) varint(field string) int {
	if d.err != nil {
		return 0
	}
	end := min(len(d.s), d.off+4)
	v, n, err := decodeVarint([]byte(d.s[d.off:end]))
	if err != nil {
		d.fail(MalformedPacket, "MQTT-1.5.5-1", "%s: malformed variable byte integer", field)
		return 0
	}
	d.off += n
	return v
}

// bin reads two-byte-length-prefixed binary data [MQTT-1.5.6].
func (d *decoder) bin(field string) string {
	n := int(d.u16(field))
	if !d.need(n, field) {
		return ""
	}
	d.off += n
	return d.s[d.off-n : d.off]
}

// str reads a UTF-8 encoded string: well-formed, no surrogates, no U+0000
// [MQTT-1.5.3-1], [MQTT-1.5.3-2] (3.1.1); [MQTT-1.5.4-1], [MQTT-1.5.4-2] (5).
func (d *decoder) str(field string) string {
	v := d.bin(field)
	if d.err != nil {
		return ""
	}
	if !utf8.ValidString(v) {
		d.fail(MalformedPacket, "MQTT-1.5.4-1", "%s is not well-formed UTF-8", field)
		return ""
	}
	if strings.IndexByte(v, 0) >= 0 {
		d.fail(MalformedPacket, "MQTT-1.5.4-2", "%s contains U+0000", field)
		return ""
	}
	return v
}

// topicName checks a topic name (not a filter): at least one character
// [MQTT-4.7.3-1] and no wildcard characters [MQTT-3.3.2-2].
func (d *decoder) topicName(field, v string) {
	switch {
	case v == "":
		d.fail(ProtocolError, "MQTT-4.7.3-1", "%s is empty", field)
	case strings.ContainsAny(v, "+#"):
		d.fail(ProtocolError, "MQTT-3.3.2-2", "%s %q contains a wildcard", field, v)
	}
}

func appendString(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}
