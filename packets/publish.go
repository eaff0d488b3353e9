package packets

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Publish is a decoded PUBLISH packet. It is a view: Topic, Properties and
// Payload alias the packet given to DecodePublish (each with its capacity
// cut at its end), so decoding allocates nothing and the Publish is valid
// while those bytes are unchanged. Copy what must outlive them.
type Publish struct {
	Dup      bool
	QoS      byte // 0, 1 or 2
	Retain   bool
	Topic    []byte // topic name; empty in MQTT 5 when a Topic Alias stands for it
	PacketID uint16 // non-zero when QoS > 0, else 0
	// Properties are the MQTT 5 properties in wire order.
	Properties Properties
	Payload    []byte
}

// TopicAlias returns the Topic Alias property (0x23) of an MQTT 5 PUBLISH.
// Tracking aliases is the caller's business: packets checks only that an
// alias is not 0.
func (p *Publish) TopicAlias() (uint16, bool) { return p.Properties.TopicAlias() }

// DecodePublish decodes and validates a whole PUBLISH packet, fixed header
// included, for a session of the given protocol level (V5 or not). It does
// not allocate unless it fails.
//
// A returned error is an *Error whose Code is how an MQTT 5 peer is told:
// MalformedPacket, ProtocolError, TopicNameInvalid (a wildcard in the topic
// name) or TopicAliasInvalid (alias 0); in MQTT 3.1/3.1.1 each means
// closing the connection. What needs session state is left to the caller:
// an alias above the Topic Alias Maximum [MQTT-3.3.2-9], an empty topic
// with an alias never set, a Subscription Identifier in a PUBLISH from a
// client [MQTT-3.3.4-6], a payload that is not UTF-8 despite Payload
// Format Indicator 1 (3.3.2.3.2: a receiver may check it).
func DecodePublish(pkt []byte, level Level) (Publish, error) {
	var p Publish
	if err := p.decode(pkt, level); err != nil {
		return Publish{}, err
	}
	return p, nil
}

func (p *Publish) decode(pkt []byte, level Level) *Error {
	w, flags, err := openPacket(pkt, PUBLISH)
	if err != nil {
		return err
	}
	if err := p.decodeHeaders(&w, flags, level); err != nil {
		return err
	}
	p.Payload = view(pkt, w.off, len(pkt))
	return nil
}

// DecodePublishHead decodes a PUBLISH from head, its first bytes, for a
// packet that may continue past them (a large message relayed as it
// streams in): the fixed header, the variable header and as much of the
// payload as head holds (Payload; PayloadLen is the whole payload's
// length). It returns ErrTruncated when head ends inside the headers,
// and otherwise validates what DecodePublish validates, but the payload.
func DecodePublishHead(head []byte, level Level) (p Publish, payloadLen int, err error) {
	h, herr := ParseHeader(head)
	switch {
	case herr == ErrTruncated:
		return Publish{}, 0, ErrTruncated
	case herr != nil:
		return Publish{}, 0, &Error{Code: MalformedPacket, Rule: "MQTT-1.5.5-1", Msg: "PUBLISH remaining length: " + herr.Error()}
	case h.Type != PUBLISH:
		return Publish{}, 0, &Error{Code: ProtocolError, Msg: fmt.Sprintf("expected PUBLISH, got %s", h.Type)}
	}
	head = head[:min(len(head), h.Size())]
	w := wire{b: head, off: h.HeaderLen, what: PUBLISH, partial: len(head) < h.Size()}
	if e := p.decodeHeaders(&w, h.Flags, level); e != nil {
		if w.short {
			return Publish{}, 0, ErrTruncated
		}
		return Publish{}, 0, e
	}
	p.Payload = view(head, w.off, len(head))
	return p, h.Size() - w.off, nil
}

// decodeHeaders reads the flags and the variable header, leaving w at
// the payload, and checks the topic.
func (p *Publish) decodeHeaders(w *wire, flags byte, level Level) *Error {
	p.Dup, p.QoS, p.Retain = flags&0x08 != 0, flags>>1&0x03, flags&0x01 != 0
	switch {
	case p.QoS == 3:
		// Both QoS bits set: a malformed packet [MQTT-3.3.1-4].
		return &Error{Code: MalformedPacket, Rule: "MQTT-3.3.1-4", Msg: "PUBLISH QoS is 3"}
	case p.Dup && p.QoS == 0:
		// DUP must be 0 for QoS 0 [MQTT-3.3.1-2].
		return &Error{Code: MalformedPacket, Rule: "MQTT-3.3.1-2", Msg: "PUBLISH DUP set with QoS 0"}
	}

	// Variable header: topic name, packet identifier (QoS > 0),
	// properties (v5) [MQTT-3.3.2].
	ts, te := w.str("topic name") // [MQTT-3.3.2-1]
	if p.QoS > 0 {
		p.PacketID = w.packetID() // non-zero [MQTT-2.2.1-3]
	}
	var ps, pe int
	if level == V5 {
		ps, pe = w.properties(&propTable[PUBLISH])
	}
	if w.err != nil {
		return w.err
	}
	p.Topic = view(w.b, ts, te)
	p.Properties = Properties(view(w.b, ps, pe))

	switch {
	case len(p.Topic) == 0 && level != V5:
		// Topic names are at least one character long [MQTT-4.7.3-1].
		return &Error{Code: ProtocolError, Rule: "MQTT-4.7.3-1", Msg: "PUBLISH topic name is empty"}
	case len(p.Topic) == 0:
		// v5: an empty topic name needs a Topic Alias [MQTT-3.3.2.1].
		if _, ok := p.Properties.TopicAlias(); !ok {
			return &Error{Code: ProtocolError, Rule: "MQTT-3.3.2.1", Msg: "PUBLISH topic name is empty and there is no topic alias"}
		}
	case bytes.ContainsAny(p.Topic, "+#"):
		// No wildcards in a topic name [MQTT-3.3.2-2], [MQTT-4.7.0-1]
		// ([MQTT-4.7.1-1] in 3.1.1).
		return &Error{Code: TopicNameInvalid, Rule: "MQTT-3.3.2-2", Msg: "PUBLISH topic name contains a wildcard"}
	}
	return nil
}

// AppendPublish appends the wire encoding of p for a session of the given
// protocol level. The flags come from the fields, the packet identifier is
// written when QoS > 0, the properties (as held) only for V5, and every
// length is minimal, so AppendPublish of a decoded PUBLISH reproduces its
// bytes exactly. It checks lengths only (ErrFieldTooLong), not the rules
// DecodePublish enforces.
func AppendPublish(dst []byte, level Level, p *Publish) ([]byte, error) {
	dst, err := AppendPublishHead(dst, level, p, len(p.Payload))
	if err != nil {
		return dst, err
	}
	return append(dst, p.Payload...), nil
}

// AppendPublishHead appends the fixed and variable headers of p for a
// payload of payloadLen bytes that the caller sends behind them (p.Payload
// is not written): the head of a large message rewritten while its
// payload streams through.
func AppendPublishHead(dst []byte, level Level, p *Publish, payloadLen int) ([]byte, error) {
	if len(p.Topic) > 0xFFFF {
		return dst, ErrFieldTooLong
	}
	qos := p.QoS & 0x03
	rl := 2 + len(p.Topic) + payloadLen
	if qos > 0 {
		rl += 2
	}
	if level == V5 {
		rl += p.Properties.sizeWithLength()
	}
	if rl > MaxRemainingLength {
		return dst, ErrFieldTooLong
	}
	first := byte(PUBLISH)<<4 | qos<<1
	if p.Dup {
		first |= 0x08
	}
	if p.Retain {
		first |= 0x01
	}
	dst = appendVarint(append(dst, first), rl)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(p.Topic)))
	dst = append(dst, p.Topic...)
	if qos > 0 {
		dst = binary.BigEndian.AppendUint16(dst, p.PacketID)
	}
	if level == V5 {
		dst = appendProperties(dst, p.Properties)
	}
	return dst, nil
}
