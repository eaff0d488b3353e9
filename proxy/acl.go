package proxy

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/logsafe"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/relay"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// DenyAction is what a denied PUBLISH costs the device.
type DenyAction int

const (
	// DenyDrop withholds the PUBLISH and acknowledges it as refused: QoS 1
	// PUBACK, QoS 2 PUBREC (MQTT 5 with 0x87); QoS 0 is dropped.
	DenyDrop DenyAction = iota
	// DenyDisconnect ends the session (MQTT 5: DISCONNECT 0x87 first).
	DenyDisconnect
)

// aclFilter enforces a session's topic rules inside its relay: every
// PUBLISH, SUBSCRIBE and UNSUBSCRIBE of the device is decoded and judged,
// the broker's SUBACKs are merged with the proxy's own codes, and MQTT 5
// topic aliases are tracked so that a PUBLISH is judged by the topic the
// device means and the broker never delivers it under another.
type aclFilter struct {
	s      *session
	level  packets.Level
	rules  atomic.Pointer[policy.TopicRules]
	action DenyAction

	// Up's own state: only the client's direction touches it.
	aliasMax uint16            // the broker's Topic Alias Maximum; 0: none allowed
	aliases  map[uint16]*alias // the device's aliases
	withheld map[uint16]bool   // QoS 2 packet ids whose PUBLISH the broker never saw
	// The last topic the rules let the device publish to, and those rules:
	// a device publishing to the same topic again (the common case) is
	// judged by one comparison. A rule change stores new rules, so the
	// next PUBLISH is judged afresh; a denial is never remembered.
	allowedTopic []byte
	allowedBy    *policy.TopicRules

	mu      sync.Mutex
	pending map[uint16]pendingSub // SUBSCRIBE packet id -> what the SUBACK must say
	subs    map[string]struct{}   // filters the broker granted: the live subscriptions
}

// pendingSub is a SUBSCRIBE whose SUBACK is awaited: its filters in the
// device's order and the proxy's code for each (fromBroker: the broker's).
type pendingSub struct {
	filters []string
	codes   []packets.ReasonCode
}

// alias is a topic alias as the device set it, and whether the broker's
// mapping is the same (it is not after a PUBLISH that set it was withheld).
type alias struct {
	topic  []byte
	synced bool
}

// fromBroker marks a SUBSCRIBE filter whose code is the broker's.
const fromBroker packets.ReasonCode = 0xFF

var _ relay.Filter = (*aclFilter)(nil)

func newACLFilter(s *session, rules *policy.TopicRules, ack packets.Connack, action DenyAction) *aclFilter {
	f := &aclFilter{s: s, level: s.req.Protocol, action: action, pending: map[uint16]pendingSub{}, subs: map[string]struct{}{}}
	f.rules.Store(rules)
	if p, ok := ack.Properties.Get(packets.PropTopicAliasMaximum); ok {
		f.aliasMax = uint16(p.Int)
	}
	return f
}

// Up judges a packet from the device.
func (f *aclFilter) Up(pkt []byte) relay.Verdict {
	switch packets.Type(pkt[0] >> 4) {
	case packets.PUBLISH:
		return f.publish(pkt)
	case packets.SUBSCRIBE:
		return f.subscribe(pkt)
	case packets.UNSUBSCRIBE:
		u, err := packets.DecodeUnsubscribe(pkt, f.level)
		if err != nil {
			return f.malformed(err)
		}
		f.mu.Lock()
		for _, uf := range u.Filters {
			delete(f.subs, uf.Filter)
		}
		f.mu.Unlock()
	case packets.PUBREL:
		a, err := packets.DecodeAck(pkt, f.level)
		if err != nil {
			return f.malformed(err)
		}
		if f.withheld[a.PacketID] {
			// The broker never saw this id: the proxy completes the flow.
			delete(f.withheld, a.PacketID)
			code := packets.Success
			if f.level == packets.V5 {
				code = packets.PacketIdentifierNotFound
			}
			return relay.Verdict{Client: packets.AppendAck(nil, packets.PUBCOMP, f.level, a.PacketID, code)}
		}
	case packets.CONNECT:
		return f.malformed(&packets.Error{Code: packets.ProtocolError, Rule: "MQTT-3.1.0-2", Msg: "a second CONNECT"})
	}
	return relay.Verdict{Broker: pkt}
}

// publish judges a PUBLISH by the topic the device means.
func (f *aclFilter) publish(pkt []byte) relay.Verdict {
	p, err := packets.DecodePublish(pkt, f.level)
	if err != nil {
		return f.malformed(err)
	}
	topic, a, v := f.resolveAlias(&p)
	if v != nil {
		return *v
	}
	if !f.mayPublish(topic) {
		if a != nil && len(p.Topic) > 0 {
			a.synced = false // the broker keeps its older mapping
		}
		return f.denyPublish(&p, topic)
	}
	if a == nil || a.synced {
		return relay.Verdict{Broker: pkt}
	}
	if len(p.Topic) > 0 {
		a.synced = true
		return relay.Verdict{Broker: pkt}
	}
	// An alias-only PUBLISH for an alias the broker maps elsewhere: send
	// the topic with it, so that the broker delivers it under the topic
	// the device meant, and maps the alias as the device does from now on.
	p.Topic = topic
	out, err := packets.AppendPublish(nil, f.level, &p)
	if err != nil {
		return f.malformed(err)
	}
	a.synced = true
	return relay.Verdict{Broker: out}
}

// mayPublish reports whether the current rules let the device publish to
// topic.
func (f *aclFilter) mayPublish(topic []byte) bool {
	rules := f.rules.Load()
	if f.allowedBy == rules && f.allowedTopic != nil && bytes.Equal(f.allowedTopic, topic) {
		return true
	}
	if _, ok := rules.CanPublish(string(topic)); !ok {
		return false
	}
	f.allowedBy, f.allowedTopic = rules, append(f.allowedTopic[:0], topic...)
	return true
}

// resolveAlias returns the topic a PUBLISH means and its alias, if it uses
// one; a verdict when the alias is invalid.
func (f *aclFilter) resolveAlias(p *packets.Publish) ([]byte, *alias, *relay.Verdict) {
	n, ok := p.TopicAlias()
	if !ok {
		return p.Topic, nil, nil
	}
	if n > f.aliasMax {
		v := f.malformed(&packets.Error{Code: packets.TopicAliasInvalid, Rule: "MQTT-3.3.2-9", Msg: "topic alias above the Topic Alias Maximum"})
		return nil, nil, &v
	}
	if f.aliases == nil {
		f.aliases = map[uint16]*alias{}
	}
	a := f.aliases[n]
	if len(p.Topic) > 0 {
		if a == nil {
			a = &alias{}
			f.aliases[n] = a
		}
		a.topic = append(a.topic[:0], p.Topic...)
		return p.Topic, a, nil
	}
	if a == nil {
		v := f.malformed(&packets.Error{Code: packets.ProtocolError, Rule: "MQTT-3.3.2-8", Msg: "topic alias not set"})
		return nil, nil, &v
	}
	return a.topic, a, nil
}

// denyPublish withholds a PUBLISH.
func (f *aclFilter) denyPublish(p *packets.Publish, topic []byte) relay.Verdict {
	f.s.p.aclDenied("publish", f.s, string(topic))
	if f.action == DenyDisconnect {
		return f.end(packets.NotAuthorized)
	}
	switch p.QoS {
	case 1:
		return relay.Verdict{Client: packets.AppendAck(nil, packets.PUBACK, f.level, p.PacketID, packets.NotAuthorized)}
	case 2:
		if f.withheld == nil {
			f.withheld = map[uint16]bool{}
		}
		f.withheld[p.PacketID] = true
		return relay.Verdict{Client: packets.AppendAck(nil, packets.PUBREC, f.level, p.PacketID, packets.NotAuthorized)}
	}
	return relay.Verdict{}
}

// subscribe forwards the filters the rules cover and answers the others
// in their place in the SUBACK.
func (f *aclFilter) subscribe(pkt []byte) relay.Verdict {
	sub, err := packets.DecodeSubscribe(pkt, f.level)
	if err != nil {
		return f.malformed(err)
	}
	rules := f.rules.Load()
	codes := make([]packets.ReasonCode, len(sub.Filters))
	filters := make([]string, len(sub.Filters))
	allowed := make([]packets.SubscribeFilter, 0, len(sub.Filters))
	for i, sf := range sub.Filters {
		filters[i] = sf.Filter
		switch _, ok := rules.CanSubscribe(sf.Filter); {
		case sf.Err != nil:
			codes[i] = packets.TopicFilterInvalid
		case !ok:
			codes[i] = packets.NotAuthorized
			f.s.p.aclDenied("subscribe", f.s, sf.Filter)
		default:
			codes[i] = fromBroker
			allowed = append(allowed, sf)
		}
	}
	if len(allowed) < len(sub.Filters) && f.level == packets.V31 {
		// MQTT 3.1 has no code for a refused subscription.
		return f.end(packets.NotAuthorized)
	}
	if len(allowed) == 0 {
		out, err := packets.AppendSuback(nil, f.level, sub.PacketID, packets.Properties{}, f.clientCodes(codes))
		if err != nil {
			return f.malformed(err)
		}
		return relay.Verdict{Client: out}
	}
	if len(allowed) < len(sub.Filters) {
		if pkt, err = packets.AppendSubscribe(nil, f.level, sub.PacketID, sub.Properties, allowed); err != nil {
			return f.malformed(err)
		}
	}
	f.mu.Lock()
	f.pending[sub.PacketID] = pendingSub{filters: filters, codes: codes}
	f.mu.Unlock()
	return relay.Verdict{Broker: pkt}
}

// clientCodes maps the proxy's refusals to the device's version.
func (f *aclFilter) clientCodes(codes []packets.ReasonCode) []packets.ReasonCode {
	if f.level == packets.V5 {
		return codes
	}
	out := make([]packets.ReasonCode, len(codes))
	for i, c := range codes {
		out[i] = c
		if c >= 0x80 && c != fromBroker {
			out[i] = packets.UnspecifiedError // 0x80 in 3.1.1
		}
	}
	return out
}

// WantsDown: the broker's SUBACKs are merged with the proxy's codes.
func (f *aclFilter) WantsDown(t packets.Type) bool { return t == packets.SUBACK }

// Down merges the broker's SUBACK codes into the proxy's, in the device's
// order, and records the subscriptions the broker granted.
func (f *aclFilter) Down(pkt []byte) []byte {
	ack, err := packets.DecodeSuback(pkt, f.level)
	if err != nil {
		return pkt // not ours to judge: the device sees what the broker sent
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ps, ok := f.pending[ack.PacketID]
	delete(f.pending, ack.PacketID)
	if !ok {
		return pkt
	}
	merged := f.clientCodes(ps.codes)
	j := 0
	for i, c := range ps.codes {
		if c != fromBroker {
			continue
		}
		if j >= len(ack.Codes) {
			return pkt // the broker answered fewer filters than it was sent
		}
		if merged[i] = ack.Codes[j]; merged[i] < 0x80 {
			f.subs[ps.filters[i]] = struct{}{}
		}
		j++
	}
	if j != len(ack.Codes) {
		return pkt
	}
	if j == len(ps.codes) {
		return pkt // nothing of the proxy's to merge
	}
	out, err := packets.AppendSuback(nil, f.level, ack.PacketID, ack.Properties, merged)
	if err != nil {
		return pkt
	}
	return out
}

// Malformed ends the session on a stream that cannot be framed.
func (f *aclFilter) Malformed(err error) relay.Verdict {
	code := packets.MalformedPacket
	if errors.Is(err, packets.ErrTooLarge) {
		code = packets.PacketTooLarge
	}
	return f.endMalformed(code, err)
}

// malformed ends the session on a packet that does not decode.
func (f *aclFilter) malformed(err error) relay.Verdict {
	code := packets.MalformedPacket
	var pe *packets.Error
	if errors.As(err, &pe) {
		code = pe.Code
	}
	return f.endMalformed(code, err)
}

func (f *aclFilter) endMalformed(code packets.ReasonCode, err error) relay.Verdict {
	f.s.p.log.Info("malformed packet after CONNECT; closing", "username", logsafe.String(f.s.req.Username),
		"client_id", logsafe.String(f.s.req.ClientID), "remote", f.s.remote, "error", logsafe.Error(err))
	f.s.p.metrics.Disconnects.WithLabelValues("malformed").Inc()
	return f.end(code)
}

// end ends the session: MQTT 5 clients get a DISCONNECT with code first.
func (f *aclFilter) end(code packets.ReasonCode) relay.Verdict {
	v := relay.Verdict{End: true}
	if f.level == packets.V5 {
		v.Client = packets.AppendDisconnect(nil, packets.V5, code)
	}
	return v
}

// update installs new rules (a re-decision allowed the session): publish
// rights apply to the next PUBLISH. It reports a live subscription the new
// rules no longer cover, if any: the session must end.
func (f *aclFilter) update(rules *policy.TopicRules) (uncovered string, ok bool) {
	f.rules.Store(rules)
	f.mu.Lock()
	defer f.mu.Unlock()
	for filter := range f.subs {
		if _, ok := rules.CanSubscribe(filter); !ok {
			return filter, false
		}
	}
	return "", true
}

// aclDenied counts a packet the topic rules refused and logs it: at debug
// each, at info within the log budget, summarised past it.
func (p *Proxy) aclDenied(action string, s *session, topic string) {
	p.metrics.ACLDenied.WithLabelValues(action).Inc()
	s.denied.add(action, topic)
	level := slog.LevelDebug
	if p.aclLog.allow(action) {
		level = slog.LevelInfo
	}
	p.log.Log(context.Background(), level, "topic rules refuse "+action, "username", logsafe.String(s.req.Username),
		"client_id", logsafe.String(s.req.ClientID), "remote", s.remote, "topic", logsafe.String(topic))
}
