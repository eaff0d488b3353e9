package packets

import (
	"encoding/binary"
	"fmt"
)

// Suback is a decoded SUBACK packet. It owns its data.
type Suback struct {
	PacketID   uint16
	Properties Properties   // MQTT 5 only
	Codes      []ReasonCode // one per filter of the SUBSCRIBE, in order [MQTT-3.9.3-1]
}

// DecodeSuback decodes and validates a whole SUBACK packet for a session of
// the given protocol level. The return codes allowed are, in MQTT 3.1, the
// granted QoS 0x00..0x02 only (3.1 has no failure code); in 3.1.1 those
// and 0x80 [MQTT-3.9.3-2]; in 5 the SUBACK reason codes (Table 3-8).
// Another code, or none at all, is a protocol error. It allocates the code
// list, and the properties when there are some.
func DecodeSuback(pkt []byte, level Level) (Suback, error) {
	w, flags, err := openPacket(pkt, SUBACK)
	if err != nil {
		return Suback{}, err
	}
	w.checkFlags(flags)
	id := w.packetID()
	var ps, pe int
	if level == V5 {
		ps, pe = w.properties(&propTable[SUBACK])
	}
	if w.err != nil {
		return Suback{}, w.err
	}
	codes := w.b[w.off:]
	if len(codes) == 0 {
		// One code per filter [MQTT-3.8.4-6] ([MQTT-3.8.4-5] in 3.1.1),
		// and a SUBSCRIBE has at least one.
		return Suback{}, &Error{Code: ProtocolError, Rule: "MQTT-3.8.4-6", Msg: "SUBACK has no reason code"}
	}
	s := Suback{PacketID: id, Codes: make([]ReasonCode, len(codes))}
	for i, c := range codes {
		if rule := subackCodeRule(level, ReasonCode(c)); rule != "" {
			return Suback{}, &Error{Code: ProtocolError, Rule: rule, Msg: fmt.Sprintf("SUBACK code %d is 0x%02X, not defined in MQTT %s", i, c, level)}
		}
		s.Codes[i] = ReasonCode(c)
	}
	s.Properties = ownProperties(pkt, ps, pe)
	return s, nil
}

// subackCodeRule returns the rule a SUBACK code breaks at level, or "".
func subackCodeRule(level Level, c ReasonCode) string {
	switch {
	case c <= GrantedQoS2:
		return ""
	case level == V5:
		if c.ValidFor(SUBACK) {
			return ""
		}
		return "MQTT-3.9.3"
	case level == V311:
		if c == 0x80 {
			return ""
		}
		return "MQTT-3.9.3-2"
	}
	return "MQTT-3.1 3.9" // 3.1: granted QoS only
}

// AppendSuback appends a SUBACK for a session of the given protocol level,
// with one code per filter of the SUBACK's SUBSCRIBE. The codes are MQTT 5
// reason codes; for other levels they are mapped: the granted QoS
// 0x00..0x02 are the same everywhere, and in 3.1.1 every failure (0x80 and
// above) is written as 0x80. MQTT 3.1 has no failure return code (0x80 came
// with 3.1.1), so for 3.1 a failure code returns ErrCodeNotAllowed and
// appends nothing: the caller chooses what a 3.1 client gets instead
// (closing the connection, or granting a QoS and not subscribing, as
// mosquitto does). A v5 code that SUBACK cannot carry is ErrCodeNotAllowed
// too, an empty list ErrNoFilters. Properties are written for V5 only.
func AppendSuback(dst []byte, level Level, id uint16, props Properties, codes []ReasonCode) ([]byte, error) {
	if len(codes) == 0 {
		return dst, ErrNoFilters
	}
	for _, c := range codes {
		switch {
		case c <= GrantedQoS2:
		case level == V5 && !c.ValidFor(SUBACK), level == V31, level != V5 && c < 0x80:
			return dst, fmt.Errorf("%w: SUBACK %v in MQTT %s", ErrCodeNotAllowed, c, level)
		}
	}
	rl := 2 + len(codes)
	if level == V5 {
		rl += props.sizeWithLength()
	}
	if rl > MaxRemainingLength {
		return dst, ErrFieldTooLong
	}
	dst = appendVarint(append(dst, byte(SUBACK)<<4), rl)
	dst = binary.BigEndian.AppendUint16(dst, id)
	if level == V5 {
		dst = appendProperties(dst, props)
	}
	for _, c := range codes {
		if level != V5 && c >= 0x80 {
			c = 0x80
		}
		dst = append(dst, byte(c))
	}
	return dst, nil
}

// Unsuback is a decoded UNSUBACK packet. It owns its data.
type Unsuback struct {
	PacketID   uint16
	Properties Properties   // MQTT 5 only
	Codes      []ReasonCode // MQTT 5 only: one per filter of the UNSUBSCRIBE
}

// DecodeUnsuback decodes and validates a whole UNSUBACK packet for a
// session of the given protocol level. In MQTT 3.1/3.1.1 it is a packet
// identifier and nothing else (remaining length 2); in 5 the identifier,
// properties and at least one reason code from Table 3-9.
func DecodeUnsuback(pkt []byte, level Level) (Unsuback, error) {
	w, flags, err := openPacket(pkt, UNSUBACK)
	if err != nil {
		return Unsuback{}, err
	}
	w.checkFlags(flags)
	u := Unsuback{PacketID: w.packetID()}
	if level != V5 {
		if w.err == nil && w.rest() != 0 {
			w.fail(MalformedPacket, "MQTT-3.11.1", "has %d bytes after the packet identifier", w.rest())
		}
		if w.err != nil {
			return Unsuback{}, w.err
		}
		return u, nil
	}
	ps, pe := w.properties(&propTable[UNSUBACK])
	if w.err != nil {
		return Unsuback{}, w.err
	}
	codes := w.b[w.off:]
	if len(codes) == 0 {
		// One code per filter of the UNSUBSCRIBE [MQTT-3.11.3].
		return Unsuback{}, &Error{Code: ProtocolError, Rule: "MQTT-3.11.3", Msg: "UNSUBACK has no reason code"}
	}
	u.Codes = make([]ReasonCode, len(codes))
	for i, c := range codes {
		if !ReasonCode(c).ValidFor(UNSUBACK) {
			return Unsuback{}, &Error{Code: ProtocolError, Rule: "MQTT-3.11.3", Msg: fmt.Sprintf("UNSUBACK code %d is 0x%02X, not an UNSUBACK reason code", i, c)}
		}
		u.Codes[i] = ReasonCode(c)
	}
	u.Properties = ownProperties(pkt, ps, pe)
	return u, nil
}

// AppendUnsuback appends an UNSUBACK. For MQTT 3.1/3.1.1 only the packet
// identifier is written (v3 has no properties or codes; they are dropped);
// for 5 the properties and codes, which must be UNSUBACK codes
// (ErrCodeNotAllowed) and at least one (ErrNoFilters).
func AppendUnsuback(dst []byte, level Level, id uint16, props Properties, codes []ReasonCode) ([]byte, error) {
	if level != V5 {
		return append(dst, byte(UNSUBACK)<<4, 2, byte(id>>8), byte(id)), nil
	}
	if len(codes) == 0 {
		return dst, ErrNoFilters
	}
	for _, c := range codes {
		if !c.ValidFor(UNSUBACK) {
			return dst, fmt.Errorf("%w: UNSUBACK %v", ErrCodeNotAllowed, c)
		}
	}
	rl := 2 + props.sizeWithLength() + len(codes)
	if rl > MaxRemainingLength {
		return dst, ErrFieldTooLong
	}
	dst = appendVarint(append(dst, byte(UNSUBACK)<<4), rl)
	dst = binary.BigEndian.AppendUint16(dst, id)
	dst = appendProperties(dst, props)
	for _, c := range codes {
		dst = append(dst, byte(c))
	}
	return dst, nil
}
