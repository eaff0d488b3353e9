package limits

import (
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/relay"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// SUBSCRIBE under max_subs and max_qos. The filters one connection holds
// are those it subscribed to (after the topic rules) that the broker did
// not refuse, until it unsubscribes them; subscribing to a filter again
// replaces the subscription and counts once. A filter past max_subs is
// answered in its place in the SUBACK (v5 0x97, 3.1.1 0x80; MQTT 3.1,
// which has no code for it, is closed), and the others go to the broker.
// max_qos lowers the QoS each filter asks for in the SUBSCRIBE the broker
// gets (legal in both versions: a broker may grant less than asked), so
// that the SUBACK grants at most max_qos; the SUBACK is capped too, in
// case a broker grants more than asked. Filters are tracked whether or not
// limits are set, so that a max_subs set on a live session counts what it
// holds already.

// subscribe judges a SUBSCRIBE (ls nil: no limits, filters tracked only).
func (f *Filter) subscribe(pkt []byte, ls *policy.Limits) relay.Verdict {
	sub, err := packets.DecodeSubscribe(pkt, f.level)
	if err != nil {
		return relay.Verdict{Broker: pkt} // the topic rules (or the broker) answer a malformed one
	}
	maxSubs, hasMax := ls.Get(policy.MaxSubs)
	maxQoS, capQoS := ls.Get(policy.MaxQoS)
	codes := make([]packets.ReasonCode, len(sub.Filters))
	allowed := make([]packets.SubscribeFilter, 0, len(sub.Filters))
	lowered := false
	f.mu.Lock()
	if f.subs == nil {
		f.subs = map[string]struct{}{}
	}
	for i, sf := range sub.Filters {
		_, held := f.subs[sf.Filter]
		if sf.Err == nil && !held && hasMax && int64(len(f.subs)) >= maxSubs {
			codes[i] = packets.QuotaExceeded
			continue
		}
		if sf.Err == nil {
			f.subs[sf.Filter] = struct{}{}
		}
		if capQoS && int64(sf.Options.QoS()) > maxQoS {
			sf.Options = packets.SubscribeOptions(byte(sf.Options)&^3 | byte(maxQoS))
			lowered = true
		}
		codes[i] = fromBroker
		allowed = append(allowed, sf)
	}
	refused := len(allowed) < len(sub.Filters)
	if refused || capQoS || hasMax {
		if f.pending == nil {
			f.pending = map[uint16]pendingSub{}
		}
		filters := make([]string, len(sub.Filters))
		for i, sf := range sub.Filters {
			filters[i] = sf.Filter
		}
		f.pending[sub.PacketID] = pendingSub{filters: filters, codes: codes}
	}
	f.mu.Unlock()
	return f.subscribeVerdict(pkt, &sub, codes, allowed, refused, lowered)
}

// subscribeVerdict is what a SUBSCRIBE judged becomes: answered here when
// every filter was refused, else forwarded (rewritten when a filter was
// refused or its QoS lowered).
func (f *Filter) subscribeVerdict(pkt []byte, sub *packets.Subscribe, codes []packets.ReasonCode, allowed []packets.SubscribeFilter, refused, lowered bool) relay.Verdict {
	if refused {
		n := 0
		for _, c := range codes {
			if c == packets.QuotaExceeded {
				n++
			}
		}
		for range n {
			f.sess.Refused(policy.MaxSubs, "SUBSCRIBE filter past max_subs refused")
		}
		if f.level == packets.V31 {
			return relay.Verdict{End: true, Cause: "limit"} // 3.1 has no code for a refused filter
		}
	}
	if len(allowed) == 0 {
		f.mu.Lock()
		delete(f.pending, sub.PacketID)
		f.mu.Unlock()
		out, err := packets.AppendSuback(nil, f.level, sub.PacketID, nil, f.clientCodes(codes))
		if err != nil {
			return relay.Verdict{Broker: pkt}
		}
		return relay.Verdict{Client: out}
	}
	if !refused && !lowered {
		return relay.Verdict{Broker: pkt}
	}
	out, err := packets.AppendSubscribe(nil, f.level, sub.PacketID, sub.Properties, allowed)
	if err != nil {
		return relay.Verdict{Broker: pkt}
	}
	return relay.Verdict{Broker: out}
}

// clientCodes maps the codes of filters refused here to the device's
// version (3.1.1: 0x80).
func (f *Filter) clientCodes(codes []packets.ReasonCode) []packets.ReasonCode {
	out := make([]packets.ReasonCode, len(codes))
	for i, c := range codes {
		out[i] = c
		if f.level != packets.V5 && c >= 0x80 && c != fromBroker {
			out[i] = packets.UnspecifiedError
		}
	}
	return out
}

// Down merges a broker's SUBACK: the codes of filters refused here go in
// their places, a granted QoS above max_qos is lowered, and a filter the
// broker refused is no longer held.
func (f *Filter) Down(pkt []byte) relay.Verdict {
	pass := relay.Verdict{Client: pkt}
	ack, err := packets.DecodeSuback(pkt, f.level)
	if err != nil {
		return pass
	}
	f.mu.Lock()
	ps, ok := f.pending[ack.PacketID]
	delete(f.pending, ack.PacketID)
	if ok {
		f.forgetRefused(ps, ack.Codes)
	}
	f.mu.Unlock()
	if !ok {
		return pass
	}
	codes := ps.codes
	merged := f.clientCodes(codes)
	maxQoS, capQoS := f.limits.Load().Get(policy.MaxQoS)
	j, changed := 0, false
	for i, c := range codes {
		if c != fromBroker {
			changed = true
			continue
		}
		if j >= len(ack.Codes) {
			return pass // the broker answered fewer filters than it was sent
		}
		merged[i] = ack.Codes[j]
		if capQoS && merged[i] < 0x80 && int64(merged[i]) > maxQoS {
			merged[i], changed = packets.ReasonCode(maxQoS), true
		}
		j++
	}
	if j != len(ack.Codes) || !changed {
		return pass
	}
	out, err := packets.AppendSuback(nil, f.level, ack.PacketID, ack.Properties, merged)
	if err != nil {
		return pass
	}
	return relay.Verdict{Client: out}
}

// forgetRefused stops holding the filters the broker refused in its
// SUBACK (f.mu held).
func (f *Filter) forgetRefused(ps pendingSub, brokerCodes []packets.ReasonCode) {
	j := 0
	for i, c := range ps.codes {
		if c != fromBroker {
			continue
		}
		if j < len(brokerCodes) && brokerCodes[j] >= 0x80 {
			delete(f.subs, ps.filters[i])
		}
		j++
	}
}
