package packets

// PublishShape is what a relay needs to count a PUBLISH against a rate
// or a quota: its QoS, its retain flag and its payload's size.
type PublishShape struct {
	QoS        byte
	Retain     bool
	PayloadLen int
}

// PeekPublish reads the shape of pkt, a whole PUBLISH, from its fixed
// header and the lengths in its variable header, without decoding (or
// validating) the topic and the properties: for a relay filter that
// counts a PUBLISH another one has decoded and judged (or that the broker
// will), at a fraction of DecodePublish's cost. It returns ErrTruncated
// when the lengths do not fit in the packet, and an *Error for a packet
// that is not a PUBLISH or whose QoS is 3.
func PeekPublish(pkt []byte, level Level) (PublishShape, error) {
	h, err := ParseHeader(pkt)
	switch {
	case err != nil:
		return PublishShape{}, err
	case h.Type != PUBLISH:
		return PublishShape{}, &Error{Code: ProtocolError, Msg: "expected PUBLISH, got " + h.Type.String()}
	case h.Size() > len(pkt):
		return PublishShape{}, ErrTruncated
	}
	s := PublishShape{QoS: h.Flags >> 1 & 0x03, Retain: h.Flags&0x01 != 0}
	if s.QoS == 3 {
		return PublishShape{}, &Error{Code: MalformedPacket, Rule: "MQTT-3.3.1-4", Msg: "PUBLISH QoS is 3"}
	}
	off, end := h.HeaderLen, h.Size()
	if off+2 > end {
		return PublishShape{}, ErrTruncated
	}
	off += 2 + (int(pkt[off])<<8 | int(pkt[off+1])) // the topic
	if s.QoS > 0 {
		off += 2 // the packet identifier
	}
	if level == V5 && off < end {
		n, used, err := decodeVarint(pkt[off:min(end, off+4)])
		if err != nil {
			return PublishShape{}, ErrTruncated
		}
		off += used + n // the properties
	} else if level == V5 {
		return PublishShape{}, ErrTruncated
	}
	if off > end {
		return PublishShape{}, ErrTruncated
	}
	s.PayloadLen = end - off
	return s, nil
}
