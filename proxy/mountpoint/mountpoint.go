// Package mountpoint is the relay filter that gives a session a place of
// its own on a shared broker: every topic the device names is put under
// the session's mountpoint on the way to the broker, and taken out of it
// on the way back, so that the device sees its own view ("status") and the
// broker another ("acme/status").
//
// Toward the broker, the topic of every PUBLISH, each filter of SUBSCRIBE
// and UNSUBSCRIBE (a shared subscription's filter behind its
// "$share/<group>/", which keeps its place) and the will's topic (rewritten
// where the CONNECT is, by the broker side: proxy.Backend) get the prefix.
// Toward the device, the prefix is taken off every PUBLISH the broker
// delivers; a PUBLISH whose topic is not under the mountpoint never reaches
// the device (it is acknowledged to the broker by the proxy). MQTT 5 topic
// aliases keep their numbers: a PUBLISH that sets one is rewritten, one
// that uses one passes as it is, and the broker's aliases are followed so
// that an alias standing for a topic outside the mountpoint delivers
// nothing. The Response Topic property is left as it is.
//
// In a session's relay.Chain the filter sits on the broker's side of the
// others: they (the topic rules first) judge the device's view.
package mountpoint

import (
	"bytes"
	"errors"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/relay"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// Options are a filter's options and hooks, each optional.
type Options struct {
	// DeviceAliases: the device lets the broker use topic aliases (MQTT 5,
	// its CONNECT's Topic Alias Maximum above 0), which the filter then
	// follows. Without, a broker PUBLISH is read from its topic alone, and
	// one without a topic (an alias the device never allowed) is withheld.
	DeviceAliases bool
	// Outside is called for each broker PUBLISH withheld because its
	// topic is not under the mountpoint (topic is valid during the call
	// only).
	Outside func(topic []byte)
	// Ended is called when the filter ends the session: a packet of the
	// device that does not decode, a topic that no longer fits once
	// prefixed, a broker alias never set.
	Ended func(cause string, err error)
}

// Filter is one session's mountpoint filter. Create it with New. Up and
// Down are each called from one goroutine at a time (the relay's two
// directions), as relay.Filter requires.
type Filter struct {
	prefix []byte
	level  packets.Level
	o      Options

	// Up's own state: where its rewritten packets are cut from, and the
	// topic under the mountpoint being built.
	up    arena
	topic []byte

	// Down's own state: where its rewritten packets are cut from, the
	// broker's aliases (whether each stands for a topic under the
	// mountpoint), and the QoS 2 deliveries withheld, whose PUBREL the
	// proxy answers.
	down     arena
	aliases  map[uint16]bool
	withheld map[uint16]bool
}

var (
	_ relay.Filter = (*Filter)(nil)
	_ relay.Reuser = (*Filter)(nil)
)

// Written gives a direction's rewritten packets' buffers back: the relay
// has written them (relay.Reuser).
func (f *Filter) Written(up bool) {
	if up {
		f.up.written()
	} else {
		f.down.written()
	}
}

// New returns the filter of a session of the given protocol level whose
// mountpoint is prefix: not empty, ending in '/', without wildcards (the
// decision's, which authstore/rules checked).
func New(level packets.Level, prefix string, o Options) *Filter {
	return &Filter{prefix: []byte(prefix), level: level, o: o}
}

// Up puts the topics of a device's packet under the mountpoint.
func (f *Filter) Up(pkt []byte) relay.Verdict {
	var out []byte
	var err error
	switch packets.Type(pkt[0] >> 4) {
	case packets.PUBLISH:
		out, err = f.publishUp(pkt)
	case packets.SUBSCRIBE:
		out, err = f.subscribe(pkt)
	case packets.UNSUBSCRIBE:
		out, err = f.unsubscribe(pkt)
	default:
		return relay.Verdict{Broker: pkt}
	}
	if err != nil {
		return f.malformed(err)
	}
	return relay.Verdict{Broker: out}
}

// publishUp prefixes a PUBLISH's topic; one with an alias alone passes
// (the broker maps the alias to the prefixed topic that set it). It reads
// the topic alone (packets.SpanPublish): the filters on the device's side
// decode and judge the packet, or the broker will; the prefix goes in
// front of whatever topic it has.
func (f *Filter) publishUp(pkt []byte) ([]byte, error) {
	s, err := packets.SpanPublish(pkt)
	if err != nil || s.End == s.Start {
		return pkt, err
	}
	f.topic = append(append(f.topic[:0], f.prefix...), pkt[s.Start:s.End]...) // copied by rewrite: reused
	if cap(f.topic) > 4096 {
		defer func() { f.topic = nil }() // a long topic's buffer is not kept
	}
	return f.rewrite(&f.up, pkt, s, f.topic, packets.TopicNameInvalid)
}

// rewrite copies pkt (a whole PUBLISH, or its head) into a with topic in
// place of its own. A topic past the limit is a refusal with code.
func (f *Filter) rewrite(a *arena, pkt []byte, s packets.TopicSpan, topic []byte, code packets.ReasonCode) ([]byte, error) {
	// 7 bounds the header's growth: type and remaining length (5), topic
	// length (2).
	out, err := packets.AppendRetopic(a.room(7+len(topic)+len(pkt)-s.End), pkt, s, topic)
	if err != nil {
		return nil, &packets.Error{Code: code, Msg: "the topic under the mountpoint is too long"}
	}
	return a.take(out), nil
}

// filter is a topic filter under the mountpoint: a shared subscription's
// after its group.
func (f *Filter) filter(filter string) string {
	if group, rest, ok := packets.SplitShared(filter); ok {
		return "$share/" + group + "/" + string(f.prefix) + rest
	}
	return string(f.prefix) + filter
}

func (f *Filter) subscribe(pkt []byte) ([]byte, error) {
	s, err := packets.DecodeSubscribe(pkt, f.level)
	if err != nil {
		return nil, err
	}
	for i := range s.Filters {
		s.Filters[i].Filter = f.filter(s.Filters[i].Filter)
	}
	out, err := packets.AppendSubscribe(nil, f.level, s.PacketID, s.Properties, s.Filters)
	if err != nil {
		return nil, &packets.Error{Code: packets.TopicFilterInvalid, Msg: "a topic filter under the mountpoint is too long"}
	}
	return out, nil
}

func (f *Filter) unsubscribe(pkt []byte) ([]byte, error) {
	u, err := packets.DecodeUnsubscribe(pkt, f.level)
	if err != nil {
		return nil, err
	}
	for i := range u.Filters {
		u.Filters[i].Filter = f.filter(u.Filters[i].Filter)
	}
	out, err := packets.AppendUnsubscribe(nil, f.level, u.PacketID, u.Properties, u.Filters)
	if err != nil {
		return nil, &packets.Error{Code: packets.TopicFilterInvalid, Msg: "a topic filter under the mountpoint is too long"}
	}
	return out, nil
}

// Malformed ends the session on a device stream that cannot be framed
// (the filter is first in a chain of one).
func (f *Filter) Malformed(err error) relay.Verdict {
	code := packets.MalformedPacket
	if errors.Is(err, packets.ErrTooLarge) {
		code = packets.PacketTooLarge
	}
	return f.end(code, "malformed", err)
}

// malformed ends the session on a device packet that does not decode, or
// does not fit once prefixed.
func (f *Filter) malformed(err error) relay.Verdict {
	code := packets.MalformedPacket
	var pe *packets.Error
	if errors.As(err, &pe) {
		code = pe.Code
	}
	return f.end(code, "malformed", err)
}

// end ends the session: an MQTT 5 device gets a DISCONNECT with code.
func (f *Filter) end(code packets.ReasonCode, cause string, err error) relay.Verdict {
	if f.o.Ended != nil {
		f.o.Ended(cause, err)
	}
	v := relay.Verdict{End: true, Cause: cause}
	if f.level == packets.V5 {
		v.Client = packets.AppendDisconnect(nil, packets.V5, code)
	}
	return v
}

// WantsDown: every PUBLISH the broker delivers, from its head when it is
// large; PUBRELs while a withheld QoS 2 delivery awaits one.
func (f *Filter) WantsDown(t packets.Type) relay.Want {
	switch {
	case t == packets.PUBLISH:
		return relay.WantHead
	case t == packets.PUBREL && len(f.withheld) > 0:
		return relay.WantWhole
	}
	return relay.WantPass
}

// Down takes a whole broker PUBLISH out of the mountpoint, or answers the
// PUBREL of a withheld delivery.
func (f *Filter) Down(pkt []byte) relay.Verdict {
	if packets.Type(pkt[0]>>4) == packets.PUBREL {
		a, err := packets.DecodeAck(pkt, f.level)
		if err != nil || !f.withheld[a.PacketID] {
			return relay.Verdict{Client: pkt}
		}
		// The device never saw this id: the proxy completes the flow.
		delete(f.withheld, a.PacketID)
		return relay.Verdict{Broker: packets.AppendAck(nil, packets.PUBCOMP, f.level, a.PacketID, packets.Success)}
	}
	v, decided := f.deliver(pkt)
	if !decided { // a whole packet that ends inside its own header
		return f.end(packets.UnspecifiedError, "broker_malformed", packets.ErrTruncated)
	}
	return v
}

// DownHead takes a large broker PUBLISH out of the mountpoint from its
// head.
func (f *Filter) DownHead(head []byte, _ int) (relay.Verdict, bool) { return f.deliver(head) }

// deliver is what the device gets of a broker PUBLISH (pkt, whole or its
// head): its topic without the mountpoint, or nothing when the topic (or
// the alias standing for it) is outside. It reads the topic alone
// (packets.SpanPublish), and the properties only to follow the broker's
// aliases when the device allows them; decided is false for a head too
// short to tell.
func (f *Filter) deliver(pkt []byte) (v relay.Verdict, decided bool) {
	s, err := packets.SpanPublish(pkt)
	if errors.Is(err, packets.ErrTruncated) {
		return relay.Verdict{}, false
	}
	if err != nil {
		return f.end(packets.UnspecifiedError, "broker_malformed", err), true
	}
	topic := pkt[s.Start:s.End]
	inside := len(topic) > len(f.prefix) && bytes.HasPrefix(topic, f.prefix)
	if f.o.DeviceAliases {
		if inside, v, decided = f.followAlias(pkt, inside); !decided || v.End {
			return v, decided
		}
	}
	switch {
	case !inside:
		return f.withhold(s.QoS, s.PacketID, topic), true
	case len(topic) == 0:
		return relay.Verdict{Client: pkt}, true // an alias the device maps to the topic without the mountpoint
	}
	out, err := f.rewrite(&f.down, pkt, s, topic[len(f.prefix):], packets.UnspecifiedError)
	if err != nil { // cannot happen: the topic got shorter
		return f.end(packets.UnspecifiedError, "broker_malformed", err), true
	}
	return relay.Verdict{Client: out}, true
}

// followAlias follows the broker's topic aliases: a PUBLISH that sets one
// records whether its topic is inside; one that uses an alias alone is
// inside when its alias is. An alias never set ends the session.
func (f *Filter) followAlias(pkt []byte, inside bool) (bool, relay.Verdict, bool) {
	p, _, err := packets.DecodePublishHead(pkt, f.level)
	if errors.Is(err, packets.ErrTruncated) {
		return false, relay.Verdict{}, false
	}
	if err != nil {
		return false, f.end(packets.UnspecifiedError, "broker_malformed", err), true
	}
	n, hasAlias := p.TopicAlias()
	switch {
	case !hasAlias:
	case len(p.Topic) > 0:
		if f.aliases == nil {
			f.aliases = map[uint16]bool{}
		}
		f.aliases[n] = inside
	default:
		set := false
		if inside, set = f.aliases[n]; !set {
			return false, f.end(packets.UnspecifiedError, "broker_malformed", errors.New("the broker used a topic alias it never set")), true
		}
	}
	return inside, relay.Verdict{}, true
}

// withhold keeps a delivery outside the mountpoint from the device and
// acknowledges it to the broker, so that its inflight window never
// stalls.
func (f *Filter) withhold(qos byte, id uint16, topic []byte) relay.Verdict {
	if f.o.Outside != nil {
		f.o.Outside(topic)
	}
	switch qos {
	case 1:
		return relay.Verdict{Broker: packets.AppendAck(nil, packets.PUBACK, f.level, id, packets.Success)}
	case 2:
		if f.withheld == nil {
			f.withheld = map[uint16]bool{}
		}
		f.withheld[id] = true
		return relay.Verdict{Broker: packets.AppendAck(nil, packets.PUBREC, f.level, id, packets.Success)}
	}
	return relay.Verdict{}
}
