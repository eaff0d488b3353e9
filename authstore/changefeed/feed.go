// Package changefeed tells live sessions what changed in the rule store:
// the operator calls' publications (users, roles, bans, kicks) and, with
// keyspace notifications on, every write to a user's or a role's hash
// made by anyone (or to another schema's keys), followed across Redis
// outages, Sentinel failovers and Cluster masters.
package changefeed

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/schemas"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Options tune a Feed. Zero values take the defaults.
type Options struct {
	Prefix string // key prefix, default "mqtt:"
	// Timeout bounds CheckNotifications, default 500ms.
	Timeout time.Duration
	// NoTopicRules: role keys are not watched (topic rules are off).
	NoTopicRules bool
	// Schema: the keys of another product's layout are watched instead
	// of the native users and roles; nil: the native layout.
	Schema schemas.Schema
	Logger *slog.Logger // default slog.Default()
}

// Feed delivers the changes of the rules under one key prefix. It is
// safe for concurrent use.
type Feed struct {
	rdb      redis.UniversalClient
	keys     redisconn.Keys
	timeout  time.Duration
	noTopics bool
	schema   schemas.Schema
	log      *slog.Logger
}

// New returns the Feed of the rules o describes in rdb.
func New(rdb redis.UniversalClient, o Options) *Feed {
	if o.Timeout <= 0 {
		o.Timeout = 500 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Feed{rdb: rdb, keys: redisconn.NewKeys(o.Prefix), timeout: o.Timeout, noTopics: o.NoTopicRules, schema: o.Schema, log: o.Logger}
}

// NotifyFlags are the notify-keyspace-events classes Watch needs with
// this feed's schema: redisconn.NotifyFlags for the native one.
func (f *Feed) NotifyFlags() string {
	if f.schema == nil {
		return redisconn.NotifyFlags
	}
	return f.schema.NotifyFlags()
}

// CheckNotifications reads notify-keyspace-events (CONFIG GET) and returns
// the classes of NotifyFlags it lacks; without them, changes made with
// plain redis-cli reach live connections only at the periodic
// re-validation. On a Redis Cluster every master is read, and a class
// missing on any of them is reported. An error means it could not be
// checked: Redis is unreachable, or CONFIG is not allowed (managed Redis
// services often rename or forbid it).
func (f *Feed) CheckNotifications(ctx context.Context) (missing string, err error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	return redisconn.CheckNotifications(ctx, f.rdb, f.NotifyFlags())
}

// Watch delivers changes until ctx ends: usernames published on
// ChangesChannel and role names on RoleChangesChannel (by the operator
// calls), kick requests on KickChannel, and, when Redis has keyspace
// notifications on (notify-keyspace-events with K, g, h and x:
// redisconn.NotifyFlags, "Kghx"), every write to a user's or a role's
// hash made by anyone, such as redis-cli, and its expiry (every event of
// the key is delivered, "expired" included; see CheckNotifications). A
// subscription is re-established after a Redis outage, and deliver then
// gets a policy.Change with Resync set. With Redis Cluster, where keyspace
// notifications stay on the node that holds the key, every master is
// subscribed to (the masters are looked up again every few seconds).
// deliver is called one change at a time and must not block for long.
//
// With another schema, the keyspace notifications watched are those of
// the schema's keys instead (NotifyFlags names the classes they need),
// each mapped to the user it concerns, or to every session for a key
// every decision reads (mosquitto-go-auth's common:* sets, a key
// template that does not name the user): a policy.Change of the default
// role.
func (f *Feed) Watch(ctx context.Context, deliver func(policy.Change)) error {
	var mu sync.Mutex
	one := func(c policy.Change) {
		mu.Lock()
		defer mu.Unlock()
		deliver(c)
	}
	r := f.newRouter(one)
	resync := func() { one(policy.Change{Resync: true}) }
	channels := []string{f.keys.ChangesChannel(), f.keys.KickChannel(), f.keys.RoleChangesChannel(), f.keys.BanChangesChannel(), f.keys.RevokedChannel()}
	cc, cluster := f.rdb.(*redis.ClusterClient)
	if !cluster {
		return f.receive(ctx, f.rdb.Subscribe(ctx), channels, r.patterns, false, r.route, resync)
	}
	// Channel messages reach every node of a cluster; keyspace
	// notifications do not leave theirs.
	done := make(chan struct{})
	defer func() { <-done }()
	go func() {
		defer close(done)
		f.watchMasters(ctx, cc, r.patterns, r.route, resync)
	}()
	return f.receive(ctx, cc.Subscribe(ctx), channels, nil, false, r.route, resync)
}

// router turns what the subscriptions receive into changes.
type router struct {
	f                        *Feed
	deliver                  func(policy.Change)
	patterns                 []string // the keyspace patterns subscribed to
	userPattern, userChannel string
	rolePattern, roleChannel string
	schemaPatterns           map[string]bool
	keyspace                 string // the keyspace channel of the empty prefix
	revokedPattern           string // the revoked credentials' hash (any schema)
}

// newRouter subscribes to the users' and roles' keyspace notifications
// (the roles' unless topic rules are off), or with another schema to
// those of its keys.
func (f *Feed) newRouter(deliver func(policy.Change)) *router {
	r := &router{f: f, deliver: deliver, schemaPatterns: map[string]bool{}}
	r.userPattern, r.userChannel = redisconn.KeyspaceChannel(f.rdb, f.keys.UserKey(""))
	r.rolePattern, r.roleChannel = redisconn.KeyspaceChannel(f.rdb, f.keys.RoleKey(""))
	_, r.keyspace = redisconn.KeyspaceChannel(f.rdb, "")
	_, revoked := redisconn.KeyspaceChannel(f.rdb, f.keys.RevokedKey())
	r.revokedPattern = redisconn.EscapeGlob(revoked)
	r.patterns = []string{r.userPattern, r.revokedPattern}
	if !f.noTopics {
		r.patterns = append(r.patterns, r.rolePattern)
	}
	if f.schema == nil {
		return r
	}
	r.patterns = []string{r.revokedPattern}
	for _, w := range schemas.Distinct(f.schema.Watched()) {
		p, ch := redisconn.KeyspaceChannel(f.rdb, w.Key)
		if !w.Prefix {
			p = redisconn.EscapeGlob(ch)
		}
		r.patterns = append(r.patterns, p)
		r.schemaPatterns[p] = true
	}
	return r
}

// route delivers the changes a message means.
func (r *router) route(m *redis.Message) {
	keys := r.f.keys
	switch {
	case m.Pattern == r.revokedPattern || m.Channel == keys.RevokedChannel():
		r.deliver(policy.Change{Revoked: true})
	case r.schemaPatterns[m.Pattern]:
		// The proxy's own keys (failed-attempt counts, known
		// addresses, bans, the decision log) are not the schema's.
		if key, ok := strings.CutPrefix(m.Channel, r.keyspace); ok && !strings.HasPrefix(key, keys.Prefix()) {
			for _, c := range r.f.schema.Changes(key) {
				r.deliver(c)
			}
		}
	case m.Channel == keys.ChangesChannel():
		r.deliver(policy.Change{Username: m.Payload})
	case m.Channel == keys.KickChannel():
		r.deliver(policy.Change{Username: m.Payload, Kick: true})
	case m.Channel == keys.RoleChangesChannel():
		r.deliver(policy.Change{Role: m.Payload})
	case m.Channel == keys.BanChangesChannel():
		kind, value, _ := strings.Cut(m.Payload, " ")
		r.deliver(policy.Change{BanKind: kind, BanValue: value})
	case m.Pattern == r.userPattern:
		if name, ok := strings.CutPrefix(m.Channel, r.userChannel); ok && name != "" {
			r.deliver(policy.Change{Username: name})
		}
	case m.Pattern == r.rolePattern:
		if name, ok := strings.CutPrefix(m.Channel, r.roleChannel); ok && name != "" {
			r.deliver(policy.Change{Role: name})
		}
	}
}

// clusterRefresh is how often Watch looks up a cluster's masters again.
const clusterRefresh = 5 * time.Second

// watchMasters keeps one keyspace subscription on every master of the
// cluster until ctx ends. A master that appears later (a promoted replica,
// a new shard) asks for a resync once subscribed: changes made before may
// have been missed.
func (f *Feed) watchMasters(ctx context.Context, cc *redis.ClusterClient, patterns []string, onMessage func(*redis.Message), resync func()) {
	var wg sync.WaitGroup
	defer wg.Wait()
	watching := map[string]context.CancelFunc{}
	defer func() {
		for _, cancel := range watching {
			cancel()
		}
	}()
	for first := true; ; first = false {
		var mu sync.Mutex
		masters := map[string]*redis.Client{}
		err := cc.ForEachMaster(ctx, func(_ context.Context, node *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			masters[node.Options().Addr] = node
			return nil
		})
		if err == nil {
			for addr, node := range masters {
				if _, ok := watching[addr]; ok {
					continue
				}
				nctx, cancel := context.WithCancel(ctx)
				watching[addr] = cancel
				wg.Add(1)
				go func() {
					defer wg.Done()
					_ = f.receive(nctx, node.Subscribe(nctx), nil, patterns, !first, onMessage, resync)
				}()
			}
			for addr, cancel := range watching {
				if _, ok := masters[addr]; !ok {
					cancel() // no longer a master
					delete(watching, addr)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(clusterRefresh):
		}
	}
}

// receive subscribes ps to channels and patterns and hands what arrives to
// onMessage until ctx ends, resubscribing after an outage (go-redis
// re-sends the subscriptions on reconnect) and calling resync once it is
// subscribed again; with startLost, also once it is first subscribed.
func (f *Feed) receive(ctx context.Context, ps *redis.PubSub, channels []string, patterns []string, startLost bool,
	onMessage func(*redis.Message), resync func()) error {
	defer ps.Close()
	// Receive does not return on ctx alone: closing the subscription ends it.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	// Both are recorded by go-redis even when Redis is down now, and
	// re-sent whenever the connection is re-established.
	lost := startLost
	if len(channels) > 0 && ps.Subscribe(ctx, channels...) != nil {
		lost = true
	}
	if len(patterns) > 0 && ps.PSubscribe(ctx, patterns...) != nil {
		lost = true
	}
	confirmation := "subscribe"
	if len(patterns) > 0 {
		confirmation = "psubscribe"
	}
	var backoff time.Duration
	for {
		msg, err := ps.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !lost {
				f.log.Warn("change notifications interrupted; resubscribing when Redis is back", "error", err)
			}
			lost = true
			backoff = min(max(backoff*2, 50*time.Millisecond), 2*time.Second)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return ctx.Err()
			}
			if errors.Is(err, redis.ErrClosed) {
				return err
			}
			continue
		}
		backoff = 0
		switch m := msg.(type) {
		case *redis.Subscription:
			if lost && m.Kind == confirmation {
				lost = false
				f.log.Info("change notifications resumed")
				resync()
			}
		case *redis.Message:
			onMessage(m)
		}
	}
}
