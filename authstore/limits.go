package authstore

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/logsafe"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Limit is at most N failed attempts per Window; N 0 is no limit.
type Limit struct {
	N      int
	Window time.Duration
}

// On reports whether the limit applies.
func (l Limit) On() bool { return l.N > 0 && l.Window > 0 }

func (l Limit) String() string {
	if !l.On() {
		return "0"
	}
	return fmt.Sprintf("%d/%v", l.N, l.Window)
}

// ParseLimit reads "N/duration" (10/5m); "0" is no limit.
func ParseLimit(s string) (Limit, error) {
	if strings.TrimSpace(s) == "0" {
		return Limit{}, nil
	}
	n, w, ok := strings.Cut(s, "/")
	count, err1 := strconv.Atoi(n)
	window, err2 := time.ParseDuration(w)
	if !ok || err1 != nil || err2 != nil || count < 1 || window < time.Second {
		return Limit{}, fmt.Errorf("%q is not N/duration (e.g. 10/5m; window at least 1s) or 0", s)
	}
	return Limit{N: count, Window: window}, nil
}

// knownFor is how long an address where a user authenticated stays known
// for it: from a known address, the user's own failed-attempt limit does
// not apply (the address's does), so guesses from elsewhere cannot lock a
// device out of its usual address.
const knownFor = 30 * 24 * time.Hour

// knownRefresh: a success from a known address is written again only when
// the record is older than this (a device connecting often costs no
// write).
const knownRefresh = 24 * time.Hour

// addrKey is the key of an address for counts and known addresses: the
// address itself for IPv4, its /64 for IPv6 (one host holds a /64).
func addrKey(a netip.Addr) string {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// refuseEarly applies bans and failed-attempt limits before any hash is
// computed. Re-decisions of live sessions get bans only: someone else's
// guesses never end a session.
func (s *Store) refuseEarly(rec userRecord, req policy.Request) (policy.Decision, bool) {
	now := s.now()
	if d, refused := refuseBanned(rec, req, now); refused || req.Verified != nil {
		return d, refused
	}
	return s.refuseFailures(rec, req, now)
}

// refuseBanned refuses a CONNECT whose user name or client id is banned.
func refuseBanned(rec userRecord, req policy.Request, now time.Time) (policy.Decision, bool) {
	for _, b := range []struct {
		kind          rules.BanKind
		value, stored string
	}{{rules.BanUser, req.Username, rec.banUser}, {rules.BanClientID, req.ClientID, rec.banClientID}} {
		if ban, ok := rules.ParseBan(b.kind, b.value, b.stored); ok && ban.Active(now) && b.value != "" {
			req.Explain.Add("ban "+string(b.kind), policy.Fail, banReason(ban))
			return policy.Decision{Outcome: policy.Banned, Reason: banReason(ban)}, true
		}
		req.Explain.Add("ban "+string(b.kind), policy.Pass, "not banned")
	}
	return policy.Decision{}, false
}

// refuseFailures refuses a CONNECT past the failed-attempt limits: the
// address's, and the user's unless the address is one the user
// authenticated from.
func (s *Store) refuseFailures(rec userRecord, req policy.Request, now time.Time) (policy.Decision, bool) {
	e := req.Explain
	k := s.keysFor(req)
	if l := s.failLimitIP; l.On() {
		n := max(rec.failAddr, s.local.get(k.failAddr, l.Window, now))
		if n >= int64(l.N) {
			reason := fmt.Sprintf("address %s: %d failed attempts or more within %v", k.addr, l.N, l.Window)
			e.Add("failed attempts (address)", policy.Fail, reason)
			return policy.Decision{Outcome: policy.TooManyFailures, Reason: reason}, true
		}
		e.Add("failed attempts (address)", policy.Pass, fmt.Sprintf("%d of %v", n, l))
	}
	known := rec.knownAt > now.Add(-knownFor).Unix()
	if l := s.failLimitUser; l.On() {
		n := max(rec.failUser, s.local.get(k.failUser, l.Window, now))
		switch {
		case n >= int64(l.N) && !known:
			reason := fmt.Sprintf("user %s: %d failed attempts or more within %v, and %s is not an address it authenticated from", logsafe.String(req.Username), l.N, l.Window, k.addr)
			e.Add("failed attempts (user)", policy.Fail, reason)
			return policy.Decision{Outcome: policy.TooManyFailures, Reason: reason}, true
		case n >= int64(l.N):
			e.Add("failed attempts (user)", policy.Pass, fmt.Sprintf("%d of %v, but %s is an address the user authenticated from", n, l, k.addr))
		default:
			e.Add("failed attempts (user)", policy.Pass, fmt.Sprintf("%d of %v", n, l))
		}
	}
	return policy.Decision{}, false
}

// banReason says what a ban bans, until when and why.
func banReason(b rules.Ban) string {
	s := fmt.Sprintf("%s %s banned", b.Kind, logsafe.String(b.Value))
	if !b.Until.IsZero() {
		s += " until " + b.Until.UTC().Format(time.RFC3339)
	}
	if b.Reason != "" {
		s += ": " + logsafe.String(b.Reason)
	}
	return s
}

// countFailure counts a failed attempt for the user and the address, in
// Redis (one pipeline; every replica sees it) and in memory (which counts
// while Redis cannot).
func (s *Store) countFailure(ctx context.Context, req policy.Request) {
	if !s.failLimitUser.On() && !s.failLimitIP.On() {
		return
	}
	k := s.keysFor(req)
	now := s.now()
	s.local.add(k.failUser, s.failLimitUser.Window, now)
	s.local.add(k.failAddr, s.failLimitIP.Window, now)
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, c := range []struct {
			key string
			l   Limit
		}{{k.failUser, s.failLimitUser}, {k.failAddr, s.failLimitIP}} {
			if c.l.On() && (c.key != k.failUser || req.Username != "") {
				p.Incr(ctx, c.key)
				p.ExpireNX(ctx, c.key, c.l.Window)
			}
		}
		return nil
	})
	if err != nil {
		s.log.Warn("failed attempt not counted in Redis (counted in this process)", "error", err)
	}
}

// noteSuccess clears the user's failed attempts and remembers the address
// as one the user authenticates from; it writes only when there is
// something to change.
func (s *Store) noteSuccess(ctx context.Context, req policy.Request, rec userRecord) {
	now := s.now()
	k := s.keysFor(req)
	s.local.reset(k.failUser)
	fresh := rec.knownAt > now.Add(-knownRefresh).Unix()
	if rec.failUser == 0 && (fresh || !s.failLimitUser.On()) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		if rec.failUser > 0 {
			p.Del(ctx, k.failUser)
		}
		if !fresh && s.failLimitUser.On() {
			p.ZAdd(ctx, k.known, redis.Z{Score: float64(now.Unix()), Member: k.addr})
			p.ZRemRangeByScore(ctx, k.known, "-inf", strconv.FormatInt(now.Add(-knownFor).Unix(), 10))
			p.ZRemRangeByRank(ctx, k.known, 0, -65) // the 64 most recent addresses
			p.Expire(ctx, k.known, knownFor)
		}
		return nil
	})
	if err != nil {
		s.log.Warn("success not recorded in Redis", "error", err)
	}
}

// localCounts are this process's own failed-attempt counts, fixed
// windows, kept while Redis cannot count.
type localCounts struct {
	mu sync.Mutex
	m  map[string]localCount
}

type localCount struct {
	n     int64
	start time.Time
}

// maxLocalCounts bounds the map: past it, entries whose window ended go.
const maxLocalCounts = 100_000

func (c *localCounts) add(key string, window time.Duration, now time.Time) {
	if window <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]localCount{}
	}
	e := c.m[key]
	if now.Sub(e.start) >= window {
		e = localCount{start: now}
	}
	e.n++
	c.m[key] = e
	if len(c.m) > maxLocalCounts {
		for k, v := range c.m {
			if now.Sub(v.start) >= window {
				delete(c.m, k)
			}
		}
	}
}

func (c *localCounts) get(key string, window time.Duration, now time.Time) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || now.Sub(e.start) >= window {
		return 0
	}
	return e.n
}

func (c *localCounts) reset(key string) {
	c.mu.Lock()
	delete(c.m, key)
	c.mu.Unlock()
}
