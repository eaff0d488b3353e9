package operator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
)

// ErrNoSuchBan is returned by RemoveBan for a ban that does not exist.
var ErrNoSuchBan = errors.New("no such ban")

// AddBan bans value for d (0: until removed), and tells every proxy. An
// address or CIDR is stored in its canonical form.
func (e *Editor) AddBan(ctx context.Context, k rules.BanKind, value string, d time.Duration, reason string) (rules.Ban, error) {
	if err := rules.CheckBanValue(k, value); err != nil {
		return rules.Ban{}, err
	}
	if k == rules.BanIP {
		p, _ := rules.ParseCIDRs(value)
		value = p[0].String()
		if p[0].IsSingleIP() {
			value = p[0].Addr().String()
		}
	}
	b := rules.Ban{Kind: k, Value: value, At: e.now().UTC().Truncate(time.Second), Reason: reason}
	if d > 0 {
		b.Until = b.At.Add(d)
	}
	js, _ := json.Marshal(b)
	_, err := e.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, e.keys.BanKey(string(k)), value, js)
		p.Publish(ctx, e.keys.BanChangesChannel(), string(k)+" "+value)
		return nil
	})
	return b, err
}

// RemoveBan lifts a ban, and tells every proxy.
func (e *Editor) RemoveBan(ctx context.Context, k rules.BanKind, value string) error {
	if err := rules.CheckBanValue(k, value); err != nil {
		return err
	}
	var n *redis.IntCmd
	_, err := e.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		n = p.HDel(ctx, e.keys.BanKey(string(k)), value)
		p.Publish(ctx, e.keys.BanChangesChannel(), string(k)+" "+value)
		return nil
	})
	if err == nil && n.Val() == 0 {
		return fmt.Errorf("%w: %s %q", ErrNoSuchBan, k, value)
	}
	return err
}

// ListBans returns the active bans of every kind, sorted by kind and value;
// expired ones are removed on the way.
func (e *Editor) ListBans(ctx context.Context) ([]rules.Ban, error) {
	var out []rules.Ban
	now := e.now()
	for _, k := range rules.BanKinds {
		h, err := e.rdb.HGetAll(ctx, e.keys.BanKey(string(k))).Result()
		if err != nil {
			return nil, err
		}
		var expired []string
		for v, stored := range h {
			b, _ := rules.ParseBan(k, v, stored)
			if !b.Active(now) {
				expired = append(expired, v)
				continue
			}
			out = append(out, b)
		}
		if len(expired) > 0 {
			_ = e.rdb.HDel(ctx, e.keys.BanKey(string(k)), expired...).Err()
		}
	}
	slices.SortFunc(out, func(a, b rules.Ban) int {
		return strings.Compare(string(a.Kind)+" "+a.Value, string(b.Kind)+" "+b.Value)
	})
	return out, nil
}
