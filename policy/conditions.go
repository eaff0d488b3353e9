package policy

import (
	"strconv"
	"strings"

	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// Condition limits what a topic grant allows, as EMQX's authorization
// rules' qos and retain conditions do: a publish grant lets through only
// PUBLISHes of the QoS levels and the retain flag it names, a subscribe
// grant only subscriptions at the QoS levels it names. The zero Condition
// allows everything.
type Condition struct {
	// QoS: bit q set lets QoS q through; 0 lets every QoS through.
	QoS uint8
	// Retain: RetainAny, RetainOnly (retained PUBLISHes only) or
	// RetainNever (non-retained only).
	Retain RetainCondition
}

// RetainCondition is a grant's condition on a PUBLISH's retain flag.
type RetainCondition uint8

// Retain conditions.
const (
	RetainAny RetainCondition = iota
	RetainOnly
	RetainNever
)

// Unconditional reports whether c allows everything.
func (c Condition) Unconditional() bool { return c.QoS&7 == 0 && c.Retain == RetainAny }

// AllowsQoS reports whether c lets QoS qos through.
func (c Condition) AllowsQoS(qos byte) bool { return c.QoS == 0 || c.QoS&(1<<qos) != 0 }

// AllowsPublish reports whether c lets a PUBLISH of that QoS and retain
// flag through.
func (c Condition) AllowsPublish(qos byte, retain bool) bool {
	if !c.AllowsQoS(qos) {
		return false
	}
	switch c.Retain {
	case RetainOnly:
		return retain
	case RetainNever:
		return !retain
	}
	return true
}

// String says what c allows ("qos 0,1 and retain false"), "" when it
// allows everything.
func (c Condition) String() string {
	var parts []string
	if c.QoS != 0 {
		var qs []string
		for q := range 3 {
			if c.QoS&(1<<q) != 0 {
				qs = append(qs, strconv.Itoa(q))
			}
		}
		parts = append(parts, "qos "+strings.Join(qs, ","))
	}
	switch c.Retain {
	case RetainOnly:
		parts = append(parts, "retain true")
	case RetainNever:
		parts = append(parts, "retain false")
	}
	return strings.Join(parts, " and ")
}

func hasConditions(gs []Grant) bool {
	for i := range gs {
		if !gs[i].Cond.Unconditional() {
			return true
		}
	}
	return false
}

// Conditional reports whether some grant of r has a Condition: a PUBLISH
// is then judged by CanPublishAs, a SUBSCRIBE by CanSubscribeAs.
func (r *TopicRules) Conditional() bool { return r.conditional && !r.All }

// CanPublishAs reports whether a PUBLISH to topic, a topic name, with
// that QoS and retain flag may go on, and the grant that allows it: the
// first grant that matches the topic and whose condition lets the PUBLISH
// through.
func (r *TopicRules) CanPublishAs(topic string, qos byte, retain bool) (Grant, bool) {
	if !r.Conditional() {
		return r.CanPublish(topic)
	}
	return r.pub.matchWhere(topic, func(g *Grant) bool { return g.Cond.AllowsPublish(qos, retain) })
}

// CanSubscribeAs reports whether filter may be subscribed to at that
// QoS (as CanSubscribe, and as EMQX judges a qos condition): one grant
// that covers the filter must let the QoS through.
func (r *TopicRules) CanSubscribeAs(filter string, qos byte) (Grant, bool) {
	if !r.Conditional() {
		return r.CanSubscribe(filter)
	}
	if _, f, ok := packets.SplitShared(filter); ok {
		filter = f
	}
	levels := strings.Split(filter, "/")
	for _, g := range r.subscribe {
		if (g.exact != "" && filter == g.exact || g.exact == "" && covers(g.levels, levels)) && g.Cond.AllowsQoS(qos) {
			return g, true
		}
	}
	return Grant{}, false
}
