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
	var ps, pe int
	if level == V5 && w.err == nil && w.rest() > 0 {
		// Remaining length 2: Success and no properties [MQTT-3.4.2.1].
		a.Code = w.reasonCode("reason code")
		if w.rest() > 0 {
			// Remaining length 3: no properties [MQTT-3.4.2.2.1].
			ps, pe = w.properties()
		}
	}
	if w.err == nil && w.rest() > 0 {
		w.fail(MalformedPacket, fmt.Sprintf("MQTT-3.%d.1", t), "has %d bytes after its variable header", w.rest())
	}
	if w.err != nil {
		return Ack{}, w.err
	}
	if pe > ps {
		a.Properties = Properties{raw: string(pkt[ps:pe])}
	}
	return a, nil
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
	case level != V5 || code == Success && props.size() == 0:
		return append(dst, first, 2, byte(id>>8), byte(id))
	case props.size() == 0:
		return append(dst, first, 3, byte(id>>8), byte(id), byte(code))
	}
	dst = appendVarint(append(dst, first), 3+varintLen(props.size())+props.size())
	dst = append(dst, byte(id>>8), byte(id), byte(code))
	return appendProperties(dst, props.raw)
}

// Disconnect is a decoded DISCONNECT packet.
type Disconnect struct {
	// Code is the MQTT 5 reason code: NormalDisconnection when the packet
	// omits it (remaining length 0), and always for 3.1/3.1.1.
	Code       ReasonCode
	Properties Properties // MQTT 5 only
}

// DecodeDisconnect decodes and validates a whole DISCONNECT packet for a
// session of the given protocol level: flags 0000 [MQTT-2.1.3-1]
// ([MQTT-3.14.1-1] in 3.1.1); in 3.1/3.1.1 no body; in 5 an optional reason
// code from Table 2-6 and optional properties (3.14.2). It accepts the
// codes of both directions; that the client sent one the server is meant
// to send, or a Session Expiry Interval after a CONNECT with none
// (3.14.2.2.2), is the caller's to judge. It allocates only for
// properties.
func DecodeDisconnect(pkt []byte, level Level) (Disconnect, error) {
	w, flags, err := openPacket(pkt, DISCONNECT)
	if err != nil {
		return Disconnect{}, err
	}
	w.checkFlags(flags)
	var d Disconnect
	var ps, pe int
	if level == V5 && w.err == nil && w.rest() > 0 {
		// Remaining length 0: normal disconnection [MQTT-3.14.2.1].
		d.Code = w.reasonCode("reason code")
		if w.rest() > 0 {
			// Remaining length 1: no properties [MQTT-3.14.2.2.1].
			ps, pe = w.properties()
		}
	}
	if w.err == nil && w.rest() > 0 {
		w.fail(MalformedPacket, "MQTT-3.14.1", "has %d bytes after its variable header", w.rest())
	}
	if w.err != nil {
		return Disconnect{}, w.err
	}
	if pe > ps {
		d.Properties = Properties{raw: string(pkt[ps:pe])}
	}
	return d, nil
}

// AppendDisconnectProperties appends a DISCONNECT in its shortest form, as
// AppendDisconnect does, with properties (MQTT 5 only; a v3 DISCONNECT has
// no body).
func AppendDisconnectProperties(dst []byte, level Level, code ReasonCode, props Properties) []byte {
	if level != V5 || props.size() == 0 {
		return AppendDisconnect(dst, level, code)
	}
	dst = appendVarint(append(dst, byte(DISCONNECT)<<4), 1+varintLen(props.size())+props.size())
	dst = append(dst, byte(code))
	return appendProperties(dst, props.raw)
}
