package packets

import "fmt"

// Connack is a decoded CONNACK packet.
type Connack struct {
	SessionPresent bool
	// Code is the return code (3.1/3.1.1: 0x00..0x05) or the reason code (5)
	// exactly as on the wire.
	Code       byte
	Properties Properties // MQTT 5 only
}

// Accepted reports whether the broker accepted the connection.
func (c Connack) Accepted() bool { return c.Code == 0 }

// AppendConnack appends a CONNACK for a client of the given protocol level.
// For MQTT 3.1/3.1.1 the reason is mapped through ReasonCode.V3; ok is false
// (and nothing is appended) when v3 has no CONNACK for that reason, in which
// case the connection is to be closed without one. Session present is only
// set for an accepted connection [MQTT-3.2.2-4].
func AppendConnack(dst []byte, level Level, sessionPresent bool, code ReasonCode, props Properties) (out []byte, ok bool) {
	var sp byte
	if sessionPresent && code == Success {
		sp = 1
	}
	if level != V5 {
		rc, ok := code.V3()
		if !ok {
			return dst, false
		}
		return append(dst, byte(CONNACK)<<4, 2, sp, rc), true
	}
	rl := 2 + props.sizeWithLength()
	dst = append(dst, byte(CONNACK)<<4)
	dst = appendVarint(dst, rl)
	dst = append(dst, sp, byte(code))
	return appendProperties(dst, props), true
}

// DecodeConnack decodes a whole CONNACK packet from a broker for a session
// of the given protocol level.
func DecodeConnack(pkt []byte, level Level) (Connack, error) {
	h, err := ParseHeader(pkt)
	switch {
	case err != nil:
		return Connack{}, fmt.Errorf("packets: CONNACK: %w", err)
	case h.Type != CONNACK:
		return Connack{}, &Error{Code: ProtocolError, Msg: fmt.Sprintf("expected CONNACK, got %s", h.Type)}
	case h.Size() != len(pkt):
		return Connack{}, &Error{Code: MalformedPacket, Msg: fmt.Sprintf("CONNACK is %d bytes, header says %d", len(pkt), h.Size())}
	}
	w := wire{b: pkt, off: h.HeaderLen, what: CONNACK}
	flags := w.u8("acknowledge flags")
	var ack Connack
	ack.Code = w.u8("return code")
	var ps, pe int
	if level == V5 && w.err == nil && w.rest() > 0 {
		ps, pe = w.properties(&propTable[CONNACK])
	}
	if w.err != nil {
		return Connack{}, w.err
	}
	if flags&^1 != 0 {
		return Connack{}, &Error{Code: MalformedPacket, Rule: "MQTT-3.2.2-1", Msg: "reserved CONNACK flags set"}
	}
	if w.rest() != 0 {
		return Connack{}, &Error{Code: MalformedPacket, Msg: "trailing bytes after CONNACK"}
	}
	ack.SessionPresent = flags&1 != 0
	ack.Properties = ownProperties(pkt, ps, pe)
	return ack, nil
}
