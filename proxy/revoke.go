package proxy

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// ChangeFeed delivers rule changes; *authstore.Store implements it.
type ChangeFeed interface {
	Watch(ctx context.Context, f func(authstore.Change)) error
}

// Follow applies rule changes to live connections until ctx ends: the
// user's connections are decided again (and closed if now refused), a kick
// closes them, a resync re-decides every connection. Run it on its own
// goroutine.
func (p *Proxy) Follow(ctx context.Context, feed ChangeFeed) error {
	return feed.Watch(ctx, func(c authstore.Change) {
		p.changes.Add(1)
		switch {
		case c.Resync:
			go p.RevalidateAll()
		case c.Kick:
			go p.Kick(c.Username)
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
		p.log.Info("kicked", "username", username, "client_id", s.req.ClientID, "remote", s.clientRaw.RemoteAddr().String())
		s.kick(packets.AdministrativeAction, "kicked")
	}
	return len(ss)
}

// revalidate decides one session again. A store outage keeps the
// connection (logged): re-validation never mass-disconnects.
func (p *Proxy) revalidate(s *session, why string) {
	if s.kicking.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	d, err := p.cfg.Auth.Authenticate(ctx, s.req)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			p.metrics.Revalidations.WithLabelValues("error").Inc()
			p.log.Warn("re-validation failed; keeping the connection", "username", s.req.Username, "client_id", s.req.ClientID, "why", why, "error", err)
		}
		return
	}
	if !d.Allowed() {
		p.metrics.Revalidations.WithLabelValues("revoked").Inc()
		p.log.Info("revoked", "username", s.req.Username, "client_id", s.req.ClientID, "remote", s.clientRaw.RemoteAddr().String(),
			"outcome", string(d.Outcome), "why", why)
		s.kick(packets.AdministrativeAction, "revoked")
		return
	}
	p.metrics.Revalidations.WithLabelValues("allowed").Inc()
	s.scheduleNotAfter(d.NotAfter)
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

// scheduleNotAfter arranges a re-decision at the user's not_after, so that
// an expiry closes the connection at that moment.
func (s *session) scheduleNotAfter(t time.Time) {
	s.timerMu.Lock()
	defer s.timerMu.Unlock()
	if s.notAfter != nil {
		s.notAfter.Stop()
		s.notAfter = nil
	}
	if t.IsZero() || s.closed.Load() {
		return
	}
	s.notAfter = time.AfterFunc(time.Until(t)+10*time.Millisecond, func() { s.p.revalidate(s, "not_after") })
}

func (s *session) stopTimer() {
	s.scheduleNotAfter(time.Time{})
}
