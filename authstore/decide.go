package authstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/logsafe"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Authenticate decides req against the user's rules, read fresh with one
// round trip (the user's hash and its roles'). Order: the credential first
// (unknown user, wrong password, a disabled user with a wrong password and
// a user whose other rules cannot be read answer alike, at the same cost),
// then enabled, not_after, certs, cidrs, clientids, and the will's topic
// against the topic rules. A rule that cannot be read is an error wrapping
// policy.ErrMalformedRule once the credential is verified. With
// req.Verified set (a live session decided again) no hash is computed.
func (s *Store) Authenticate(ctx context.Context, req policy.Request) (policy.Decision, error) {
	req, shown, err := s.present(ctx, req) // a token or a certificate may name the user
	if err != nil || shown.final(req) {
		return shown.decision(), err
	}
	rec, err := s.lookup(ctx, req)
	if err != nil {
		return policy.Decision{}, err
	}
	if d, refused := s.refuseEarly(rec, req); refused {
		return d, nil
	}
	// An explanation leaves nothing behind: no count, no known address.
	sideEffects := req.Verified == nil && req.Explain == nil
	if shown.refusal != nil {
		return s.refuseShown(ctx, req, shown, sideEffects), nil
	}
	if len(rec.fields) == 0 {
		return s.unknownUser(ctx, req, rec, sideEffects)
	}
	req.Explain.Add("user", policy.Pass, "the user exists"+s.whereUser(rec))
	r, ruleErr := rules.Parse(rec.fields)
	d, err := s.checkCredential(ctx, req, r, rec.knownAt > s.now().Add(-knownFor).Unix())
	if err != nil || d.Outcome != "" {
		if d.Outcome == policy.BadCredentials && sideEffects {
			s.countFailure(ctx, req)
		}
		return d, err
	}
	if sideEffects {
		s.noteSuccess(ctx, req, rec)
	}
	switch {
	case ruleErr != nil || s.noTopics:
	case rec.schema != nil:
		d.Topics, ruleErr = rec.schema.Topics(req.Explain)
	default:
		d.Topics, d.Roles, ruleErr = s.compileTopics(rec, req)
	}
	if ruleErr == nil {
		d.Limits, ruleErr = limitsOf(rec, req.Explain) // quota.go
	}
	if ruleErr != nil {
		req.Explain.Add("rules readable", policy.Fail, ruleErr.Error())
		s.log.Warn("malformed rule refuses the user", "username", logsafe.String(req.Username), "error", ruleErr)
		return policy.Decision{}, fmt.Errorf("authstore: user %s: %w", logsafe.String(req.Username), ruleErr)
	}
	req.Explain.Add("rules readable", policy.Pass, "")
	d.NotAfter = earliest(d.NotAfter, r.NotAfter)
	d.Outcome, d.Reason = s.judge(r, req, d.Topics, rec.schema == nil)
	if err := s.route(&d, rec, req); err != nil { // brokers.go: pool, mountpoint
		return policy.Decision{}, err
	}
	s.explainSessions(ctx, req, &d) // quota.go: max_sessions, for explain
	if sideEffects && d.Outcome == policy.Accepted {
		s.noteUse(req, r, d)
	}
	return d, nil
}

// unknownUser answers a user that does not exist (or no user name): a
// live session ends; a CONNECT is refused after the dummy verification,
// costing what a wrong password costs, and counted as a failure.
func (s *Store) unknownUser(ctx context.Context, req policy.Request, rec userRecord, sideEffects bool) (policy.Decision, error) {
	req.Explain.Add("user", policy.Fail, "no user "+logsafe.String(req.Username)+s.whereUser(rec))
	if req.Verified != nil {
		return policy.Decision{Outcome: policy.BadCredentials, Reason: "user no longer exists"}, nil
	}
	if s.namedByCredential(req) { // a token or a certificate: no password to cost like one
		if sideEffects {
			s.countFailure(ctx, req)
		}
		return policy.Decision{Outcome: policy.BadCredentials, Reason: "no user " + logsafe.String(req.Username) + " for the credential"}, nil
	}
	d, err := s.denyAfterDummy(ctx, req.Password, "unknown user")
	if err == nil && sideEffects {
		s.countFailure(ctx, req)
	}
	return d, err
}

// check is one rule judge applies after the credential.
type check struct {
	name    string
	applies bool
	ok      func() bool
	outcome policy.Outcome
	detail  func(ok bool) string
}

// judge applies the rules after the credential, in order: the outcome
// is the first that fails. With an explanation every rule is reported,
// those after the first failure included. Another schema's layout has no
// enabled, not_after, certs or cidrs: they do not apply (native false).
func (s *Store) judge(r rules.User, req policy.Request, topics *policy.TopicRules, native bool) (policy.Outcome, string) {
	outcome, reason := policy.Accepted, "allowed"
	for _, c := range s.checks(r, req, topics, native) {
		if !c.applies {
			detail := ""
			if !native && c.name != "will topic" {
				detail = "not part of the " + s.layout() + " layout"
			}
			req.Explain.Add(c.name, policy.NotApplied, detail)
			continue
		}
		if c.name == "cidrs" && req.Explain != nil && !req.RemoteAddr.IsValid() {
			req.Explain.Add(c.name, policy.NotChecked, "no source address given to explain (--ip)")
			continue
		}
		ok := c.ok()
		if req.Explain != nil {
			req.Explain.Add(c.name, map[bool]string{true: policy.Pass, false: policy.Fail}[ok], c.detail(ok))
		}
		if !ok && outcome == policy.Accepted {
			outcome, reason = c.outcome, c.detail(false)
			if req.Explain == nil {
				break
			}
		}
	}
	if outcome == policy.ClientIDNotAllowed && r.ClientIDs == nil && req.Explain == nil && req.Verified == nil {
		s.refusedByDefault(req)
	}
	return outcome, reason
}

// checks are the rules judge applies, in order.
func (s *Store) checks(r rules.User, req policy.Request, topics *policy.TopicRules, native bool) []check {
	now := s.now()
	certOK := func() bool { return rules.CertAllowed(r.Certs, req.CertSHA256, req.CertCN, req.CertCASHA256) }
	return []check{
		{"enabled", native, func() bool { return r.Enabled }, policy.Disabled,
			func(ok bool) string { return map[bool]string{true: "enabled", false: "disabled"}[ok] }},
		{"not_after", !r.NotAfter.IsZero(), func() bool { return now.Before(r.NotAfter) }, policy.Expired,
			func(ok bool) string {
				return map[bool]string{true: "valid until ", false: "expired at "}[ok] + r.NotAfter.UTC().Format(time.RFC3339)
			}},
		{"certs", r.HasCerts, certOK, policy.CertNotAllowed,
			func(ok bool) string {
				switch {
				case ok:
					return "the client certificate matches the user's certs"
				case req.CertSHA256 == nil:
					return "no client certificate; the user's certs require one"
				}
				return "client certificate does not match the user's certs"
			}},
		{"cidrs", r.HasCIDRs, func() bool { return rules.AddrAllowed(r.CIDRs, req.RemoteAddr) }, policy.AddressNotAllowed,
			func(ok bool) string {
				return fmt.Sprintf("source address %s is %sin the user's cidrs", req.RemoteAddr, map[bool]string{true: "", false: "not "}[ok])
			}},
		{"clientids", true, func() bool { return s.clientIDAllowed(r, req) }, policy.ClientIDNotAllowed,
			func(ok bool) string { return s.clientIDDetail(r, req, ok) }},
		{"will topic", topics != nil && req.HasWill, func() bool { _, ok := topics.CanPublish(req.WillTopic); return ok }, policy.WillNotAllowed,
			func(ok bool) string {
				return fmt.Sprintf("will topic %s is %sone the user may publish to", logsafe.String(req.WillTopic), map[bool]string{true: "", false: "not "}[ok])
			}},
	}
}

// clientIDGlobs are the globs a user's client id must match: its clientids
// field, or the store's default when the field is absent.
func (s *Store) clientIDGlobs(r rules.User) []string {
	if r.ClientIDs != nil {
		return r.ClientIDs
	}
	return s.clientIDsDefault
}

func (s *Store) clientIDAllowed(r rules.User, req policy.Request) bool {
	if r.ClientIDs == nil && req.ClientID == "" {
		// The broker assigns the id: no session of anyone else to take
		// (the codec has refused an empty id where the version forbids it).
		return true
	}
	return rules.ClientIDAllowed(s.clientIDGlobs(r), req.ClientID, req.Username)
}

// clientIDDetail says why a client id was allowed or refused, naming the
// default (CLIENTIDS_DEFAULT) when the user has no clientids field of
// its own, since a fleet that relied on an older default sees its
// refusals there first.
func (s *Store) clientIDDetail(r rules.User, req policy.Request, ok bool) string {
	globs := logsafe.String(strings.ReplaceAll(strings.Join(s.clientIDGlobs(r), " "), "%u", req.Username))
	verb := map[bool]string{true: "matches", false: "does not match"}[ok]
	if r.ClientIDs != nil {
		return fmt.Sprintf("client id %s %s the user's clientids %s", logsafe.String(req.ClientID), verb, globs)
	}
	return fmt.Sprintf("client id %s %s the default client ids %s (CLIENTIDS_DEFAULT %s; the user has no clientids field)",
		logsafe.String(req.ClientID), verb, globs, strings.Join(s.clientIDGlobs(r), " "))
}

// refusedByDefault counts a CONNECT the client id default refused and
// logs it, at most one line every 10 s (with the count since the last),
// so that a fleet using another client id form sees it coming.
func (s *Store) refusedByDefault(req policy.Request) {
	n := s.byDefault.Add(1)
	now := s.now().UnixNano()
	last := s.byDefaultLogged.Load()
	if now-last < int64(10*time.Second) || !s.byDefaultLogged.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn("client id refused by CLIENTIDS_DEFAULT: give the user a clientids field, or see README on the default",
		"username", logsafe.String(req.Username), "client_id", logsafe.String(req.ClientID),
		"default", strings.Join(s.clientIDsDefault, " "), "refused_so_far", n)
}

// DefaultClientIDRefusals is the number of CONNECTs refused because their
// client id did not match CLIENTIDS_DEFAULT (users without clientids).
func (s *Store) DefaultClientIDRefusals() int64 { return s.byDefault.Load() }

// layout names the schema for explanations: "" for the native one.
func (s *Store) layout() string {
	if s.schema == nil {
		return ""
	}
	return s.schema.Name()
}

// whereUser says, for explain, which keys hold the user in another
// schema ("" in the native one).
func (s *Store) whereUser(rec userRecord) string {
	if rec.schema == nil || rec.schema.Where == "" {
		return ""
	}
	return " (" + s.schema.Name() + ": " + logsafe.String(rec.schema.Where) + ")"
}
