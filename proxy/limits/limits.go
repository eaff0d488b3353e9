// Package limits is the relay filter that enforces how much a session
// may do (policy.Limits; docs/limits.md): pub_rate and pub_bytes slow the
// device (relay.Verdict.Wait: the relay stops reading it until the tokens
// are there, so TCP pushes back on it and nothing is dropped);
// max_payload, max_qos and retain refuse a PUBLISH past them with their
// codes; max_subs refuses a SUBSCRIBE filter past it in its place in the
// SUBACK, and max_qos lowers what a SUBSCRIBE asks for; max_keepalive
// ends a session silent for 1.5 x S (keepalive.go). Connack makes the
// CONNACK an MQTT 5 device is told its limits in. max_sessions is the
// proxy's, at CONNECT.
//
// In a session's relay.Chain the filter sits on the broker's side of the
// topic rules: a PUBLISH or a SUBSCRIBE filter they refuse never reaches
// it, and counts toward nothing. Every session relayed on the framed path
// has one, so that limits set while it is live apply at once; without
// limits it costs an atomic load a packet, and its state is made when
// the first limit needs it.
package limits

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/relay"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Session is the live session a Filter enforces limits in: what the
// filter tells it, and asks of it.
type Session interface {
	// Refused counts, and logs, what limit l refused (what says it).
	Refused(l policy.Limit, what string)
	// Throttled counts the time limit l holds the device back.
	Throttled(l policy.Limit, d time.Duration)
	// Silent ends the session: its device was silent for 1.5 x s
	// (max_keepalive; MQTT 5: DISCONNECT 0x8D first).
	Silent(s time.Duration)
	// WriteBroker writes a whole packet of the proxy's own to the broker
	// (relay.Session.WriteBroker).
	WriteBroker(pkt []byte) error
	// ClientClosed reports whether the device has shut down its side
	// (relay.Session.ClientClosed).
	ClientClosed() bool
	// Done reports whether the session has ended.
	Done() bool
}

// Options describe the session of a Filter.
type Options struct {
	Session Session
	Level   packets.Level
	// AskedKeepAlive is the keep alive the CONNECT asked for, in seconds;
	// KeepAlive the one the device uses (its own, or the Server Keep
	// Alive of the CONNACK it was sent); 0: none.
	AskedKeepAlive uint16
	KeepAlive      time.Duration
	// DenyDisconnect: a retained PUBLISH of a 3.x device under retain
	// false ends the session (ACL_DENY_ACTION=disconnect) instead of being
	// withheld and acknowledged.
	DenyDisconnect bool
}

var _ relay.Filter = (*Filter)(nil)

// Filter enforces one session's limits inside its relay: a relay.Filter
// for the session's relay.Chain, on the broker's side of the topic rules.
// Create it with New, update it with Update, stop it with Stop when its
// session has ended. Up and Down are each called from one goroutine at a
// time (the relay's two directions), as relay.Filter requires.
type Filter struct {
	sess           Session
	level          packets.Level
	denyDisconnect bool
	limits         atomic.Pointer[policy.Limits]
	keepAlive      time.Duration // the keep alive the device uses; 0: none
	askedKeepAlive uint16        // the one its CONNECT asked for, in seconds

	st *upState // Up's state: only the client's direction touches it

	mu      sync.Mutex
	subs    map[string]struct{}   // filters this connection holds (max_subs)
	pending map[uint16]pendingSub // SUBSCRIBE id -> its filters and the codes of those refused here (fromBroker: the broker's)

	slowUntil atomic.Int64                   // mono ns until which the device is held back (Slowed, the keep alive)
	watch     atomic.Pointer[keepAliveWatch] // max_keepalive's watch of the device's silence; nil: none
	pinger    *time.Timer                    // PINGREQs to the broker through a long wait (under mu)
}

// pendingSub is a SUBSCRIBE whose SUBACK is awaited: its filters in its
// order and the code of each (fromBroker: the broker's).
type pendingSub struct {
	filters []string
	codes   []packets.ReasonCode
}

// fromBroker marks a SUBSCRIBE filter whose code is the broker's.
const fromBroker packets.ReasonCode = 0xFF

// upState is the client direction's state of a session with limits.
type upState struct {
	rate, bytes debtBucket
	withheld    map[uint16]bool // QoS 2 packet ids of retained PUBLISHes refused (3.1.1): their PUBREL is answered here
	slowSince   int64           // mono ns since which every PUBLISH waited; 0: the last one did not
	lastPong    int64           // mono ns of the last PINGRESP sent to a slowed device
}

// New returns the limits filter of a session whose limits are ls (nil:
// none yet).
func New(ls *policy.Limits, o Options) *Filter {
	f := &Filter{sess: o.Session, level: o.Level, denyDisconnect: o.DenyDisconnect, keepAlive: o.KeepAlive, askedKeepAlive: o.AskedKeepAlive}
	f.limits.Store(ls)
	f.watchKeepAlive(ls, true)
	return f
}

// Update installs the limits of a new decision: they apply to the next
// packet (a PUBLISH above a lowered max_qos is refused); the CONNACK's
// properties stay as the device was told until its next CONNECT.
func (f *Filter) Update(ls *policy.Limits) {
	f.limits.Store(ls)
	f.watchKeepAlive(ls, false)
}

// Limits are the limits the filter holds now.
func (f *Filter) Limits() *policy.Limits { return f.limits.Load() }

// mono is a monotonic clock in nanoseconds.
func mono() int64 { return int64(time.Since(monoStart)) }

var monoStart = time.Now()

// Up judges a packet from the device.
func (f *Filter) Up(pkt []byte) relay.Verdict {
	ls := f.limits.Load()
	if w := f.keepAliveWatch(); w != nil && !w.heard.Load() {
		w.heard.Store(true)
	}
	switch packets.Type(pkt[0] >> 4) {
	case packets.PUBLISH:
		if ls == nil {
			return relay.Verdict{Broker: pkt}
		}
		return f.publish(pkt, ls)
	case packets.SUBSCRIBE:
		return f.subscribe(pkt, ls)
	case packets.UNSUBSCRIBE:
		if u, err := packets.DecodeUnsubscribe(pkt, f.level); err == nil {
			f.mu.Lock()
			for _, uf := range u.Filters {
				delete(f.subs, uf.Filter)
			}
			f.mu.Unlock()
		}
	case packets.PUBREL:
		if f.st != nil && len(f.st.withheld) > 0 {
			return f.pubrel(pkt)
		}
	}
	return relay.Verdict{Broker: pkt}
}

// publish applies the quotas to a PUBLISH, then the rates. It reads
// only the PUBLISH's shape (packets.PeekPublish): the topic rules before
// it decoded and judged the PUBLISH (without them, the broker does).
func (f *Filter) publish(pkt []byte, ls *policy.Limits) relay.Verdict {
	p, err := packets.PeekPublish(pkt, f.level)
	if err != nil {
		return relay.Verdict{Broker: pkt}
	}
	if max, ok := ls.Get(policy.MaxPayload); ok && int64(p.PayloadLen) > max {
		return f.refuse(policy.MaxPayload, packets.PacketTooLarge)
	}
	if max, ok := ls.Get(policy.MaxQoS); ok && int64(p.QoS) > max {
		return f.refuse(policy.MaxQoS, packets.QoSNotSupported)
	}
	if p.Retain && !ls.RetainAllowed() {
		if f.level == packets.V5 {
			return f.refuse(policy.Retain, packets.RetainNotSupported)
		}
		return f.denyRetained(pkt, p.QoS)
	}
	return f.pace(pkt, p.PayloadLen, ls)
}

// pace takes the PUBLISH's tokens: it goes on when both buckets have
// them, the relay holding it (and the device) back until then.
func (f *Filter) pace(pkt []byte, size int, ls *policy.Limits) relay.Verdict {
	rate, hasRate := ls.Get(policy.PubRate)
	bytes, hasBytes := ls.Get(policy.PubBytes)
	if !hasRate && !hasBytes {
		return relay.Verdict{Broker: pkt}
	}
	st := f.state()
	now := mono()
	at, which := now, policy.PubRate
	if hasRate {
		at = st.rate.when(now, 1, float64(rate))
	}
	if hasBytes {
		if t := st.bytes.when(now, float64(size), float64(bytes)); t > at {
			at, which = t, policy.PubBytes
		}
	}
	if hasRate {
		st.rate.take(at, 1, float64(rate))
	}
	if hasBytes {
		st.bytes.take(at, float64(size), float64(bytes))
	}
	wait := time.Duration(at - now)
	if wait <= 0 {
		st.slowSince = 0
		return relay.Verdict{Broker: pkt}
	}
	return f.slow(pkt, wait, at, now, which)
}

// slow holds a PUBLISH back for wait. A device held back for a while
// gets a PINGRESP every pingEvery: its own PINGREQ may sit behind the
// PUBLISHes the proxy does not read yet, and must not time it out. A wait
// longer than that pings the broker meanwhile, so that the broker's keep
// alive does not end the session either (the broker's PINGRESP reaches
// the device, which takes it as the answer to its own).
func (f *Filter) slow(pkt []byte, wait time.Duration, at, now int64, which policy.Limit) relay.Verdict {
	st := f.st
	f.sess.Throttled(which, wait)
	f.slowUntil.Store(at)
	v := relay.Verdict{Broker: pkt, Wait: wait}
	every := f.pingEvery()
	if st.slowSince == 0 {
		st.slowSince = now
	}
	if every > 0 && now-st.slowSince >= int64(every) && now-st.lastPong >= int64(every) && !f.sess.ClientClosed() {
		st.lastPong = now
		v.Client = []byte{byte(packets.PINGRESP) << 4, 0}
	}
	if every > 0 && wait > every {
		f.pingBrokerUntil(at, every)
	}
	return v
}

// pingEvery is how often a slowed device is answered a PINGRESP (and the
// broker pinged through a long wait): half the keep alive, at most 5 s
// (clients give a PINGRESP that long or longer); 0 without a keep alive.
func (f *Filter) pingEvery() time.Duration {
	if f.keepAlive <= 0 {
		return 0
	}
	return min(f.keepAlive/2, 5*time.Second)
}

// pingBrokerUntil sends the broker a PINGREQ every interval until the
// device's wait ends at (mono ns).
func (f *Filter) pingBrokerUntil(at int64, every time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pinger != nil {
		f.pinger.Stop()
	}
	var t *time.Timer
	t = time.AfterFunc(every, func() {
		if f.sess.Done() || mono() >= at {
			return
		}
		_ = f.sess.WriteBroker([]byte{byte(packets.PINGREQ) << 4, 0})
		f.mu.Lock()
		if f.pinger == t {
			t.Reset(min(every, time.Duration(at-mono())))
		}
		f.mu.Unlock()
	})
	f.pinger = t
}

// state returns Up's state, made at the first packet that needs it.
func (f *Filter) state() *upState {
	if f.st == nil {
		f.st = &upState{}
	}
	return f.st
}

// refuse ends the session for a PUBLISH past a quota: MQTT 5 with a
// DISCONNECT of code first, 3.1.1 closed.
func (f *Filter) refuse(l policy.Limit, code packets.ReasonCode) relay.Verdict {
	f.sess.Refused(l, "PUBLISH past "+l.String()+"; closing")
	v := relay.Verdict{End: true, Cause: "limit"}
	if f.level == packets.V5 {
		v.Client = packets.AppendDisconnect(nil, packets.V5, code)
	}
	return v
}

// denyRetained refuses a retained PUBLISH of a 3.x device as the topic
// rules refuse a PUBLISH (ACL_DENY_ACTION): withheld and acknowledged, or
// the session ends.
func (f *Filter) denyRetained(pkt []byte, qos byte) relay.Verdict {
	f.sess.Refused(policy.Retain, "retained PUBLISH withheld (retain false)")
	if f.denyDisconnect {
		return relay.Verdict{End: true, Cause: "limit"}
	}
	if qos == 0 {
		return relay.Verdict{}
	}
	p, err := packets.DecodePublish(pkt, f.level) // its packet identifier
	if err != nil {
		return relay.Verdict{End: true, Cause: "malformed"}
	}
	switch p.QoS {
	case 1:
		return relay.Verdict{Client: packets.AppendAck(nil, packets.PUBACK, f.level, p.PacketID, packets.Success)}
	case 2:
		st := f.state()
		if st.withheld == nil {
			st.withheld = map[uint16]bool{}
		}
		st.withheld[p.PacketID] = true
		return relay.Verdict{Client: packets.AppendAck(nil, packets.PUBREC, f.level, p.PacketID, packets.Success)}
	}
	return relay.Verdict{}
}

// pubrel completes the QoS 2 flow of a PUBLISH withheld here.
func (f *Filter) pubrel(pkt []byte) relay.Verdict {
	a, err := packets.DecodeAck(pkt, f.level)
	if err != nil || !f.st.withheld[a.PacketID] {
		return relay.Verdict{Broker: pkt}
	}
	delete(f.st.withheld, a.PacketID)
	return relay.Verdict{Client: packets.AppendAck(nil, packets.PUBCOMP, f.level, a.PacketID, packets.Success)}
}

// Malformed ends the session on a stream that cannot be framed (the topic
// rules' filter answers first when there is one: it is on the device's
// side).
func (f *Filter) Malformed(err error) relay.Verdict {
	code := packets.MalformedPacket
	if f.level != packets.V5 {
		return relay.Verdict{End: true, Cause: "malformed"}
	}
	return relay.Verdict{End: true, Cause: "malformed", Client: packets.AppendDisconnect(nil, packets.V5, code)}
}

// WantsDown: SUBACKs, to merge the codes of filters refused here and to
// learn which filters the broker refused.
func (f *Filter) WantsDown(t packets.Type) relay.Want {
	if t == packets.SUBACK {
		return relay.WantWhole
	}
	return relay.WantPass
}

// DownHead is never called: no type is wanted by its head.
func (f *Filter) DownHead([]byte, int) (relay.Verdict, bool) {
	return relay.Verdict{End: true, Cause: "malformed"}, true
}

// Slowed reports whether the session's device is being held back by a
// rate now (or was within the last second); false for a nil filter.
func (f *Filter) Slowed() bool {
	return f != nil && f.slowUntil.Load() > mono()-int64(time.Second)
}

// Stop stops the filter's timers when its session has ended (nil: no
// filter, nothing to do).
func (f *Filter) Stop() {
	if f == nil {
		return
	}
	if w := f.keepAliveWatch(); w != nil {
		w.stop()
	}
	f.mu.Lock()
	if f.pinger != nil {
		f.pinger.Stop()
		f.pinger = nil
	}
	f.mu.Unlock()
}

// Describe lists the session's limits, "pub_rate=20 (user), ..." ("" for
// none or a nil filter).
func (f *Filter) Describe() string {
	if f == nil || f.limits.Load().Empty() {
		return ""
	}
	return f.limits.Load().String()
}
