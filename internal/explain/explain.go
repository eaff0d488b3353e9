// Package explain is the one implementation of explain: the decision a
// CONNECT (and a publish, a subscribe) would get now, made by the
// proxy's own decision with an explanation attached (nothing counted or
// remembered), with each check's verdict, the CONNACK the device would
// read, and what still uses a rotation's previous password. The CLI's
// `explain` and the admin API's POST /api/v1/explain both call Decide;
// each reads its own input (flags, a JSON body) into the request.
package explain

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
	"github.com/mqtt-authproxy/mqtt-authproxy/proxy"
)

// Decider is what explain asks: the decision (authstore.Store) and what
// still uses a user's previous password.
type Decider interface {
	policy.Authenticator
	Uses(ctx context.Context, name string) (operator.Uses, error)
}

// Explanation is explain's answer (`explain --json`, the API's body).
type Explanation struct {
	User     string             `json:"user"`
	ClientID string             `json:"client_id"`
	Protocol int                `json:"protocol"`
	Steps    []policy.Step      `json:"steps"`
	Allowed  bool               `json:"allowed"`
	Outcome  string             `json:"outcome"`
	Reason   string             `json:"reason"`
	Code     packets.ReasonCode `json:"reason_code"`
	CONNACK  string             `json:"connack"`
	Topics   []TopicVerdict     `json:"topics,omitempty"`
	// PasswordOld says what still uses the user's previous password
	// during (or after) a rotation's overlap; "" without one.
	PasswordOld string `json:"password_old,omitempty"`
}

// TopicVerdict is the verdict on one topic to publish to or filter to
// subscribe to.
type TopicVerdict struct {
	Action  string `json:"action"`
	Topic   string `json:"topic"`
	Allowed bool   `json:"allowed"`
	Verdict string `json:"verdict"`
}

// Decide decides req (req.Explain set) and explains it, with the verdict
// on each topic to publish and filter to subscribe. An error is the
// store's (unavailable): a malformed rule is explained, not returned.
func Decide(ctx context.Context, s Decider, req policy.Request, publish, subscribe []string) (Explanation, error) {
	if req.Explain == nil {
		req.Explain = &policy.Explanation{}
	}
	d, err := s.Authenticate(ctx, req)
	if err != nil && !errors.Is(err, policy.ErrMalformedRule) {
		return Explanation{}, err
	}
	x := Explanation{User: req.Username, ClientID: req.ClientID, Protocol: int(req.Protocol), Steps: req.Explain.Steps}
	outcome, code := proxy.Answer(d, err)
	x.Outcome, x.Reason, x.Code, x.Allowed = string(outcome), d.Reason, code, err == nil && d.Allowed()
	if err != nil {
		x.Reason = err.Error()
	}
	x.CONNACK = ConnackFor(x.Code, req.Protocol, x.Allowed)
	x.Topics = judgeTopics(d, publish, subscribe)
	if uses, uerr := s.Uses(ctx, req.Username); uerr == nil && uses.Old != nil {
		x.PasswordOld = uses.Old.Sentence()
	}
	return x, nil
}

// judgeTopics is the verdict of d's topic rules on each topic.
func judgeTopics(d policy.Decision, publish, subscribe []string) []TopicVerdict {
	var out []TopicVerdict
	for _, q := range []struct {
		action          string
		topics          []string
		check           func(*policy.TopicRules, string) (policy.Grant, bool)
		allowed, denied string
	}{
		{"publish", publish, (*policy.TopicRules).CanPublish, "allowed by %s (%s)", "refused: no publish rule matches it"},
		{"subscribe", subscribe, (*policy.TopicRules).CanSubscribe, "allowed: covered by %s (%s)", "refused: no subscribe rule covers every topic it can match"},
	} {
		for _, t := range q.topics {
			v := TopicVerdict{Action: q.action, Topic: t, Verdict: q.denied}
			if d.Topics == nil {
				v.Verdict = "not checked: topic rules are off (AUTHPROXY_ACL=off) or the CONNECT is refused"
			} else if g, ok := q.check(d.Topics, t); ok {
				v.Allowed, v.Verdict = true, fmt.Sprintf(q.allowed, g.Filter, g.Source)
			}
			out = append(out, v)
		}
	}
	return out
}

// Refused reports whether the CONNECT, or one of the topics, is refused.
func (x Explanation) Refused() bool {
	if !x.Allowed {
		return true
	}
	for _, t := range x.Topics {
		if !t.Allowed {
			return true
		}
	}
	return false
}

// ConnackFor is what the device would read.
func ConnackFor(code packets.ReasonCode, level packets.Level, allowed bool) string {
	if allowed {
		return "the broker's (the CONNECT goes on to it)"
	}
	if level == packets.V5 {
		return fmt.Sprintf("0x%02X %v (MQTT 5)", byte(code), code)
	}
	if v3, ok := code.V3(); ok {
		return fmt.Sprintf("0x%02X (MQTT %v)", v3, level)
	}
	return "none: the connection is closed"
}

// Print writes the explanation for people.
func (x Explanation) Print(w io.Writer) {
	fmt.Fprintf(w, "explain %s (client id %q, MQTT level %d)\n", x.User, x.ClientID, x.Protocol)
	for _, s := range x.Steps {
		fmt.Fprintf(w, "  %-12s %-26s %s\n", s.Verdict, s.Check, s.Detail)
	}
	verdict := "allowed"
	if !x.Allowed {
		verdict = "refused"
	}
	if x.Reason == "" || x.Reason == x.Outcome { // "refused (disabled)", not "refused (disabled): disabled"
		fmt.Fprintf(w, "decision: %s (%s)\n", verdict, x.Outcome)
	} else {
		fmt.Fprintf(w, "decision: %s (%s): %s\n", verdict, x.Outcome, x.Reason)
	}
	fmt.Fprintf(w, "CONNACK:  %s\n", x.CONNACK)
	for _, t := range x.Topics {
		fmt.Fprintf(w, "%s %s: %s\n", t.Action, t.Topic, t.Verdict)
	}
	if x.PasswordOld != "" {
		fmt.Fprintf(w, "old password: %s\n", x.PasswordOld)
	}
}
