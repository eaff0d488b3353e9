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
	aliases  aliasTable      // the device's aliases, up to the broker's Topic Alias Maximum
	withheld map[uint16]bool // QoS 2 packet ids whose PUBLISH the broker never saw
	// The last topic the rules let the device publish to, and those rules:
	// a device publishing to the same topic again (the common case) is
	// judged by one comparison. A rule change stores new rules, so the
	// next PUBLISH is judged afresh; a denial is never remembered.
	allowedTopic []byte
	allowedBy    *policy.TopicRules

	// Down's own state: only the broker's direction touches it. Every
	// PUBLISH the broker delivers is judged (a subscription the broker
	// restored from a persistent session is not known to the proxy, and
	// one may be in flight while the rules change), as are its aliases.
	downAliases   aliasTable      // the broker's aliases, up to the device's Topic Alias Maximum
	downWithheld  map[uint16]bool // QoS 2 ids of deliveries withheld: their PUBREL is answered here
	receivedTopic []byte          // the last topic delivered, under receivedBy
	receivedBy    *policy.TopicRules

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

// alias is a topic alias as its sender set it, and whether the receiver's
// mapping is the same (it is not after a PUBLISH that set it was withheld).
type alias struct {
	topic  []byte
	synced bool
}

// aliasTable follows the topic aliases one side sets [MQTT-3.3.2.3.4].
type aliasTable struct {
	max uint16 // the receiver's Topic Alias Maximum; 0: none allowed
	m   map[uint16]*alias
}

// resolve returns the topic a PUBLISH means and its alias, if it uses
// one: a PUBLISH with a topic and an alias (re)sets the alias, one with
// an alias alone uses it. An alias above the maximum, or never set, is a
// protocol violation of the sender.
func (t *aliasTable) resolve(p *packets.Publish) ([]byte, *alias, *packets.Error) {
	n, ok := p.TopicAlias()
	if !ok {
		return p.Topic, nil, nil
	}
	if n > t.max {
		return nil, nil, &packets.Error{Code: packets.TopicAliasInvalid, Rule: "MQTT-3.3.2-9", Msg: "topic alias above the Topic Alias Maximum"}
	}
	if t.m == nil {
		t.m = map[uint16]*alias{}
	}
	a := t.m[n]
	if len(p.Topic) > 0 {
		if a == nil {
			a = &alias{}
			t.m[n] = a
		}
		a.topic = append(a.topic[:0], p.Topic...)
		return p.Topic, a, nil
	}
	if a == nil {
		return nil, nil, &packets.Error{Code: packets.ProtocolError, Rule: "MQTT-3.3.2-8", Msg: "topic alias not set"}
	}
	return a.topic, a, nil
}

// forward is what a PUBLISH the rules allow becomes, given its alias: the
// packet as it is, unless it uses an alias alone that the receiver maps
// elsewhere (a PUBLISH that set it was withheld): then the topic goes
// with it, so that the receiver gets it under the topic the sender
// meant, and maps the alias as the sender does from then on. rest is the
// length of the payload not in pkt (a head), 0 for a whole packet.
func (a *alias) forward(pkt []byte, p *packets.Publish, topic []byte, rest int) ([]byte, error) {
	if a == nil || a.synced {
		return pkt, nil
	}
	a.synced = true
	if len(p.Topic) > 0 {
		return pkt, nil
	}
	p.Topic = topic
	out, err := packets.AppendPublishHead(nil, packets.V5, p, len(p.Payload)+rest)
	return append(out, p.Payload...), err
}

// fromBroker marks a SUBSCRIBE filter whose code is the broker's.
const fromBroker packets.ReasonCode = 0xFF

var _ relay.Filter = (*aclFilter)(nil)

// newACLFilter returns the filter of a session whose CONNECT's properties
// are connProps and whose broker answered ack (each side's Topic Alias
// Maximum bounds the aliases the other may use).
func newACLFilter(s *session, rules *policy.TopicRules, connProps packets.Properties, ack packets.Connack, action DenyAction) *aclFilter {
	// The maps are made at the first SUBSCRIBE: an idle session that never
	// subscribes (most devices of a fleet that only publish) holds none.
	f := &aclFilter{s: s, level: s.req.Protocol, action: action}
	f.rules.Store(rules)
	if p, ok := ack.Properties.Get(packets.PropTopicAliasMaximum); ok {
		f.aliases.max = uint16(p.Int)
	}
	if p, ok := connProps.Get(packets.PropTopicAliasMaximum); ok {
		f.downAliases.max = uint16(p.Int)
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
	topic, a, perr := f.aliases.resolve(&p)
	if perr != nil {
		return f.malformed(perr)
	}
	if !f.mayPublish(topic, p.QoS, p.Retain) {
		if a != nil && len(p.Topic) > 0 {
			a.synced = false // the broker keeps its older mapping
		}
		return f.denyPublish(&p, topic)
	}
	out, err := a.forward(pkt, &p, topic, 0)
	if err != nil {
		return f.malformed(err)
	}
	return relay.Verdict{Broker: out}
}

// mayPublish reports whether the current rules let the device publish to
// topic at that QoS and retain flag (rules with conditions: EMQX's).
func (f *aclFilter) mayPublish(topic []byte, qos byte, retain bool) bool {
	rules := f.rules.Load()
	if rules.Conditional() {
		_, ok := rules.CanPublishAs(string(topic), qos, retain)
		return ok
	}
	if f.allowedBy == rules && f.allowedTopic != nil && bytes.Equal(f.allowedTopic, topic) {
		return true
	}
	if _, ok := rules.CanPublish(string(topic)); !ok {
		return false
	}
	f.allowedBy, f.allowedTopic = rules, append(f.allowedTopic[:0], topic...)
	return true
}

// denyPublish withholds a PUBLISH.
func (f *aclFilter) denyPublish(p *packets.Publish, topic []byte) relay.Verdict {
	f.s.p.aclDenied("publish", f.s, string(topic))
	if f.action == DenyDisconnect {
		return f.end(packets.NotAuthorized, "acl")
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
		switch _, ok := rules.CanSubscribeAs(sf.Filter, sf.Options.QoS()); {
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
		return f.end(packets.NotAuthorized, "acl")
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
	if f.pending == nil {
		f.pending = map[uint16]pendingSub{}
	}
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

// WantsDown: every PUBLISH the broker delivers is judged, from its head
// when it is large; its SUBACKs are merged with the proxy's codes; and
// while a withheld QoS 2 delivery awaits its PUBREL, PUBRELs are read.
func (f *aclFilter) WantsDown(t packets.Type) relay.Want {
	switch {
	case t == packets.PUBLISH:
		return relay.WantHead
	case t == packets.SUBACK, t == packets.PUBREL && len(f.downWithheld) > 0:
		return relay.WantWhole
	}
	return relay.WantPass
}

// Down judges a broker packet: a PUBLISH by its topic, a SUBACK merged,
// a PUBREL of a withheld delivery answered.
func (f *aclFilter) Down(pkt []byte) relay.Verdict {
	switch packets.Type(pkt[0] >> 4) {
	case packets.PUBLISH:
		p, err := packets.DecodePublish(pkt, f.level)
		if err != nil {
			return f.brokerMalformed(err)
		}
		return f.deliver(pkt, &p, 0)
	case packets.PUBREL:
		a, err := packets.DecodeAck(pkt, f.level)
		if err != nil || !f.downWithheld[a.PacketID] {
			return relay.Verdict{Client: pkt}
		}
		// The device never saw this id: the proxy completes the flow.
		delete(f.downWithheld, a.PacketID)
		return relay.Verdict{Broker: packets.AppendAck(nil, packets.PUBCOMP, f.level, a.PacketID, packets.Success)}
	}
	return f.suback(pkt)
}

// DownHead judges a large PUBLISH from its head, once the head holds its
// variable header.
func (f *aclFilter) DownHead(head []byte, size int) (relay.Verdict, bool) {
	p, payloadLen, err := packets.DecodePublishHead(head, f.level)
	if errors.Is(err, packets.ErrTruncated) {
		return relay.Verdict{}, false
	}
	if err != nil {
		return f.brokerMalformed(err), true
	}
	return f.deliver(head, &p, payloadLen-len(p.Payload)), true
}

// deliver judges a PUBLISH from the broker (whole, or a head with rest
// payload bytes behind it) by the topic it means: the device receives
// only what its current rules let it read, whatever subscription brought
// it. A withheld delivery is acknowledged to the broker by the proxy, so
// that its inflight window never stalls.
func (f *aclFilter) deliver(pkt []byte, p *packets.Publish, rest int) relay.Verdict {
	topic, a, perr := f.downAliases.resolve(p)
	if perr != nil {
		return f.brokerMalformed(perr)
	}
	if !f.mayReceive(topic) {
		if a != nil && len(p.Topic) > 0 {
			a.synced = false // the device keeps its older mapping
		}
		f.s.p.aclDenied("deliver", f.s, string(topic))
		switch p.QoS {
		case 1:
			return relay.Verdict{Broker: packets.AppendAck(nil, packets.PUBACK, f.level, p.PacketID, packets.Success)}
		case 2:
			if f.downWithheld == nil {
				f.downWithheld = map[uint16]bool{}
			}
			f.downWithheld[p.PacketID] = true
			return relay.Verdict{Broker: packets.AppendAck(nil, packets.PUBREC, f.level, p.PacketID, packets.Success)}
		}
		return relay.Verdict{}
	}
	out, err := a.forward(pkt, p, topic, rest)
	if err != nil {
		return f.brokerMalformed(err)
	}
	return relay.Verdict{Client: out}
}

// mayReceive reports whether the current rules let the device read
// topic; the last topic allowed is remembered under the same rules.
func (f *aclFilter) mayReceive(topic []byte) bool {
	rules := f.rules.Load()
	if f.receivedBy == rules && f.receivedTopic != nil && bytes.Equal(f.receivedTopic, topic) {
		return true
	}
	if _, ok := rules.CanReceive(string(topic)); !ok {
		return false
	}
	f.receivedBy, f.receivedTopic = rules, append(f.receivedTopic[:0], topic...)
	return true
}

// brokerMalformed ends the session on a broker PUBLISH that cannot be
// judged (it does not decode, or uses an alias it never set): nothing
// unjudged reaches the device.
func (f *aclFilter) brokerMalformed(err error) relay.Verdict {
	f.s.p.log.Warn("the broker sent a PUBLISH that cannot be judged; closing the session", "username", logsafe.String(f.s.req.Username),
		"client_id", logsafe.String(f.s.req.ClientID), "error", logsafe.Error(err))
	return f.end(packets.UnspecifiedError, "broker_malformed")
}

// suback merges the broker's SUBACK codes into the proxy's, in the
// device's order, and records the subscriptions the broker granted. A
// granted filter the rules no longer cover (they changed while the
// SUBACK was on its way) ends the session, as a rule change does for a
// live subscription.
func (f *aclFilter) suback(pkt []byte) relay.Verdict {
	pass := relay.Verdict{Client: pkt} // not ours to judge: the device sees what the broker sent
	ack, err := packets.DecodeSuback(pkt, f.level)
	if err != nil {
		return pass
	}
	rules := f.rules.Load()
	f.mu.Lock()
	defer f.mu.Unlock()
	ps, ok := f.pending[ack.PacketID]
	delete(f.pending, ack.PacketID)
	if !ok {
		return pass
	}
	merged := f.clientCodes(ps.codes)
	j := 0
	for i, c := range ps.codes {
		if c != fromBroker {
			continue
		}
		if j >= len(ack.Codes) {
			return pass // the broker answered fewer filters than it was sent
		}
		if merged[i] = ack.Codes[j]; merged[i] < 0x80 {
			if _, ok := rules.CanSubscribe(ps.filters[i]); !ok {
				f.s.p.log.Info("a subscription granted after the rules stopped covering it; closing", "username", logsafe.String(f.s.req.Username),
					"client_id", logsafe.String(f.s.req.ClientID), "filter", logsafe.String(ps.filters[i]))
				return f.end(packets.NotAuthorized, "acl")
			}
			if f.subs == nil {
				f.subs = map[string]struct{}{}
			}
			f.subs[ps.filters[i]] = struct{}{}
		}
		j++
	}
	if j != len(ack.Codes) || j == len(ps.codes) {
		return pass // a count mismatch, or nothing of the proxy's to merge
	}
	out, err := packets.AppendSuback(nil, f.level, ack.PacketID, ack.Properties, merged)
	if err != nil {
		return pass
	}
	return relay.Verdict{Client: out}
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
	return f.end(code, "malformed")
}

// end ends the session, counted under cause: MQTT 5 clients get a
// DISCONNECT with code first.
func (f *aclFilter) end(code packets.ReasonCode, cause string) relay.Verdict {
	v := relay.Verdict{End: true, Cause: cause}
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
