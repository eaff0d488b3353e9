package packets

import (
	"encoding/binary"
	"fmt"
)

// TopicSpan is where a PUBLISH's topic lies in its bytes, as SpanPublish
// reads it from the fixed header and the topic's length.
type TopicSpan struct {
	QoS        byte
	HeaderLen  int    // the fixed header's length
	Remaining  int    // the remaining length
	Start, End int    // the topic is b[Start:End]
	PacketID   uint16 // with QoS 1 and 2
}

// SpanPublish reads where the topic of a PUBLISH lies in b (the whole
// packet, or its first bytes: a large message's head) from its fixed
// header, the topic's length and, with QoS 1 and 2, the packet identifier
// behind it, without decoding or validating anything else: for a relay
// filter that moves the topics of packets another decodes and judges (or
// the broker will), at a fraction of DecodePublish's cost. The topic is
// first in the variable header at every level, so no level is needed. It
// returns ErrTruncated when b ends before the topic (or the packet
// identifier), and an *Error for a packet that is not a PUBLISH, has QoS
// 3, or whose topic runs past its remaining length.
func SpanPublish(b []byte) (TopicSpan, error) {
	h, err := ParseHeader(b)
	switch {
	case err == ErrTruncated:
		return TopicSpan{}, ErrTruncated
	case err != nil:
		return TopicSpan{}, &Error{Code: MalformedPacket, Rule: "MQTT-1.5.5-1", Msg: "PUBLISH remaining length: " + err.Error()}
	case h.Type != PUBLISH:
		return TopicSpan{}, &Error{Code: ProtocolError, Msg: "expected PUBLISH, got " + h.Type.String()}
	case h.Flags>>1&0x03 == 3:
		return TopicSpan{}, &Error{Code: MalformedPacket, Rule: "MQTT-3.3.1-4", Msg: "PUBLISH QoS is 3"}
	}
	s := TopicSpan{QoS: h.Flags >> 1 & 0x03, HeaderLen: h.HeaderLen, Remaining: h.RemainingLength, Start: h.HeaderLen + 2}
	need := s.Start
	if s.QoS > 0 {
		need += 2
	}
	if h.RemainingLength < need-h.HeaderLen {
		return TopicSpan{}, &Error{Code: MalformedPacket, Msg: "PUBLISH shorter than its topic length"}
	}
	if len(b) < s.Start {
		return TopicSpan{}, ErrTruncated
	}
	s.End = s.Start + int(binary.BigEndian.Uint16(b[h.HeaderLen:]))
	if s.End-h.HeaderLen > h.RemainingLength || s.QoS > 0 && s.End+2-h.HeaderLen > h.RemainingLength {
		return TopicSpan{}, &Error{Code: MalformedPacket, Msg: fmt.Sprintf("PUBLISH topic of %d bytes runs past the packet", s.End-s.Start)}
	}
	if s.QoS > 0 {
		if len(b) < s.End+2 {
			return TopicSpan{}, ErrTruncated
		}
		s.PacketID = binary.BigEndian.Uint16(b[s.End:])
	} else if len(b) < s.End {
		return TopicSpan{}, ErrTruncated
	}
	return s, nil
}

// AppendRetopic appends the PUBLISH b (whole, or its head: the rest of
// the packet follows it) with topic in place of its own, s being
// SpanPublish(b): the remaining length follows the new topic; every other
// byte is b's, as many as b holds. It returns ErrFieldTooLong for a topic
// over 65,535 bytes or a packet over MaxRemainingLength.
func AppendRetopic(dst, b []byte, s TopicSpan, topic []byte) ([]byte, error) {
	rl := s.Remaining - (s.End - s.Start) + len(topic)
	if len(topic) > 0xFFFF || rl > MaxRemainingLength {
		return dst, ErrFieldTooLong
	}
	dst = appendVarint(append(dst, b[0]), rl)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(topic)))
	dst = append(dst, topic...)
	return append(dst, b[s.End:]...), nil
}
