package authstore

import (
	"context"
	"fmt"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/sessions"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// limitsOf reads the limits of a user's record (pub_rate, max_qos, ...):
// its own fields first, then its roles in the order of its roles field,
// then the default role; the first that sets a limit gives it. A limit
// field that does not parse, anywhere, is a malformed rule. It reports
// them to an explanation, each with where it came from.
func limitsOf(rec userRecord, e *policy.Explanation) (*policy.Limits, error) {
	layers := make([]policy.LimitLayer, 0, 1+len(rec.roles))
	layers = append(layers, policy.LimitLayer{Source: "user", Fields: rec.fields})
	var def *roleRecord
	for i := range rec.roles {
		if rec.roles[i].name == rules.DefaultRole {
			def = &rec.roles[i]
			continue
		}
		layers = append(layers, policy.LimitLayer{Source: "role " + rec.roles[i].name, Fields: rec.roles[i].fields})
	}
	if def != nil {
		layers = append(layers, policy.LimitLayer{Source: "role " + rules.DefaultRole, Fields: def.fields})
	}
	ls, err := policy.MergeLimits(layers...)
	if err == nil && e != nil {
		e.Add("limits", policy.Pass, ls.String())
	}
	return ls, err
}

// SessionCounter starts counting the live sessions of the replica named
// replica for max_sessions, on the store's client and key prefix, under
// the default lease; close it once the replica's sessions have ended.
func (s *Store) SessionCounter(replica string) (*sessions.Counter, error) {
	return sessions.New(s.rdb, sessions.Options{Prefix: s.Prefix(), Replica: replica, Timeout: s.timeout, Logger: s.log})
}

// LiveSessions is how many sessions of user are live on every replica
// that counts them (the users with max_sessions), for explain and user
// show.
func (s *Store) LiveSessions(ctx context.Context, user string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return sessions.Live(ctx, s.rdb, s.Keys, user)
}

// explainSessions tells an explanation what max_sessions would answer a
// CONNECT now, as the proxy's admission would (an accepted decision
// refused when the user's live sessions reach it). A real decision is
// left alone: the proxy admits, atomically across replicas.
func (s *Store) explainSessions(ctx context.Context, req policy.Request, d *policy.Decision) {
	max, ok := d.Limits.Get(policy.MaxSessions)
	if req.Explain == nil || !ok {
		return
	}
	live, err := s.LiveSessions(ctx, req.Username)
	switch {
	case err != nil:
		req.Explain.Add("max_sessions", policy.NotChecked, "the live sessions could not be counted: "+err.Error())
	case int64(live) >= max:
		detail := fmt.Sprintf("%d live sessions, max_sessions %d (%s): a new CONNECT is refused", live, max, d.Limits.Source(policy.MaxSessions))
		req.Explain.Add("max_sessions", policy.Fail, detail)
		if d.Outcome == policy.Accepted {
			d.Outcome, d.Reason = policy.TooManySessions, detail
		}
	default:
		req.Explain.Add("max_sessions", policy.Pass, fmt.Sprintf("%d live sessions, max_sessions %d (%s)", live, max, d.Limits.Source(policy.MaxSessions)))
	}
}
