package packets

import (
	"bytes"
	"encoding/binary"
	"errors"
)

// Encoding errors of the packets after CONNECT (see also ErrFieldTooLong).
var (
	// ErrNoFilters: a SUBSCRIBE, UNSUBSCRIBE, SUBACK or v5 UNSUBACK needs
	// at least one topic filter or reason code [MQTT-3.8.3-2],
	// [MQTT-3.10.3-2]. A proxy that allows none of a SUBSCRIBE's filters
	// answers it itself instead of forwarding an empty one.
	ErrNoFilters = errors.New("packets: no topic filter or reason code to encode")
	// ErrCodeNotAllowed: the reason code has no encoding in that packet at
	// that protocol level (a SUBACK failure in MQTT 3.1, say).
	ErrCodeNotAllowed = errors.New("packets: reason code not allowed in this packet at this protocol level")
)

// SubscribeOptions is a SUBSCRIBE's options byte for one filter, as on the
// wire [MQTT-3.8.3.1]. MQTT 3.1/3.1.1 use only the QoS bits.
type SubscribeOptions byte

// QoS is the maximum QoS requested (bits 0-1).
func (o SubscribeOptions) QoS() byte { return byte(o) & 0x03 }

// NoLocal: do not send the client its own publications (bit 2, v5).
func (o SubscribeOptions) NoLocal() bool { return o&0x04 != 0 }

// RetainAsPublished: keep the RETAIN flag when forwarding (bit 3, v5).
func (o SubscribeOptions) RetainAsPublished() bool { return o&0x08 != 0 }

// RetainHandling: 0 send retained messages, 1 only for a new subscription,
// 2 never (bits 4-5, v5).
func (o SubscribeOptions) RetainHandling() byte { return byte(o) >> 4 & 0x03 }

// SubscribeFilter is one topic filter of a SUBSCRIBE with its options.
//
// Err is the filter's validity, decided per filter rather than for the
// whole packet: nil when the filter is well formed, else an *Error with
// Code TopicFilterInvalid naming the filter's index and the rule broken
// (empty, misplaced wildcard, malformed $share). A proxy answers such a
// filter with a failure in its place in the SUBACK (v5 0x8F, 3.1.1 0x80)
// and forwards the others. What makes the packet unreadable (truncation,
// bad UTF-8, reserved option bits) fails the whole decode instead.
type SubscribeFilter struct {
	Filter  string
	Options SubscribeOptions
	Err     *Error
}

// Subscribe is a decoded SUBSCRIBE packet. Its filters share one copy of
// the packet's, its properties are a copy of their own: it stays valid
// after the caller reuses the packet's buffer.
type Subscribe struct {
	PacketID   uint16
	Properties Properties // MQTT 5 only
	Filters    []SubscribeFilter
}

// DecodeSubscribe decodes and validates a whole SUBSCRIBE packet for a
// session of the given protocol level. It makes two allocations (one copy
// of the filters, the filter list), a third for MQTT 5 properties when
// there are some, and one *Error per invalid filter.
//
// A returned error is an *Error with Code MalformedPacket or ProtocolError
// (v5: DISCONNECT with that code; v3: close). A filter that is merely
// invalid does not fail the decode: see SubscribeFilter.Err.
func DecodeSubscribe(pkt []byte, level Level) (Subscribe, error) {
	f, err := decodeFilters(pkt, SUBSCRIBE, level)
	if err != nil {
		return Subscribe{}, err
	}
	s := Subscribe{PacketID: f.id, Properties: f.props, Filters: make([]SubscribeFilter, f.n)}
	off := 0
	for i := range s.Filters {
		sf := &s.Filters[i]
		sf.Filter, off = stringAt(f.body, off)
		sf.Options, off = SubscribeOptions(f.body[off]), off+1
		sf.Err = filterError(SUBSCRIBE, i, sf.Filter)
	}
	return s, nil
}

// filterPacket is what SUBSCRIBE and UNSUBSCRIBE have in common.
type filterPacket struct {
	id    uint16
	props Properties
	body  string // the filters (SUBSCRIBE: each followed by its options)
	n     int    // how many
}

// decodeFilters decodes a whole SUBSCRIBE or UNSUBSCRIBE (t): flags 0010
// [MQTT-3.8.1-1], [MQTT-3.10.1-1]; a non-zero packet identifier
// [MQTT-2.2.1-3]; properties (v5); then at least one filter
// [MQTT-3.8.3-2], [MQTT-3.10.3-2] ([MQTT-3.8.3-3] in 3.1.1), each UTF-8
// [MQTT-3.8.3-1], [MQTT-3.10.3-1], in a SUBSCRIBE followed by its options.
func decodeFilters(pkt []byte, t Type, level Level) (filterPacket, error) {
	w, flags, err := openPacket(pkt, t)
	if err != nil {
		return filterPacket{}, err
	}
	w.checkFlags(flags)
	f := filterPacket{id: w.packetID()}
	var ps, pe int
	if level == V5 {
		ps, pe = w.properties(&propTable[t])
	}
	first := w.off
	for ; w.err == nil && w.rest() > 0; f.n++ {
		fs, fe := w.str("topic filter")
		if t == SUBSCRIBE {
			w.subscribeOptions(f.n, SubscribeOptions(w.u8("subscription options")), level,
				bytes.HasPrefix(w.b[fs:fe], []byte(sharePrefix)))
		}
	}
	switch {
	case w.err != nil:
		return filterPacket{}, w.err
	case f.n == 0:
		rule := "MQTT-3.8.3-2"
		if t == UNSUBSCRIBE {
			rule = "MQTT-3.10.3-2"
		}
		return filterPacket{}, &Error{Code: ProtocolError, Rule: rule, Msg: t.String() + " has no topic filter"}
	}
	f.props, f.body = ownProperties(pkt, ps, pe), string(pkt[first:])
	return f, nil
}

// subscribeOptions checks the options byte of filter i. 3.1/3.1.1: QoS 0..2
// and the other bits 0, else malformed [MQTT-3-8.3-4]. 5: reserved bits 0
// (else malformed [MQTT-3.8.3-5]); QoS 3 and Retain Handling 3 are protocol
// errors [MQTT-3.8.3.1], and so is No Local on a shared subscription
// [MQTT-3.8.3-4].
func (w *wire) subscribeOptions(i int, o SubscribeOptions, level Level, shared bool) {
	switch {
	case w.err != nil:
	case level != V5 && o > 2:
		w.fail(MalformedPacket, "MQTT-3-8.3-4", "filter %d: options 0x%02X: QoS above 2 or reserved bits set", i, byte(o))
	case level != V5:
	case o&0xC0 != 0:
		w.fail(MalformedPacket, "MQTT-3.8.3-5", "filter %d: reserved option bits set (0x%02X)", i, byte(o))
	case o.QoS() == 3:
		w.fail(ProtocolError, "MQTT-3.8.3.1", "filter %d: maximum QoS is 3", i)
	case o.RetainHandling() == 3:
		w.fail(ProtocolError, "MQTT-3.8.3.1", "filter %d: retain handling is 3", i)
	case o.NoLocal() && shared:
		w.fail(ProtocolError, "MQTT-3.8.3-4", "filter %d: no local on a shared subscription", i)
	}
}

// stringAt reads a length-prefixed string of already validated bytes.
func stringAt(s string, off int) (string, int) {
	n := int(s[off])<<8 | int(s[off+1])
	return s[off+2 : off+2+n], off + 2 + n
}

// AppendSubscribe appends a SUBSCRIBE with the given packet identifier,
// properties (written for V5 only) and filters with their options (for
// 3.1/3.1.1 the options byte is written as held: only QoS bits are valid
// there). The proxy uses it to forward the subset of a client's filters
// that it allows, keeping the packet's properties. Err of each filter is
// ignored. It returns ErrNoFilters for an empty list and ErrFieldTooLong
// for a filter over 65,535 bytes or a packet over MaxRemainingLength.
func AppendSubscribe(dst []byte, level Level, id uint16, props Properties, filters []SubscribeFilter) ([]byte, error) {
	return appendFilters(dst, SUBSCRIBE, level, id, props, filters)
}

// entry is a filter as appendFilters writes it: the filter and its
// options byte (-1: none).
func (f SubscribeFilter) entry() (string, int) { return f.Filter, int(f.Options) }

func (f UnsubscribeFilter) entry() (string, int) { return f.Filter, -1 }

// appendFilters appends a SUBSCRIBE or UNSUBSCRIBE (t); see AppendSubscribe.
func appendFilters[F interface{ entry() (string, int) }](dst []byte, t Type, level Level, id uint16, props Properties, filters []F) ([]byte, error) {
	if len(filters) == 0 {
		return dst, ErrNoFilters
	}
	rl := 2
	if level == V5 {
		rl += props.sizeWithLength()
	}
	for _, f := range filters {
		filter, opts := f.entry()
		if len(filter) > 0xFFFF {
			return dst, ErrFieldTooLong
		}
		rl += 2 + len(filter) + btoi(opts >= 0)
	}
	if rl > MaxRemainingLength {
		return dst, ErrFieldTooLong
	}
	dst = appendVarint(append(dst, byte(t)<<4|0x02), rl)
	dst = binary.BigEndian.AppendUint16(dst, id)
	if level == V5 {
		dst = appendProperties(dst, props)
	}
	for _, f := range filters {
		filter, opts := f.entry()
		if dst = appendString(dst, filter); opts >= 0 {
			dst = append(dst, byte(opts))
		}
	}
	return dst, nil
}

// UnsubscribeFilter is one topic filter of an UNSUBSCRIBE. Err is its
// validity, as for SubscribeFilter (v5 UNSUBACK 0x8F).
type UnsubscribeFilter struct {
	Filter string
	Err    *Error
}

// Unsubscribe is a decoded UNSUBSCRIBE packet. Like Subscribe, it owns
// its data.
type Unsubscribe struct {
	PacketID   uint16
	Properties Properties // MQTT 5 only
	Filters    []UnsubscribeFilter
}

// DecodeUnsubscribe decodes and validates a whole UNSUBSCRIBE packet for
// a session of the given protocol level: flags 0010 [MQTT-3.10.1-1], a
// non-zero packet identifier, properties (v5), and at least one filter
// [MQTT-3.10.3-2], each UTF-8 [MQTT-3.10.3-1]. Errors and allocations are
// DecodeSubscribe's.
func DecodeUnsubscribe(pkt []byte, level Level) (Unsubscribe, error) {
	f, err := decodeFilters(pkt, UNSUBSCRIBE, level)
	if err != nil {
		return Unsubscribe{}, err
	}
	u := Unsubscribe{PacketID: f.id, Properties: f.props, Filters: make([]UnsubscribeFilter, f.n)}
	off := 0
	for i := range u.Filters {
		uf := &u.Filters[i]
		uf.Filter, off = stringAt(f.body, off)
		uf.Err = filterError(UNSUBSCRIBE, i, uf.Filter)
	}
	return u, nil
}

// AppendUnsubscribe appends an UNSUBSCRIBE; see AppendSubscribe.
func AppendUnsubscribe(dst []byte, level Level, id uint16, props Properties, filters []UnsubscribeFilter) ([]byte, error) {
	return appendFilters(dst, UNSUBSCRIBE, level, id, props, filters)
}
