package proxy

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/logsafe"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// ChangeFeed delivers rule changes; *authstore.Store implements it.
type ChangeFeed interface {
	Watch(ctx context.Context, f func(policy.Change)) error
}

// Follow applies rule changes to live connections until ctx ends: the
// user's connections are decided again (and closed if now refused), a
// role's change re-decides the sessions holding it (every session for the
// default role), a kick closes them, a resync re-decides every
// connection. Run it on its own goroutine.
func (p *Proxy) Follow(ctx context.Context, feed ChangeFeed) error {
	return feed.Watch(ctx, func(c policy.Change) {
		p.changes.Add(1)
		p.lastChange.Store(time.Now().UnixNano())
		switch {
		case c.Resync:
			go p.RevalidateAll()
		case c.Revoked:
			go p.applyRevocations()
		case c.Kick:
			go p.Kick(c.Username)
		case c.Role != "":
			go p.RevalidateRole(c.Role)
		case c.BanKind != "":
			go p.applyBan(c.BanKind, c.BanValue)
		default:
			go p.RevalidateUser(c.Username)
		}
	})
}

// userSessions is a snapshot of the user's live sessions.
func (p *Proxy) userSessions(username string) []*session {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*session, 0, len(p.byUser[username]))
	for s := range p.byUser[username] {
		out = append(out, s)
	}
	return out
}

func (p *Proxy) allSessions() []*session {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*session, 0, len(p.sessions))
	for s := range p.sessions {
		out = append(out, s)
	}
	return out
}

// RevalidateUser decides the user's live connections again, as a CONNECT
// would be, and closes those now refused (MQTT 5: DISCONNECT 0x98 first).
// It costs in proportion to that user's connections.
func (p *Proxy) RevalidateUser(username string) {
	for _, s := range p.userSessions(username) {
		p.revalidate(s, "notification")
	}
}

// RevalidateRole decides again the sessions whose rules come from the
// role: every session for the default role.
func (p *Proxy) RevalidateRole(role string) {
	for _, s := range p.allSessions() {
		if role == defaultRole || s.hasRole(role) {
			p.revalidate(s, "role "+role+" changed")
		}
	}
}

// defaultRole is the role whose rules apply to every user.
const defaultRole = "default"

// RevalidateAll decides every live connection again.
func (p *Proxy) RevalidateAll() {
	for _, s := range p.allSessions() {
		p.revalidate(s, "resync")
	}
}

// Kick closes the user's live connections without changing any rule.
// It returns how many were closed.
func (p *Proxy) Kick(username string) int {
	ss := p.userSessions(username)
	for _, s := range ss {
		p.log.Info("kicked", "username", logsafe.String(username), "client_id", logsafe.String(s.req.ClientID), "remote", s.remote)
		s.end(packets.AdministrativeAction, "kicked")
	}
	return len(ss)
}

// revalidate decides one session again, against the credential it was
// accepted with (no hash is computed). A refusal, or a rule that can no
// longer be read, ends the session; only a store that is unavailable or
// busy keeps it (logged), and the decision is tried again with a backoff:
// re-validation never mass-disconnects on an outage, and never lets one
// pass for an allow.
func (p *Proxy) revalidate(s *session, why string) {
	if s.done() {
		return
	}
	ctx, cancel := context.WithTimeout(p.ctx, revalidateTimeout)
	defer cancel()
	d, err := p.cfg.Auth.Authenticate(ctx, s.req)
	switch {
	case err == nil && d.Allowed():
		p.metrics.Revalidations.WithLabelValues("allowed").Inc()
		s.retried()
		s.setRoles(d.Roles)
		if s.oldPassword.Swap(d.OldPassword) != d.OldPassword {
			p.version.Add(1)
		}
		s.limitsChanged(d) // quota.go
		// The backend or the mountpoint changed: the device reconnects (route.go).
		if s.rerouted(d, why) {
			return
		}
		if s.acl != nil && d.Topics != nil {
			if filter, ok := s.acl.update(d.Topics); !ok {
				p.metrics.Revalidations.WithLabelValues("revoked").Inc()
				p.log.Info("revoked: a live subscription is no longer allowed", "username", logsafe.String(s.req.Username),
					"client_id", logsafe.String(s.req.ClientID), "remote", s.remote, "filter", logsafe.String(filter), "why", why)
				s.record("revalidate", "subscription_not_allowed", "the live subscription "+logsafe.String(filter)+" is no longer allowed ("+why+")")
				s.end(packets.NotAuthorized, "acl")
				return
			}
		}
		s.scheduleNotAfter(d.NotAfter)
	case err == nil || errors.Is(err, policy.ErrMalformedRule):
		outcome, reason := string(d.Outcome), d.Reason
		if err != nil {
			outcome, reason = "malformed_rule", logsafe.Error(err)
		}
		p.metrics.Revalidations.WithLabelValues("revoked").Inc()
		p.log.Info("revoked", "username", logsafe.String(s.req.Username), "client_id", logsafe.String(s.req.ClientID),
			"remote", s.remote, "outcome", outcome, "reason", reason, "why", why)
		s.record("revalidate", outcome, reason+" (live session decided again: "+why+")")
		s.end(endOf(d.Outcome))
	case p.ctx.Err() != nil:
		// Shutting down.
	default:
		p.metrics.Revalidations.WithLabelValues("error").Inc()
		delay := s.retryLater(func() { p.revalidate(s, "retry after an error") })
		p.log.Warn("re-validation failed; keeping the connection and trying again", "username", logsafe.String(s.req.Username),
			"client_id", logsafe.String(s.req.ClientID), "why", why, "error", logsafe.Error(err), "retry_in", delay)
	}
}

// revalidateTimeout bounds one re-decision.
const revalidateTimeout = 5 * time.Second

// Backoff of re-decisions that failed for want of the store.
const (
	retryFirst = 500 * time.Millisecond
	retryMax   = 30 * time.Second
)

// retryLater arranges one more re-decision after a failed one, unless one
// is already arranged; the delay doubles from retryFirst to retryMax while
// they keep failing. It returns the delay.
func (s *session) retryLater(f func()) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retryDelay = min(max(s.retryDelay*2, retryFirst), retryMax)
	if s.retry == nil && !s.done() {
		s.retry = time.AfterFunc(s.retryDelay, func() {
			s.mu.Lock()
			s.retry = nil
			s.mu.Unlock()
			f()
		})
	}
	return s.retryDelay
}

// retried resets the backoff after a successful re-decision.
func (s *session) retried() {
	s.mu.Lock()
	s.retryDelay = 0
	s.mu.Unlock()
}

// sweep re-decides every live connection once per RevalidateInterval,
// one at a time, spread evenly over the interval, so that it is never a burst.
func (p *Proxy) sweep() {
	interval := p.cfg.RevalidateInterval
	// Start at a random point, so that replicas do not sweep in step.
	wait := time.Duration(rand.Int64N(int64(interval)))
	for {
		select {
		case <-p.stop:
			return
		case <-time.After(wait):
		}
		ss := p.allSessions()
		if len(ss) == 0 {
			wait = interval
			continue
		}
		step := interval / time.Duration(len(ss))
		for i, s := range ss {
			if i > 0 {
				select {
				case <-p.stop:
					return
				case <-time.After(step):
				}
			}
			p.revalidate(s, "periodic")
		}
		wait = step
	}
}

// maxTimer is the longest a not_after timer is set for: a later not_after
// re-arms the timer when it fires, without a decision, so that any time
// RFC 3339 allows (up to 9999-12-31) neither overflows a Duration nor
// costs a Redis round trip.
const maxTimer = 24 * time.Hour

// scheduleNotAfter arranges a re-decision at the user's not_after, so that
// an expiry closes the connection at that moment.
func (s *session) scheduleNotAfter(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.notAfter != nil {
		s.notAfter.Stop()
		s.notAfter = nil
	}
	if t.IsZero() || s.done() {
		return
	}
	// time.Until saturates instead of overflowing; the cap keeps the
	// margin added below from overflowing in turn.
	d := max(time.Until(t), 0)
	if d > maxTimer {
		s.notAfter = time.AfterFunc(maxTimer, func() { s.scheduleNotAfter(t) })
		return
	}
	s.notAfter = time.AfterFunc(d+10*time.Millisecond, func() { s.p.revalidate(s, "not_after") })
}

// stopTimers stops the session's not_after and retry timers.
func (s *session) stopTimers() {
	s.scheduleNotAfter(time.Time{})
	s.mu.Lock()
	if s.retry != nil {
		s.retry.Stop()
		s.retry = nil
	}
	s.mu.Unlock()
}
