package packets

import "fmt"

// Ack is a decoded PUBACK, PUBREC, PUBREL or PUBCOMP packet.
type Ack struct {
	Type     Type // PUBACK, PUBREC, PUBREL or PUBCOMP
	PacketID uint16
	// Code is the MQTT 5 reason code: Success when the packet omits it
	// (remaining length 2), and always for 3.1/3.1.1, which have none.
	Code       ReasonCode
	Properties Properties // MQTT 5 only
}

// DecodeAck decodes and validates a whole PUBACK, PUBREC, PUBREL or PUBCOMP
// packet (the type byte says which) for a session of the given protocol
// level: flags 0000, or 0010 for PUBREL [MQTT-3.6.1-1]; a non-zero packet
// identifier [MQTT-2.2.1-5]; in 3.1/3.1.1 nothing after it; in 5 an
// optional reason code defined for the packet (3.4.2.1, 3.6.2.1) and
// optional properties. It allocates only for properties.
//
// MQTT 5 lets a sender write the same acknowledgement three ways (reason
// code and property length both omitted when the code is Success and there
// are no properties; property length omitted when there are none); all
// three are accepted. AppendAck writes the shortest.
func DecodeAck(pkt []byte, level Level) (Ack, error) {
	t := PUBACK // an empty packet is a truncated one
	if len(pkt) > 0 {
		t = Type(pkt[0] >> 4)
	}
	if t < PUBACK || t > PUBCOMP {
		return Ack{}, &Error{Code: ProtocolError, Msg: fmt.Sprintf("expected PUBACK, PUBREC, PUBREL or PUBCOMP, got %s", t)}
	}
	w, flags, err := openPacket(pkt, t)
	if err != nil {
		return Ack{}, err
	}
	w.checkFlags(flags)
	a := Ack{Type: t, PacketID: w.packetID()}
	// Remaining length 2: Success and no properties [MQTT-3.4.2.1]; 3: no
	// properties [MQTT-3.4.2.2.1].
	a.Code, a.Properties = w.reasonTail(level)
	if w.err != nil {
		return Ack{}, w.err
	}
	return a, nil
}

// reasonTail reads what may end an acknowledgement or a DISCONNECT: in
// MQTT 5, a reason code (Success when the packet ends before it) and
// properties (none when it ends before them); nothing more, else a
// malformed packet (3.4.1 to 3.7.1, 3.14.1: the section is the type).
func (w *wire) reasonTail(level Level) (ReasonCode, Properties) {
	var code ReasonCode
	var ps, pe int
	if level == V5 && w.err == nil && w.rest() > 0 {
		code = w.reasonCode("reason code")
		if w.rest() > 0 {
			ps, pe = w.properties(&propTable[w.what])
		}
	}
	if w.err == nil && w.rest() > 0 {
		w.fail(MalformedPacket, fmt.Sprintf("MQTT-3.%d.1", byte(w.what)), "has %d bytes after its variable header", w.rest())
	}
	if w.err != nil {
		return 0, nil
	}
	return code, ownProperties(w.b, ps, pe)
}

// AppendAck appends a PUBACK, PUBREC, PUBREL or PUBCOMP (t) with no
// properties; see AppendAckProperties.
func AppendAck(dst []byte, t Type, level Level, id uint16, code ReasonCode) []byte {
	return AppendAckProperties(dst, t, level, id, code, Properties{})
}

// AppendAckProperties appends a PUBACK, PUBREC, PUBREL or PUBCOMP (t) in its
// canonical, shortest form. For MQTT 3.1/3.1.1 that is the packet
// identifier alone: v3 acknowledgements carry no reason, so code and props
// are dropped (a v3 peer that must be refused is disconnected instead).
// For 5: the identifier alone when code is Success and there are no
// properties; identifier and code when there are no properties; else
// identifier, code and properties. The code is written as given. It panics
// if t is not an acknowledgement type.
func AppendAckProperties(dst []byte, t Type, level Level, id uint16, code ReasonCode, props Properties) []byte {
	first := byte(t) << 4
	switch t {
	case PUBACK, PUBREC, PUBCOMP:
	case PUBREL:
		first |= 0x02 // [MQTT-3.6.1-1]
	default:
		panic(fmt.Sprintf("packets: AppendAck of a %s", t))
	}
	switch {
	case level != V5 || code == Success && len(props) == 0:
		return append(dst, first, 2, byte(id>>8), byte(id))
	case len(props) == 0:
		return append(dst, first, 3, byte(id>>8), byte(id), byte(code))
	}
	dst = appendVarint(append(dst, first), 3+props.sizeWithLength())
	dst = append(dst, byte(id>>8), byte(id), byte(code))
	return appendProperties(dst, props)
}
