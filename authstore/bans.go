package authstore

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// IPBan is an IP ban as the proxy holds it.
type IPBan struct {
	Prefix netip.Prefix
	Until  time.Time
	Reason string
}

// IPBans returns the active IP bans as prefixes, for the proxy's check
// before any TLS work.
func (s *Store) IPBans(ctx context.Context) ([]IPBan, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	h, err := s.rdb.HGetAll(ctx, s.BanKey(string(rules.BanIP))).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", policy.ErrUnavailable, err)
	}
	var out []IPBan
	for v, stored := range h {
		b, _ := rules.ParseBan(rules.BanIP, v, stored)
		ps, err := rules.ParseCIDRs(v)
		if err != nil {
			continue
		}
		out = append(out, IPBan{Prefix: ps[0], Until: b.Until, Reason: b.Reason})
	}
	return out, nil
}
