package packets

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
	// Remaining length 0: normal disconnection [MQTT-3.14.2.1]; 1: no
	// properties [MQTT-3.14.2.2.1].
	d.Code, d.Properties = w.reasonTail(level)
	if w.err != nil {
		return Disconnect{}, w.err
	}
	return d, nil
}

// AppendDisconnectProperties appends a DISCONNECT in its shortest form, as
// AppendDisconnect does, with properties (MQTT 5 only; a v3 DISCONNECT has
// no body).
func AppendDisconnectProperties(dst []byte, level Level, code ReasonCode, props Properties) []byte {
	if level != V5 || len(props) == 0 {
		return AppendDisconnect(dst, level, code)
	}
	dst = appendVarint(append(dst, byte(DISCONNECT)<<4), 1+props.sizeWithLength())
	dst = append(dst, byte(code))
	return appendProperties(dst, props)
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
