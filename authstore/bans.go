package authstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// BanKind is what a ban names.
type BanKind string

// Ban kinds.
const (
	BanIP       BanKind = "ip"       // an address or a CIDR: refused before any TLS work
	BanUser     BanKind = "user"     // a user name: refused at CONNECT, live sessions closed
	BanClientID BanKind = "clientid" // a client id: likewise
)

// Ban is one ban. Bans of a kind are one hash (field: the value; value:
// the JSON of when, until when and why), so that a CONNECT reads its two
// bans in its one round trip, and expiry needs no sweep: an expired ban is
// ignored where it is read and removed by the operator calls.
type Ban struct {
	Kind   BanKind   `json:"kind"`
	Value  string    `json:"value"`
	At     time.Time `json:"at"`
	Until  time.Time `json:"until,omitzero"` // zero: until removed
	Reason string    `json:"reason,omitempty"`
}

// Active reports whether the ban holds at now.
func (b Ban) Active(now time.Time) bool { return b.Until.IsZero() || now.Before(b.Until) }

// BanKey is the hash of a kind's bans.
func (s *Store) BanKey(k BanKind) string { return s.prefix + "ban:" + string(k) }

// BanChangesChannel is the pub/sub channel ban changes are published on
// ("kind value").
func (s *Store) BanChangesChannel() string { return s.prefix + "ban-changes" }

// parseBan reads a ban's stored value; "" is no ban.
func parseBan(kind BanKind, value, stored string) (Ban, bool) {
	if stored == "" {
		return Ban{}, false
	}
	b := Ban{Kind: kind, Value: value}
	if err := json.Unmarshal([]byte(stored), &b); err != nil {
		// Unreadable: it still bans (a ban never fails open).
		b.Reason = "unreadable ban entry"
		b.Until = time.Time{}
	}
	return b, true
}

// CheckBanValue validates a ban's value for its kind.
func CheckBanValue(k BanKind, v string) error {
	switch k {
	case BanIP:
		if _, err := ParseCIDRs(v); err != nil || strings.ContainsAny(v, " \t") || v == "" {
			return fmt.Errorf("ban ip %q: not an address or a CIDR", v)
		}
	case BanUser, BanClientID:
		if v == "" {
			return fmt.Errorf("ban %s: empty value", k)
		}
	default:
		return fmt.Errorf("ban kind %q: want ip, user or clientid", k)
	}
	return nil
}

// AddBan bans value for d (0: until removed), and tells every proxy.
func (s *Store) AddBan(ctx context.Context, k BanKind, value string, d time.Duration, reason string) (Ban, error) {
	if err := CheckBanValue(k, value); err != nil {
		return Ban{}, err
	}
	if k == BanIP {
		p, _ := ParseCIDRs(value)
		value = p[0].String()
		if p[0].IsSingleIP() {
			value = p[0].Addr().String()
		}
	}
	b := Ban{Kind: k, Value: value, At: s.now().UTC().Truncate(time.Second), Reason: reason}
	if d > 0 {
		b.Until = b.At.Add(d)
	}
	js, _ := json.Marshal(b)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, s.BanKey(k), value, js)
		p.Publish(ctx, s.BanChangesChannel(), string(k)+" "+value)
		return nil
	})
	return b, err
}

// ErrNoSuchBan is returned by RemoveBan for a ban that does not exist.
var ErrNoSuchBan = errors.New("no such ban")

// RemoveBan lifts a ban.
func (s *Store) RemoveBan(ctx context.Context, k BanKind, value string) error {
	if err := CheckBanValue(k, value); err != nil {
		return err
	}
	var n *redis.IntCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		n = p.HDel(ctx, s.BanKey(k), value)
		p.Publish(ctx, s.BanChangesChannel(), string(k)+" "+value)
		return nil
	})
	if err == nil && n.Val() == 0 {
		return fmt.Errorf("%w: %s %q", ErrNoSuchBan, k, value)
	}
	return err
}

// ListBans returns the active bans of every kind, sorted by kind and value;
// expired ones are removed on the way.
func (s *Store) ListBans(ctx context.Context) ([]Ban, error) {
	var out []Ban
	now := s.now()
	for _, k := range []BanKind{BanIP, BanUser, BanClientID} {
		h, err := s.rdb.HGetAll(ctx, s.BanKey(k)).Result()
		if err != nil {
			return nil, err
		}
		var expired []string
		for v, stored := range h {
			b, _ := parseBan(k, v, stored)
			if !b.Active(now) {
				expired = append(expired, v)
				continue
			}
			out = append(out, b)
		}
		if len(expired) > 0 {
			_ = s.rdb.HDel(ctx, s.BanKey(k), expired...).Err()
		}
	}
	slices.SortFunc(out, func(a, b Ban) int {
		return strings.Compare(string(a.Kind)+" "+a.Value, string(b.Kind)+" "+b.Value)
	})
	return out, nil
}

// IPBans returns the active IP bans as prefixes, for the proxy's check
// before any TLS work.
func (s *Store) IPBans(ctx context.Context) ([]IPBan, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	h, err := s.rdb.HGetAll(ctx, s.BanKey(BanIP)).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", policy.ErrUnavailable, err)
	}
	var out []IPBan
	for v, stored := range h {
		b, _ := parseBan(BanIP, v, stored)
		ps, err := ParseCIDRs(v)
		if err != nil {
			continue
		}
		out = append(out, IPBan{Prefix: ps[0], Until: b.Until, Reason: b.Reason})
	}
	return out, nil
}

// IPBan is an IP ban as the proxy holds it.
type IPBan struct {
	Prefix netip.Prefix
	Until  time.Time
	Reason string
}
