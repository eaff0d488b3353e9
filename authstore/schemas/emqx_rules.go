package schemas

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/logsafe"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// readACL reads the authorizer's hash: each field a topic filter ("eq " and
// a filter: that filter only), each value the rule. A rule's qos and
// retain conditions go with its grant (policy.Condition): it grants what
// it says, no more. A rule EMQX would not read, one whose placeholder has
// no value here grants nothing and is noted in skipped.
func (e *emqxSchema) readACL(u *User, h map[string]string, req policy.Request, source string) {
	topics := make([]string, 0, len(h))
	for t := range h {
		topics = append(topics, t)
	}
	slices.Sort(topics) // HGETALL's order is the hash's: none
	skip := func(topic, value, why string) {
		u.Skipped = append(u.Skipped, fmt.Sprintf("%s %s: %s", logsafe.String(topic), logsafe.String(value), why))
	}
	for _, topic := range topics {
		value := h[topic]
		r, err := parseEMQXRule(value, e.v4)
		if err != nil {
			skip(topic, value, err.Error())
			continue
		}
		raw := topic
		if e.v4 {
			raw = strings.ReplaceAll(strings.ReplaceAll(raw, "%u", "${username}"), "%c", "${clientid}")
		}
		as, exact := strings.CutPrefix(raw, "eq ")
		if !exact {
			var why string
			if as, why = renderTopic(parseTemplate(as), req); why != "" {
				skip(topic, value, why)
				continue
			}
		}
		if err := policy.CheckFilter(as); err != nil {
			skip(topic, value, "not a topic filter: "+err.Error())
			continue
		}
		x := policy.Expanded{Pattern: policy.Pattern{Filter: topic, Source: source}, As: as, Exact: exact}
		if r.publish {
			x.Cond = r.pubCond
			u.Publish = append(u.Publish, x)
		}
		if r.subscribe {
			x.Cond = r.subCond
			u.Subscribe = append(u.Subscribe, x)
		}
	}
}

// renderTopic fills a rule's placeholders for req; why says why the rule
// grants nothing when one cannot be filled: a name that is empty or
// holds '+', '#' or '/' (no name injects a wildcard), a placeholder with
// no equivalent. An unknown placeholder stays as it is written, as in
// EMQX.
func renderTopic(t template, req policy.Request) (topic, why string) {
	for _, v := range t.vars() {
		switch {
		case slices.Contains(emqxMapped, v):
			if val := emqxValue(req, v); !nameFills(val) {
				return "", fmt.Sprintf("${%s} is %s: it fills no topic level", v, describeName(val))
			}
		case slices.Contains(emqxNoEquivalent, v) || strings.HasPrefix(v, "client_attrs."):
			return "", fmt.Sprintf("${%s} has no equivalent here", v)
		}
	}
	return t.render(func(name string) string {
		if slices.Contains(emqxMapped, name) {
			return emqxValue(req, name)
		}
		return "${" + name + "}"
	}), ""
}

// emqxRule is a rule of the authorizer: what it allows, and the condition
// that limits each half (the zero Condition: none).
type emqxRule struct {
	publish, subscribe bool
	pubCond, subCond   policy.Condition
}

// parseEMQXRule reads a rule value as EMQX's Redis authorizer does:
// publish, subscribe, all (with v4 also 2, 1, 3), or a JSON object with
// action (pub, publish, sub, subscribe, all), qos (0, 1, 2, a list of them
// or "0,1"; absent: all) and retain (true, false, 0, 1, "all"; absent:
// all). Its rules allow only; a JSON rule that says "permission":"deny"
// (EMQX would ignore the word and allow) grants nothing here.
func parseEMQXRule(v string, v4 bool) (emqxRule, error) {
	switch {
	case v == "publish" || v4 && v == "2":
		return emqxRule{publish: true}, nil
	case v == "subscribe" || v4 && v == "1":
		return emqxRule{subscribe: true}, nil
	case v == "all" || v4 && v == "3":
		return emqxRule{publish: true, subscribe: true}, nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(v), &m); err != nil || m == nil {
		return emqxRule{}, fmt.Errorf("not publish, subscribe, all or a JSON rule")
	}
	var r emqxRule
	switch m["action"] {
	case "pub", "publish":
		r.publish = true
	case "sub", "subscribe":
		r.subscribe = true
	case "all":
		r.publish, r.subscribe = true, true
	default:
		return r, fmt.Errorf("action is not pub, publish, sub, subscribe or all")
	}
	if p, ok := m["permission"]; ok && p != "allow" {
		return r, fmt.Errorf("permission %v: the Redis authorizer's rules allow only", p)
	}
	qos, err := emqxQoS(m["qos"])
	if err != nil {
		return r, err
	}
	retain, err := emqxRetain(m["retain"])
	if err != nil {
		return r, err
	}
	// Subscribing has no retain flag: the retain condition limits the
	// publish half only.
	r.subCond = policy.Condition{QoS: qos}
	r.pubCond = policy.Condition{QoS: qos, Retain: retain}
	return r, nil
}

// emqxQoS reads a rule's qos: 0 when it allows every level, else the
// levels it allows as a policy.Condition's QoS bits.
func emqxQoS(v any) (uint8, error) {
	var mask uint8
	add := func(x any) bool {
		switch q := x.(type) {
		case float64:
			if q != math.Trunc(q) || q < 0 || q > 2 {
				return false
			}
			mask |= 1 << int(q)
		case string:
			if q != "0" && q != "1" && q != "2" {
				return false
			}
			mask |= 1 << (q[0] - '0')
		default:
			return false
		}
		return true
	}
	ok := true
	switch q := v.(type) {
	case nil:
		return 0, nil
	case []any:
		for _, x := range q {
			ok = ok && add(x)
		}
	case string:
		for _, x := range strings.Split(q, ",") {
			ok = ok && add(x)
		}
	default:
		ok = add(q)
	}
	if !ok || mask == 0 {
		return 0, fmt.Errorf("qos %v is not 0, 1, 2 or a list of them", v)
	}
	if mask == 7 {
		return 0, nil
	}
	return mask, nil
}

// emqxRetain reads a rule's retain: RetainAny when it allows both, else
// the one it allows.
func emqxRetain(v any) (policy.RetainCondition, error) {
	switch v {
	case nil, "all":
		return policy.RetainAny, nil
	case true, "true", "1", float64(1):
		return policy.RetainOnly, nil
	case false, "false", "0", float64(0):
		return policy.RetainNever, nil
	}
	return policy.RetainAny, fmt.Errorf("retain %v is not true, false or all", v)
}
