package packets

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
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

// Subscribe is a decoded SUBSCRIBE packet. Its strings share one copy of
// the packet's properties and filters: it stays valid after the caller
// reuses the packet's buffer.
type Subscribe struct {
	PacketID   uint16
	Properties Properties // MQTT 5 only
	Filters    []SubscribeFilter
}

// DecodeSubscribe decodes and validates a whole SUBSCRIBE packet for a
// session of the given protocol level. It makes two allocations (one copy
// of properties and filters, the filter list) plus one *Error per invalid
// filter.
//
// A returned error is an *Error with Code MalformedPacket or ProtocolError
// (v5: DISCONNECT with that code; v3: close). A filter that is merely
// invalid does not fail the decode: see SubscribeFilter.Err.
func DecodeSubscribe(pkt []byte, level Level) (Subscribe, error) {
	w, flags, err := openPacket(pkt, SUBSCRIBE)
	if err != nil {
		return Subscribe{}, err
	}
	w.checkFlags(flags) // 0010 [MQTT-3.8.1-1]
	id := w.packetID()  // non-zero [MQTT-2.2.1-3]
	start, ps, pe := w.off, 0, 0
	if level == V5 {
		ps, pe = w.properties()
	}
	// Payload: filter and options pairs, at least one [MQTT-3.8.3-2]
	// ([MQTT-3.8.3-3] in 3.1.1).
	first, n := w.off, 0
	for w.err == nil && w.rest() > 0 {
		fs, fe := w.str("topic filter") // [MQTT-3.8.3-1]
		w.subscribeOptions(n, SubscribeOptions(w.u8("subscription options")), level,
			bytes.HasPrefix(w.b[fs:fe], []byte(sharePrefix)))
		n++
	}
	if w.err != nil {
		return Subscribe{}, w.err
	}
	if n == 0 {
		return Subscribe{}, &Error{Code: ProtocolError, Rule: "MQTT-3.8.3-2", Msg: "SUBSCRIBE has no topic filter"}
	}

	body := string(pkt[start:])
	s := Subscribe{PacketID: id, Filters: make([]SubscribeFilter, n)}
	if level == V5 {
		s.Properties = Properties{raw: body[ps-start : pe-start]}
	}
	off := first - start
	for i := range s.Filters {
		f := &s.Filters[i]
		f.Filter, off = stringAt(body, off)
		f.Options, off = SubscribeOptions(body[off]), off+1
		f.Err = filterError(SUBSCRIBE, i, f.Filter)
	}
	return s, nil
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
	if len(filters) == 0 {
		return dst, ErrNoFilters
	}
	rl := 2
	if level == V5 {
		rl += varintLen(props.size()) + props.size()
	}
	for _, f := range filters {
		if len(f.Filter) > 0xFFFF {
			return dst, ErrFieldTooLong
		}
		rl += 2 + len(f.Filter) + 1
	}
	if rl > MaxRemainingLength {
		return dst, ErrFieldTooLong
	}
	dst = appendVarint(append(dst, byte(SUBSCRIBE)<<4|0x02), rl)
	dst = binary.BigEndian.AppendUint16(dst, id)
	if level == V5 {
		dst = appendProperties(dst, props.raw)
	}
	for _, f := range filters {
		dst = append(appendString(dst, f.Filter), byte(f.Options))
	}
	return dst, nil
}

// UnsubscribeFilter is one topic filter of an UNSUBSCRIBE. Err is its
// validity, as for SubscribeFilter (v5 UNSUBACK 0x8F).
type UnsubscribeFilter struct {
	Filter string
	Err    *Error
}

// Unsubscribe is a decoded UNSUBSCRIBE packet. Like Subscribe, it owns one
// copy of its properties and filters.
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
	w, flags, err := openPacket(pkt, UNSUBSCRIBE)
	if err != nil {
		return Unsubscribe{}, err
	}
	w.checkFlags(flags)
	id := w.packetID()
	start, ps, pe := w.off, 0, 0
	if level == V5 {
		ps, pe = w.properties()
	}
	first, n := w.off, 0
	for w.err == nil && w.rest() > 0 {
		w.str("topic filter")
		n++
	}
	if w.err != nil {
		return Unsubscribe{}, w.err
	}
	if n == 0 {
		return Unsubscribe{}, &Error{Code: ProtocolError, Rule: "MQTT-3.10.3-2", Msg: "UNSUBSCRIBE has no topic filter"}
	}
	body := string(pkt[start:])
	u := Unsubscribe{PacketID: id, Filters: make([]UnsubscribeFilter, n)}
	if level == V5 {
		u.Properties = Properties{raw: body[ps-start : pe-start]}
	}
	off := first - start
	for i := range u.Filters {
		f := &u.Filters[i]
		f.Filter, off = stringAt(body, off)
		f.Err = filterError(UNSUBSCRIBE, i, f.Filter)
	}
	return u, nil
}

// AppendUnsubscribe appends an UNSUBSCRIBE; see AppendSubscribe.
func AppendUnsubscribe(dst []byte, level Level, id uint16, props Properties, filters []UnsubscribeFilter) ([]byte, error) {
	if len(filters) == 0 {
		return dst, ErrNoFilters
	}
	rl := 2
	if level == V5 {
		rl += varintLen(props.size()) + props.size()
	}
	for _, f := range filters {
		if len(f.Filter) > 0xFFFF {
			return dst, ErrFieldTooLong
		}
		rl += 2 + len(f.Filter)
	}
	if rl > MaxRemainingLength {
		return dst, ErrFieldTooLong
	}
	dst = appendVarint(append(dst, byte(UNSUBSCRIBE)<<4|0x02), rl)
	dst = binary.BigEndian.AppendUint16(dst, id)
	if level == V5 {
		dst = appendProperties(dst, props.raw)
	}
	for _, f := range filters {
		dst = appendString(dst, f.Filter)
	}
	return dst, nil
}

const sharePrefix = "$share/"

// SplitShared splits a shared subscription's filter $share/<group>/<filter>
// [MQTT-4.8.2]. ok is false when filter does not start with "$share/" or is
// not well formed after it: the group must be non-empty [MQTT-4.8.2-1]
// without '+', '#' or '/', and followed by '/' and a non-empty filter
// [MQTT-4.8.2-2]. The prefix is case-sensitive, as topics are. Shared
// subscriptions are MQTT 5, but brokers honour them from 3.1.1 clients
// too, so this codec reads $share/ alike at every level.
func SplitShared(filter string) (group, rest string, ok bool) {
	after, ok := strings.CutPrefix(filter, sharePrefix)
	if !ok {
		return "", "", false
	}
	group, rest, ok = strings.Cut(after, "/")
	if !ok || group == "" || rest == "" || strings.ContainsAny(group, "+#") {
		return "", "", false
	}
	return group, rest, true
}

// ValidateFilter reports whether filter is a well-formed topic filter: nil,
// or an *Error with Code TopicFilterInvalid and the rule it breaks. UTF-8
// validity is the decoder's (it makes the packet malformed), not checked
// here.
func ValidateFilter(filter string) error {
	if err := filterError(0, 0, filter); err != nil {
		return err
	}
	return nil
}

// filterError checks topic filter i of a packet of type t (0: none).
func filterError(t Type, i int, filter string) *Error {
	rule, msg := checkFilter(filter)
	if rule == "" {
		return nil
	}
	if t != 0 {
		msg = fmt.Sprintf("%s topic filter %d %s", t, i, msg)
	} else {
		msg = "topic filter " + msg
	}
	return &Error{Code: TopicFilterInvalid, Rule: rule, Msg: msg}
}

// checkFilter returns the rule filter breaks and how, or "".
func checkFilter(f string) (rule, msg string) {
	if f == "" {
		return "MQTT-4.7.3-1", "is empty" // at least one character
	}
	if after, ok := strings.CutPrefix(f, sharePrefix); ok {
		group, rest, found := strings.Cut(after, "/")
		switch {
		case group == "":
			return "MQTT-4.8.2-1", "is a shared subscription with an empty share name"
		case strings.ContainsAny(group, "+#"):
			return "MQTT-4.8.2-2", "has a wildcard in its share name"
		case !found || rest == "":
			return "MQTT-4.8.2-2", "has no topic filter after its share name"
		}
		f = rest
	}
	// '/', '+' and '#' are ASCII: they never occur inside a multi-byte
	// UTF-8 sequence, so the bytes can be scanned one by one.
	for i := 0; i < len(f); i++ {
		switch f[i] {
		case '#':
			// Alone in the last level [MQTT-4.7.1-1] ([MQTT-4.7.1-2] in 3.1.1).
			if i != len(f)-1 || i > 0 && f[i-1] != '/' {
				return "MQTT-4.7.1-1", "has '#' elsewhere than alone in the last level"
			}
		case '+':
			// Alone in its level [MQTT-4.7.1-2] ([MQTT-4.7.1-3] in 3.1.1).
			if i > 0 && f[i-1] != '/' || i+1 < len(f) && f[i+1] != '/' {
				return "MQTT-4.7.1-2", "has '+' not alone in its level"
			}
		}
	}
	return "", ""
}
