package proxy

import (
	"context"
	"fmt"
	"sync"

	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// SessionCounter counts the live sessions of each user across every
// replica, for max_sessions: authstore/sessions keeps the count in Redis,
// each replica under a lease, so that the sessions of a replica that dies
// stop counting within the lease. Config.Sessions nil counts this
// proxy's sessions only.
type SessionCounter interface {
	// Admit counts one more session of user if fewer than max are live,
	// atomically across replicas (of two CONNECTs racing for the last
	// place, exactly one is admitted); live is the count it saw. An error
	// means it cannot count now: the CONNECT is refused (fail closed).
	Admit(ctx context.Context, user string, max int) (ok bool, live int, err error)
	// Adopt counts a live session of user without a check: its user was
	// given max_sessions while it was live.
	Adopt(user string)
	// Release counts one session of user less.
	Release(user string)
}

// sessionCounter is the proxy's SessionCounter.
func (p *Proxy) sessionCounter() SessionCounter {
	if p.cfg.Sessions != nil {
		return p.cfg.Sessions
	}
	return &p.localSessions
}

// admit takes a place under the user's max_sessions, when its decision
// sets one: past it the CONNECT is refused (v5 0x97, 3.1.1 0x05); a count
// that cannot be read refuses it as the store being down does. The place
// is the attempt's until its session takes it (handOff), and given back
// by finish otherwise.
func (a *attempt) admit(ctx context.Context) *refusal {
	max, ok := a.decision.Limits.Get(policy.MaxSessions)
	if !ok {
		return nil
	}
	admitted, live, err := a.p.sessionCounter().Admit(ctx, a.req.Username, int(max))
	switch {
	case err != nil:
		return refuseWith(OutcomeStoreUnavailable, packets.ServerUnavailable, fmt.Errorf("max_sessions: counting the user's sessions: %w", err))
	case !admitted:
		a.p.limitRefused(policy.MaxSessions, nil, "")
		r := refuseWith(Decided(policy.TooManySessions), packets.QuotaExceeded, nil)
		r.reason = fmt.Sprintf("max_sessions %d (%s) reached: %d live", max, a.decision.Limits.Source(policy.MaxSessions), live)
		a.reason = r.reason
		return r
	}
	a.counted = true
	return nil
}

// unadmit gives back the place of an attempt whose session did not start.
func (a *attempt) unadmit() {
	if a.counted {
		a.counted = false
		a.p.sessionCounter().Release(a.req.Username)
	}
}

// takeCount hands the attempt's place to its session.
func (s *session) takeCount(a *attempt) {
	s.mu.Lock()
	s.counted, a.counted = a.counted, false
	s.mu.Unlock()
}

// uncount gives back the session's place when it ends.
func (s *session) uncount() {
	s.mu.Lock()
	counted := s.counted
	s.counted = false
	s.mu.Unlock()
	if counted {
		s.p.sessionCounter().Release(s.req.Username)
	}
}

// limitsChanged applies the limits of a new decision to the live session:
// to its filter at once, and to its user's count (a session whose user
// got max_sessions while it was live is counted from now on; one that
// lost it stays counted until it ends).
func (s *session) limitsChanged(d policy.Decision) {
	if s.limits != nil {
		s.limits.Update(d.Limits)
	}
	if _, ok := d.Limits.Get(policy.MaxSessions); !ok {
		return
	}
	s.mu.Lock()
	adopt := !s.counted && !s.done()
	s.counted = s.counted || adopt
	s.mu.Unlock()
	if adopt {
		s.p.sessionCounter().Adopt(s.req.Username)
	}
}

// localSessions counts this proxy's sessions per user: the SessionCounter
// of a proxy without Config.Sessions.
type localSessions struct {
	mu sync.Mutex
	n  map[string]int
}

func (l *localSessions) Admit(_ context.Context, user string, max int) (bool, int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	live := l.n[user]
	if live >= max {
		return false, live, nil
	}
	l.add(user, 1)
	return true, live, nil
}

func (l *localSessions) Adopt(user string) {
	l.mu.Lock()
	l.add(user, 1)
	l.mu.Unlock()
}

func (l *localSessions) Release(user string) {
	l.mu.Lock()
	l.add(user, -1)
	l.mu.Unlock()
}

func (l *localSessions) add(user string, d int) {
	if l.n == nil {
		l.n = map[string]int{}
	}
	if l.n[user] += d; l.n[user] <= 0 {
		delete(l.n, user)
	}
}
