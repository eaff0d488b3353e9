package packets

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	paho "github.com/eclipse/paho.golang/packets"
	mochimqtt "github.com/mochi-mqtt/server/v2"
	mochi "github.com/mochi-mqtt/server/v2/packets"
)

// Differential tests of the packets after CONNECT: the same bytes through
// this codec, mochi-mqtt's packets (all levels; its decoders plus the
// Validate methods its server calls) and paho.golang's (v5 only). Where two
// accept, they must agree on every field both decode (rendered as one
// summary string). Where they disagree about validity, the disagreement
// must be one of those explained below, each with the rule that decides
// who is right.

// verdict is one decoder's reading of a packet.
type verdict struct {
	ok       bool
	sum      string // the fields both sides decode
	panicked bool
	err      error
}

func sumUsers[U any](us []U, kv func(U) (string, string)) string {
	var parts []string
	for _, u := range us {
		k, v := kv(u)
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

func oursAfter(pkt []byte, level Level) verdict {
	var t Type
	if len(pkt) > 0 {
		t = Type(pkt[0] >> 4)
	}
	users := func(p Properties) string {
		return sumUsers(p.UserProperties(), func(u [2]string) (string, string) { return u[0], u[1] })
	}
	reason := func(p Properties) string { r, _ := p.Get(PropReasonString); return r.Str }
	switch t {
	case PUBLISH:
		p, err := DecodePublish(pkt, level)
		if err != nil {
			return verdict{err: err}
		}
		alias, _ := p.TopicAlias()
		return verdict{ok: true, sum: fmt.Sprintf("PUBLISH dup=%v qos=%d retain=%v topic=%q id=%d alias=%d users=%s payload=%x",
			p.Dup, p.QoS, p.Retain, p.Topic, p.PacketID, alias, users(p.Properties), p.Payload)}
	case SUBSCRIBE:
		s, err := DecodeSubscribe(pkt, level)
		if err != nil {
			return verdict{err: err}
		}
		id, _ := s.Properties.Get(PropSubscriptionID)
		var fs []string
		for _, f := range s.Filters {
			o := f.Options
			fs = append(fs, fmt.Sprintf("%q/q%d/nl%v/rap%v/rh%d", f.Filter, o.QoS(), o.NoLocal(), o.RetainAsPublished(), o.RetainHandling()))
		}
		return verdict{ok: true, sum: fmt.Sprintf("SUBSCRIBE id=%d subid=%d users=%s filters=%s", s.PacketID, id.Int, users(s.Properties), fs)}
	case SUBACK:
		s, err := DecodeSuback(pkt, level)
		if err != nil {
			return verdict{err: err}
		}
		return verdict{ok: true, sum: fmt.Sprintf("SUBACK id=%d codes=%x reason=%q", s.PacketID, s.Codes, reason(s.Properties))}
	case UNSUBSCRIBE:
		u, err := DecodeUnsubscribe(pkt, level)
		if err != nil {
			return verdict{err: err}
		}
		var fs []string
		for _, f := range u.Filters {
			fs = append(fs, f.Filter)
		}
		return verdict{ok: true, sum: fmt.Sprintf("UNSUBSCRIBE id=%d users=%s filters=%q", u.PacketID, users(u.Properties), fs)}
	case UNSUBACK:
		u, err := DecodeUnsuback(pkt, level)
		if err != nil {
			return verdict{err: err}
		}
		return verdict{ok: true, sum: fmt.Sprintf("UNSUBACK id=%d codes=%x reason=%q", u.PacketID, u.Codes, reason(u.Properties))}
	case PUBACK, PUBREC, PUBREL, PUBCOMP:
		a, err := DecodeAck(pkt, level)
		if err != nil {
			return verdict{err: err}
		}
		return verdict{ok: true, sum: fmt.Sprintf("%s id=%d code=%x reason=%q", a.Type, a.PacketID, byte(a.Code), reason(a.Properties))}
	case DISCONNECT:
		d, err := DecodeDisconnect(pkt, level)
		if err != nil {
			return verdict{err: err}
		}
		exp, _ := d.Properties.Get(PropSessionExpiry)
		return verdict{ok: true, sum: fmt.Sprintf("DISCONNECT code=%x reason=%q expiry=%d", byte(d.Code), reason(d.Properties), exp.Int)}
	}
	return verdict{err: errors.New("not a packet after CONNECT")}
}

// mochiAfter runs mochi's fixed header, decoder and (where its server
// calls one) validator for the packet's type.
func mochiAfter(pkt []byte, level Level) (v verdict) {
	defer func() {
		if r := recover(); r != nil {
			v = verdict{panicked: true, err: fmt.Errorf("panic: %v", r)}
		}
	}()
	var pk mochi.Packet
	pk.ProtocolVersion = byte(level)
	if len(pkt) < 2 {
		return verdict{err: errors.New("short")}
	}
	if err := pk.FixedHeader.Decode(pkt[0]); err != nil {
		return verdict{err: err}
	}
	h, err := ParseHeader(pkt)
	if err != nil || h.Size() != len(pkt) {
		return verdict{err: errors.New("framing")}
	}
	pk.FixedHeader.Remaining = h.RemainingLength
	body := append([]byte{}, pkt[h.HeaderLen:]...)
	users := func(p mochi.Properties) string {
		return sumUsers(p.User, func(u mochi.UserProperty) (string, string) { return u.Key, u.Val })
	}
	code := mochi.CodeSuccess
	var sum string
	switch pk.FixedHeader.Type {
	case mochi.Publish:
		if err = pk.PublishDecode(body); err == nil {
			code = pk.PublishValidate(0xFFFF)
		}
		sum = fmt.Sprintf("PUBLISH dup=%v qos=%d retain=%v topic=%q id=%d alias=%d users=%s payload=%x",
			pk.FixedHeader.Dup, pk.FixedHeader.Qos, pk.FixedHeader.Retain, pk.TopicName, pk.PacketID,
			pk.Properties.TopicAlias, users(pk.Properties), pk.Payload)
	case mochi.Subscribe:
		if err = pk.SubscribeDecode(body); err == nil {
			code = pk.SubscribeValidate()
		}
		subid := 0
		if len(pk.Properties.SubscriptionIdentifier) > 0 {
			subid = pk.Properties.SubscriptionIdentifier[0]
		}
		var fs []string
		for _, f := range pk.Filters {
			fs = append(fs, fmt.Sprintf("%q/q%d/nl%v/rap%v/rh%d", f.Filter, f.Qos, f.NoLocal, f.RetainAsPublished, f.RetainHandling))
		}
		sum = fmt.Sprintf("SUBSCRIBE id=%d subid=%d users=%s filters=%s", pk.PacketID, subid, users(pk.Properties), fs)
	case mochi.Suback:
		err = pk.SubackDecode(body)
		codes := []ReasonCode{}
		for _, c := range pk.ReasonCodes {
			codes = append(codes, ReasonCode(c))
		}
		sum = fmt.Sprintf("SUBACK id=%d codes=%x reason=%q", pk.PacketID, codes, pk.Properties.ReasonString)
	case mochi.Unsubscribe:
		if err = pk.UnsubscribeDecode(body); err == nil {
			code = pk.UnsubscribeValidate()
		}
		var fs []string
		for _, f := range pk.Filters {
			fs = append(fs, f.Filter)
		}
		sum = fmt.Sprintf("UNSUBSCRIBE id=%d users=%s filters=%q", pk.PacketID, users(pk.Properties), fs)
	case mochi.Unsuback:
		err = pk.UnsubackDecode(body)
		var codes []ReasonCode
		for _, c := range pk.ReasonCodes {
			codes = append(codes, ReasonCode(c))
		}
		sum = fmt.Sprintf("UNSUBACK id=%d codes=%x reason=%q", pk.PacketID, codes, pk.Properties.ReasonString)
	case mochi.Puback, mochi.Pubrec, mochi.Pubrel, mochi.Pubcomp:
		switch pk.FixedHeader.Type {
		case mochi.Puback:
			err = pk.PubackDecode(body)
		case mochi.Pubrec:
			err = pk.PubrecDecode(body)
		case mochi.Pubrel:
			err = pk.PubrelDecode(body)
		default:
			err = pk.PubcompDecode(body)
		}
		if err == nil && !pk.ReasonCodeValid() {
			code = mochi.ErrProtocolViolation
		}
		sum = fmt.Sprintf("%s id=%d code=%x reason=%q", Type(pk.FixedHeader.Type), pk.PacketID, pk.ReasonCode, pk.Properties.ReasonString)
	case mochi.Disconnect:
		err = pk.DisconnectDecode(body)
		sum = fmt.Sprintf("DISCONNECT code=%x reason=%q expiry=%d", pk.ReasonCode, pk.Properties.ReasonString, pk.Properties.SessionExpiryInterval)
	default:
		return verdict{err: errors.New("other type")}
	}
	if err != nil {
		return verdict{err: err}
	}
	if code != mochi.CodeSuccess {
		return verdict{err: code}
	}
	return verdict{ok: true, sum: sum}
}

// pahoAfter runs paho.golang's v5 reader.
func pahoAfter(pkt []byte) (v verdict) {
	defer func() {
		if r := recover(); r != nil {
			v = verdict{panicked: true, err: fmt.Errorf("panic: %v", r)}
		}
	}()
	// paho reads one packet from a stream: give it exactly one.
	if h, err := ParseHeader(pkt); err != nil || h.Size() != len(pkt) {
		return verdict{err: errors.New("framing")}
	}
	cp, err := paho.ReadPacket(bytes.NewReader(pkt))
	if err != nil {
		return verdict{err: err}
	}
	users := func(p *paho.Properties) string {
		return sumUsers(p.User, func(u paho.User) (string, string) { return u.Key, u.Value })
	}
	switch c := cp.Content.(type) {
	case *paho.Publish:
		var alias uint16
		if c.Properties.TopicAlias != nil {
			alias = *c.Properties.TopicAlias
		}
		return verdict{ok: true, sum: fmt.Sprintf("PUBLISH dup=%v qos=%d retain=%v topic=%q id=%d alias=%d users=%s payload=%x",
			c.Duplicate, c.QoS, c.Retain, c.Topic, c.PacketID, alias, users(c.Properties), c.Payload)}
	case *paho.Subscribe:
		subid := 0
		if c.Properties.SubscriptionIdentifier != nil {
			subid = *c.Properties.SubscriptionIdentifier
		}
		var fs []string
		for _, f := range c.Subscriptions {
			fs = append(fs, fmt.Sprintf("%q/q%d/nl%v/rap%v/rh%d", f.Topic, f.QoS, f.NoLocal, f.RetainAsPublished, f.RetainHandling))
		}
		return verdict{ok: true, sum: fmt.Sprintf("SUBSCRIBE id=%d subid=%d users=%s filters=%s", c.PacketID, subid, users(c.Properties), fs)}
	case *paho.Suback:
		codes := []ReasonCode{}
		for _, r := range c.Reasons {
			codes = append(codes, ReasonCode(r))
		}
		return verdict{ok: true, sum: fmt.Sprintf("SUBACK id=%d codes=%x reason=%q", c.PacketID, codes, c.Properties.ReasonString)}
	case *paho.Unsubscribe:
		return verdict{ok: true, sum: fmt.Sprintf("UNSUBSCRIBE id=%d users=%s filters=%q", c.PacketID, users(c.Properties), c.Topics)}
	case *paho.Unsuback:
		var codes []ReasonCode
		for _, r := range c.Reasons {
			codes = append(codes, ReasonCode(r))
		}
		return verdict{ok: true, sum: fmt.Sprintf("UNSUBACK id=%d codes=%x reason=%q", c.PacketID, codes, c.Properties.ReasonString)}
	case *paho.Puback:
		return verdict{ok: true, sum: fmt.Sprintf("PUBACK id=%d code=%x reason=%q", c.PacketID, c.ReasonCode, c.Properties.ReasonString)}
	case *paho.Pubrec:
		return verdict{ok: true, sum: fmt.Sprintf("PUBREC id=%d code=%x reason=%q", c.PacketID, c.ReasonCode, c.Properties.ReasonString)}
	case *paho.Pubrel:
		return verdict{ok: true, sum: fmt.Sprintf("PUBREL id=%d code=%x reason=%q", c.PacketID, c.ReasonCode, c.Properties.ReasonString)}
	case *paho.Pubcomp:
		return verdict{ok: true, sum: fmt.Sprintf("PUBCOMP id=%d code=%x reason=%q", c.PacketID, c.ReasonCode, c.Properties.ReasonString)}
	case *paho.Disconnect:
		var exp uint32
		if c.Properties.SessionExpiryInterval != nil {
			exp = *c.Properties.SessionExpiryInterval
		}
		return verdict{ok: true, sum: fmt.Sprintf("DISCONNECT code=%x reason=%q expiry=%d", c.ReasonCode, c.Properties.ReasonString, exp)}
	}
	return verdict{err: errors.New("other type")}
}

// disagreements counts the disagreements seen, by explanation.
type disagreements struct {
	t       *testing.T
	counts  map[string]int
	example map[string]string
}

func (d *disagreements) add(why, example string) {
	if d.counts[why] == 0 {
		d.example[why] = example
	}
	d.counts[why]++
}

func (d *disagreements) report() {
	var whys []string
	for w := range d.counts {
		whys = append(whys, w)
	}
	sort.Strings(whys)
	for _, w := range whys {
		d.t.Logf("%6d  %s\n        e.g. %s", d.counts[w], w, d.example[w])
	}
}

func (d *disagreements) compare(pkt []byte, level Level) {
	ours := oursAfter(pkt, level)
	var rule string
	var pe *Error
	if errors.As(ours.err, &pe) {
		rule = pe.Rule
	}
	ex := fmt.Sprintf("%s %x", level, pkt)
	m := mochiAfter(pkt, level)
	switch {
	case m.panicked:
		if why := mochiPanic(pkt, level, ours, m); why != "" {
			d.add("mochi panics: "+why, ex)
		} else {
			d.t.Errorf("%s: unexplained mochi %v; ours %v", ex, m.err, ours.err)
		}
	case ours.ok && m.ok && ours.sum != m.sum:
		if why := mochiFieldDisagreement(pkt, level, ours.sum, m.sum); why != "" {
			d.add("mochi fields: "+why, ex)
		} else {
			d.t.Errorf("%s: mochi disagrees on fields\nours  %s\nmochi %s", ex, ours.sum, m.sum)
		}
	case ours.ok != m.ok:
		if why := mochiValidity(pkt, level, ours, rule, m); why != "" {
			d.add("mochi validity: "+why, ex)
		} else {
			d.t.Errorf("%s: unexplained validity disagreement with mochi: ours %v (%s), mochi %v", ex, ours.err, ours.sum, m.err)
		}
	}
	if level == V5 {
		p := pahoAfter(pkt)
		switch {
		case p.panicked:
			d.add("paho panics", ex)
		case ours.ok && p.ok && ours.sum != p.sum:
			if why := pahoFieldDisagreement(pkt, ours.sum, p.sum); why != "" {
				d.add("paho fields: "+why, ex)
			} else {
				d.t.Errorf("%s: paho disagrees on fields\nours %s\npaho %s", ex, ours.sum, p.sum)
			}
		case ours.ok != p.ok:
			if why := pahoValidity(pkt, ours, rule, p); why != "" {
				d.add("paho validity: "+why, ex)
			} else {
				d.t.Errorf("%s: unexplained validity disagreement with paho: ours %v (%s), paho %v", ex, ours.err, ours.sum, p.err)
			}
		}
	}
	// Per-filter validity against mochi's server-side IsValidFilter.
	if Type(pkt[0]>>4) == SUBSCRIBE && ours.ok {
		s, _ := DecodeSubscribe(pkt, level)
		for _, f := range s.Filters {
			if mv := mochimqtt.IsValidFilter(f.Filter, false); mv != (f.Err == nil) {
				if why := filterDisagreement(f.Filter, f.Err); why != "" {
					d.add("mochi IsValidFilter: "+why, fmt.Sprintf("%q", f.Filter))
				} else {
					d.t.Errorf("filter %q: ours %v, mochi valid=%v", f.Filter, f.Err, mv)
				}
			}
		}
	}
}

// Explanations. Each names who is right by the spec; the tests fail on a
// disagreement none of them covers.

// uncheckedByMochi: rules this codec enforces that mochi-mqtt's packets
// (decoder and Validate methods) do not, so mochi accepts what we refuse.
// In each case the spec is with this codec: the rule cited says so.
var uncheckedByMochi = map[string]string{
	"MQTT-1.5.5-1":   "mochi accepts a non-minimal variable byte integer [MQTT-1.5.5-1]",
	"MQTT-3.3.2.3":   "mochi accepts a repeated single-use property (3.3.2.3: protocol error)",
	"MQTT-3.8.2.1":   "mochi accepts a repeated single-use property (3.8.2.1: protocol error)",
	"MQTT-3.9.2.1":   "mochi accepts a repeated single-use property (3.9.2.1: protocol error)",
	"MQTT-3.11.2.1":  "mochi accepts a repeated single-use property (3.11.2.1: protocol error)",
	"MQTT-3.4.2.2":   "mochi accepts a repeated single-use property (3.4.2.2: protocol error)",
	"MQTT-3.5.2.2":   "mochi accepts a repeated single-use property (3.5.2.2: protocol error)",
	"MQTT-3.6.2.2":   "mochi accepts a repeated single-use property (3.6.2.2: protocol error)",
	"MQTT-3.7.2.2":   "mochi accepts a repeated single-use property (3.7.2.2: protocol error)",
	"MQTT-3.14.2.2":  "mochi accepts a repeated single-use property (3.14.2.2: protocol error)",
	"MQTT-3.3.2.3.2": "mochi accepts a Payload Format Indicator other than 0 or 1 (3.3.2.3.2)",
	"MQTT-3.8.2.1.2": "mochi accepts Subscription Identifier 0 in SUBSCRIBE (3.8.2.1.2: protocol error)",
	"MQTT-3.3.2-14":  "mochi does not check the Response Topic [MQTT-3.3.2-14]",
	"MQTT-4.7.3-1":   "mochi does not check the Response Topic is non-empty [MQTT-4.7.3-1]",
	"MQTT-3.8.3-5":   "mochi accepts reserved subscription option bits [MQTT-3.8.3-5]",
	"MQTT-3.8.3.1":   "mochi accepts Retain Handling 3 (3.8.3.1: protocol error)",
	"MQTT-3.8.3-4":   "mochi's server answers No Local on a shared subscription with SUBACK code 0x82, which SUBACK cannot carry; the spec makes it a protocol error [MQTT-3.8.3-4]",
	"MQTT-3.8.4-6":   "mochi accepts a SUBACK without reason codes [MQTT-3.8.4-6]",
	"MQTT-3.9.3-2":   "mochi accepts any SUBACK return code in 3.1.1 [MQTT-3.9.3-2]",
	"MQTT-3.9.3":     "mochi accepts any SUBACK reason code in 5 (3.9.3)",
	"MQTT-3.1 3.9":   "mochi accepts a SUBACK failure code in 3.1, which has none (3.1 section 3.9)",
	"MQTT-3.11.3":    "mochi checks no UNSUBACK reason code (3.11.3)",
	"MQTT-2.2.1-5":   "mochi accepts packet identifier 0 in PUBACK..PUBCOMP [MQTT-2.2.1-5]",
	"MQTT-2.2.1-6":   "mochi accepts packet identifier 0 in SUBACK/UNSUBACK [MQTT-2.2.1-6]",
	"MQTT-2.4":       "mochi does not check PUBACK and DISCONNECT reason codes (Table 2-6)",
	"MQTT-3.4.1":     "mochi ignores bytes after a v3 acknowledgement's packet identifier",
	"MQTT-3.5.1":     "mochi ignores bytes after a v3 acknowledgement's packet identifier",
	"MQTT-3.6.1":     "mochi ignores bytes after a v3 acknowledgement's packet identifier",
	"MQTT-3.7.1":     "mochi ignores bytes after a v3 acknowledgement's packet identifier",
	"MQTT-3.11.1":    "mochi ignores bytes after a v3 UNSUBACK's packet identifier",
	"MQTT-3.14.1":    "mochi ignores the body of a v3 DISCONNECT",
}

// mochiPanic explains a panic of mochi's decoder: the packet must be one
// we refuse, for the reason named.
func mochiPanic(pkt []byte, level Level, ours verdict, m verdict) string {
	var pe *Error
	if !errors.As(ours.err, &pe) {
		return ""
	}
	if Type(pkt[0]>>4) == SUBSCRIBE && level == V5 && strings.Contains(m.err.Error(), "index out of range") &&
		strings.HasSuffix(pe.Msg, "subscription options: truncated") {
		// SubscribeDecode reads a v5 options byte without a bounds check.
		return "v5 SUBSCRIBE whose last filter has no options byte: SubscribeDecode indexes past the buffer (we: malformed)"
	}
	return ""
}

// mochiFieldDisagreement: mochi and this codec accept, but read it apart.
func mochiFieldDisagreement(pkt []byte, level Level, ours, m string) string {
	if Type(pkt[0]>>4) == DISCONNECT && level == V5 && len(pkt) == 3 {
		// A DISCONNECT of remaining length 1 carries a reason code and no
		// properties [MQTT-3.14.2.1]; mochi reads the code only from a
		// remaining length of 2, so it turns 0x04 (disconnect with will
		// message) into a normal disconnection and drops the will.
		return "mochi ignores the reason code of a DISCONNECT of remaining length 1 (3.14.2.1)"
	}
	return ""
}

func mochiValidity(pkt []byte, level Level, ours verdict, rule string, m verdict) string {
	if !ours.ok {
		if why, ok := uncheckedByMochi[rule]; ok {
			return why
		}
		var pe *Error
		if errors.As(ours.err, &pe) && pe.Code == MalformedPacket && rule == "" && strings.Contains(pe.Msg, "property") {
			// mochi's property reader is given the rest of the body, not
			// the Property Length's bytes (2.2.2.1), so a property cut
			// short by the length is read on into the payload.
			return "mochi reads a property past the Property Length (2.2.2.1); we refuse it as malformed"
		}
		return ""
	}
	// We accept, mochi refuses.
	if Type(pkt[0]>>4) == PUBLISH && errors.Is(m.err, mochi.ErrProtocolViolationSurplusSubID) {
		// PublishValidate judges a client's PUBLISH, which must not carry a
		// Subscription Identifier [MQTT-3.3.4-6]; a server's PUBLISH does.
		// This decoder reads both directions; the relay checks direction.
		return "mochi's PublishValidate refuses a Subscription Identifier: client direction only [MQTT-3.3.4-6]"
	}
	return ""
}

// pahoFieldDisagreement: paho and this codec accept, but read it apart.
func pahoFieldDisagreement(pkt []byte, ours, p string) string { return "" }

// pahoValidity: paho.golang is a client library; it validates little.
func pahoValidity(pkt []byte, ours verdict, rule string, p verdict) string {
	if !ours.ok {
		if rule != "" {
			return "paho does not check [" + rule + "]"
		}
		var pe *Error
		if errors.As(ours.err, &pe) && strings.Contains(pe.Msg, "properties length") && strings.Contains(pe.Msg, "exceeds the packet") {
			// Properties.Unpack takes r.Next(size), which returns fewer
			// bytes when there are fewer, without an error.
			return "paho accepts a Property Length beyond the packet (2.2.2.1)"
		}
		if Type(pkt[0]>>4) == UNSUBSCRIBE && errors.As(ours.err, &pe) && strings.HasSuffix(pe.Msg, "topic filter: truncated") {
			// Unsubscribe.Unpack stops at the first io.EOF, which
			// readString also returns for a string cut short.
			return "paho drops a truncated last UNSUBSCRIBE filter silently (we: malformed)"
		}
		return ""
	}
	if Type(pkt[0]>>4) == DISCONNECT && len(pkt) == 2 {
		// Remaining length 0 means Normal disconnection [MQTT-3.14.2.1].
		return "paho refuses a DISCONNECT of remaining length 0 (3.14.2.1 allows it)"
	}
	return ""
}

// filterDisagreement explains where mochi's IsValidFilter (the per-filter
// check of its server) and this codec judge a topic filter apart.
func filterDisagreement(f string, err *Error) string {
	if err == nil {
		if f == "$share" || strings.HasPrefix(f, "$share") && !strings.HasPrefix(f, "$share/") {
			return "mochi refuses a filter whose first level is $share: only $share/ starts a shared subscription [MQTT-4.8.2-1]"
		}
		if strings.HasPrefix(strings.ToLower(f), "$share/") && !strings.HasPrefix(f, "$share/") {
			return "mochi reads $SHARE/ case-insensitively: filters are case-sensitive (4.7.3)"
		}
		return ""
	}
	switch err.Rule {
	case "MQTT-4.7.1-2":
		return "mochi does not check that '+' fills its level [MQTT-4.7.1-2]"
	case "MQTT-4.7.1-1":
		return "mochi checks only that '#' is last, not alone in its level [MQTT-4.7.1-1]"
	case "MQTT-4.8.2-1":
		return "mochi accepts an empty share name [MQTT-4.8.2-1]"
	case "MQTT-4.8.2-2":
		if _, rest, _ := strings.Cut(strings.TrimPrefix(f, "$share/"), "/"); rest == "" {
			return "mochi accepts $share/<group>/ with no filter after it [MQTT-4.8.2-2]"
		}
	}
	return ""
}

func newDisagreements(t *testing.T) *disagreements {
	return &disagreements{t: t, counts: map[string]int{}, example: map[string]string{}}
}

func TestDifferentialAfterConnectFixtures(t *testing.T) {
	d := newDisagreements(t)
	for _, f := range append(append([]pfix{}, validAfterConnect...), invalidAfterConnect...) {
		for _, level := range f.levels {
			d.compare(f.pkt, level)
		}
	}
	d.report()
}

func TestDifferentialAfterConnectRandom(t *testing.T) {
	d := newDisagreements(t)
	g := gen{rand.New(rand.NewPCG(11, 12))}
	for i := 0; i < 30000; i++ {
		level := lvAll[i%3]
		pkt := g.packet(level)
		d.compare(pkt, level)
		// A mutated copy: one bit flipped, or one byte cut from the body
		// (the remaining length fixed up).
		m := bytes.Clone(pkt)
		if g.r.IntN(2) == 0 {
			m[g.r.IntN(len(m))] ^= byte(1 << g.r.IntN(8))
		} else if h, err := ParseHeader(pkt); err == nil && h.RemainingLength > 0 {
			body := bytes.Clone(pkt[h.HeaderLen:])
			cut := g.r.IntN(len(body))
			m = AppendPacket(nil, pkt[0], append(body[:cut], body[cut+1:]...))
		}
		if len(m) >= 2 {
			d.compare(m, level)
		}
	}
	d.report()
}
