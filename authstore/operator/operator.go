// Package operator is the operator's side of the rule store: users,
// roles and bans written and read as the CLI (`user`, `role`, `ban`,
// `kick`) does, every value validated before anything is written, each
// write one MULTI/EXEC that also tells every proxy what changed.
package operator

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
)

// Options tune an Editor. Zero values take the defaults.
type Options struct {
	Prefix string           // key prefix, default "mqtt:"
	Now    func() time.Time // the clock of bans, default time.Now
}

// Editor writes and reads the users, roles and bans under one key prefix.
// It is safe for concurrent use.
type Editor struct {
	rdb  redis.UniversalClient
	keys redisconn.Keys
	now  func() time.Time
}

// New returns the Editor of the rules under o.Prefix in rdb.
func New(rdb redis.UniversalClient, o Options) *Editor {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Editor{rdb: rdb, keys: redisconn.NewKeys(o.Prefix), now: o.Now}
}

// hashWrite is what one write sets and deletes in a hash.
type hashWrite struct {
	set map[string]any
	del []string
}

// list sets field to the values joined by spaces, once check (when not
// nil) accepts them; it deletes the field for an empty list and leaves it
// as it is for nil.
func (w *hashWrite) list(field string, v *[]string, check func(string) error) error {
	if v == nil {
		return nil
	}
	if len(*v) == 0 {
		w.del = append(w.del, field)
		return nil
	}
	joined := strings.Join(*v, " ")
	if check != nil {
		if err := check(joined); err != nil {
			return err
		}
	}
	w.set[field] = joined
	return nil
}

// field sets one field to *v, checked, or removes it when *v is "";
// nil leaves it.
func (w *hashWrite) field(field string, v *string, check func(string) error) error {
	switch {
	case v == nil:
	case *v == "":
		w.del = append(w.del, field)
	default:
		if err := check(*v); err != nil {
			return err
		}
		w.set[field] = *v
	}
	return nil
}

// write applies w to key and publishes name on channel, in one
// MULTI/EXEC.
func (e *Editor) write(ctx context.Context, key string, w hashWrite, channel, name string) error {
	_, err := e.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if len(w.set) > 0 {
			p.HSet(ctx, key, w.set)
		}
		if len(w.del) > 0 {
			p.HDel(ctx, key, w.del...)
		}
		p.Publish(ctx, channel, name)
		return nil
	})
	return err
}

// remove deletes key and publishes name on channel, in one MULTI/EXEC;
// it reports whether there was a key.
func (e *Editor) remove(ctx context.Context, key, channel, name string) (bool, error) {
	var n *redis.IntCmd
	_, err := e.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		n = p.Del(ctx, key)
		p.Publish(ctx, channel, name)
		return nil
	})
	return err == nil && n.Val() > 0, err
}

// listKeys returns what follows prefix in the names of the keys that
// start with it, sorted, using SCAN (never KEYS), on every master of a
// Cluster.
func (e *Editor) listKeys(ctx context.Context, prefix string) ([]string, error) {
	var names []string
	scan := func(ctx context.Context, c *redis.Client) error {
		it := c.Scan(ctx, 0, redisconn.EscapeGlob(prefix)+"*", 1000).Iterator()
		for it.Next(ctx) {
			names = append(names, strings.TrimPrefix(it.Val(), prefix))
		}
		return it.Err()
	}
	var err error
	switch c := e.rdb.(type) {
	case *redis.ClusterClient:
		var mu = make(chan struct{}, 1)
		err = c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			mu <- struct{}{}
			defer func() { <-mu }()
			return scan(ctx, n)
		})
	case *redis.Client:
		err = scan(ctx, c)
	default:
		return nil, fmt.Errorf("list %s*: unsupported client %T", prefix, e.rdb)
	}
	slices.Sort(names)
	return slices.Compact(names), err
}
