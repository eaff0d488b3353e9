package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/logsafe"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// IPBan bans an address or a network before any TLS work.
type IPBan struct {
	Prefix netip.Prefix
	Until  time.Time // zero: until lifted
	Reason string
}

// gate judges a device's address before any TLS work: an IP ban, then
// the per-address connection rate.
func (p *Proxy) gate(a netip.Addr) error {
	now := time.Now()
	if r := p.bannedIP(a, now); r != nil {
		return r
	}
	if p.connRate != nil && !p.connRate.allow(a, now) {
		return &refusal{outcome: OutcomeRateLimited, reason: fmt.Sprintf("address %s over CONN_RATE_PER_IP", a)}
	}
	return nil
}

// bannedIP is the refusal of a banned address, nil when it is not.
func (p *Proxy) bannedIP(a netip.Addr, now time.Time) *refusal {
	a = a.Unmap()
	for _, b := range *p.ipBans.Load() {
		if b.Prefix.Contains(a) && (b.Until.IsZero() || now.Before(b.Until)) {
			msg := fmt.Sprintf("address %s banned (%s)", a, b.Prefix)
			if b.Reason != "" {
				msg += ": " + b.Reason
			}
			return &refusal{outcome: OutcomeBannedIP, reason: msg}
		}
	}
	return nil
}

// loadIPBans reads the IP bans afresh; on failure the ones held stay.
func (p *Proxy) loadIPBans() {
	if p.cfg.IPBans == nil {
		return
	}
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	bans, err := p.cfg.IPBans(ctx)
	if err != nil {
		if p.ctx.Err() == nil {
			p.log.Warn("IP bans not reloaded; keeping the ones held", "error", err)
		}
		return
	}
	p.ipBans.Store(&bans)
}

// ipBanRefresh is how often the IP bans are read again, besides every ban
// change notification.
const ipBanRefresh = 30 * time.Second

// followIPBans keeps the IP bans fresh until the proxy stops.
func (p *Proxy) followIPBans() {
	t := time.NewTicker(ipBanRefresh)
	defer t.Stop()
	for {
		p.loadIPBans()
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
	}
}

// rateLimiter is a token bucket per source address (an IPv6 /64 counts as
// one address): at most burst connections at once, refilled at rate a
// second. Buckets idle long enough to be full again are forgotten.
type rateLimiter struct {
	rate  rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[netip.Addr]*bucket
	swept   time.Time
}

type bucket struct {
	l    *rate.Limiter
	seen time.Time
}

func newRateLimiter(perSecond float64, burst int) *rateLimiter {
	return &rateLimiter{rate: rate.Limit(perSecond), burst: burst, buckets: map[netip.Addr]*bucket{}}
}

func (r *rateLimiter) allow(a netip.Addr, now time.Time) bool {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		a = p.Addr()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.buckets[a]
	if b == nil {
		b = &bucket{l: rate.NewLimiter(r.rate, r.burst)}
		r.buckets[a] = b
	}
	b.seen = now
	if full := time.Duration(float64(r.burst) / float64(r.rate) * float64(time.Second)); now.Sub(r.swept) > full && len(r.buckets) > 1024 {
		for k, v := range r.buckets {
			if now.Sub(v.seen) > full {
				delete(r.buckets, k)
			}
		}
		r.swept = now
	}
	return b.l.AllowN(now, 1)
}

// applyBan follows a ban added or lifted: an IP ban reloads the bans and
// closes the sessions from the banned addresses; a user or client id ban
// decides the sessions it names again (the decision refuses them).
func (p *Proxy) applyBan(kind, value string) {
	switch kind {
	case "user":
		p.RevalidateUser(value)
	case "clientid":
		for _, s := range p.allSessions() {
			if s.req.ClientID == value {
				p.revalidate(s, "client id banned")
			}
		}
	case "ip":
		p.loadIPBans()
		now := time.Now()
		for _, s := range p.allSessions() {
			if r := p.bannedIP(s.req.RemoteAddr, now); r != nil && !s.done() {
				p.log.Info("banned address: closing its session", "username", logsafe.String(s.req.Username), "remote", s.remote)
				s.record("ban", string(OutcomeBannedIP), r.reason)
				s.end(packets.AdministrativeAction, "banned")
			}
		}
	}
}
