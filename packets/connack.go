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
	rl := 2 + varintLen(props.size()) + props.size()
	dst = append(dst, byte(CONNACK)<<4)
	dst = appendVarint(dst, rl)
	dst = append(dst, sp, byte(code))
	dst = appendVarint(dst, props.size())
	return append(dst, props.raw...), true
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
	d := decoder{s: string(pkt[h.HeaderLen:])}
	flags := d.u8("acknowledge flags")
	var ack Connack
	ack.Code = d.u8("return code")
	if level == V5 && d.off < len(d.s) {
		ack.Properties = d.properties("CONNACK", propMaskAllowAllKnownForReplies)
	}
	if d.err != nil {
		return Connack{}, d.err
	}
	if flags&^1 != 0 {
		return Connack{}, &Error{Code: MalformedPacket, Rule: "MQTT-3.2.2-1", Msg: "reserved CONNACK flags set"}
	}
	if d.off != len(d.s) {
		return Connack{}, &Error{Code: MalformedPacket, Msg: "trailing bytes after CONNACK"}
	}
	ack.SessionPresent = flags&1 != 0
	return ack, nil
}

// AppendDisconnect appends a DISCONNECT. For MQTT 5 it carries the reason
// code [MQTT-3.14.2.1] (omitted when it is Success, which the spec allows);
// for 3.1/3.1.1 a DISCONNECT has no body and servers do not send one, so
// callers normally just close a v3 connection.
func AppendDisconnect(dst []byte, level Level, code ReasonCode) []byte {
	if level != V5 || code == Success {
		return append(dst, byte(DISCONNECT)<<4, 0)
	}
	return append(dst, byte(DISCONNECT)<<4, 1, byte(code))
}
