package authstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"

	"github.com/redis/go-redis/v9"
)

// KickChannel is the pub/sub channel Kick publishes usernames to.
func (s *Store) KickChannel() string { return s.prefix + "kick" }

// Kick asks every proxy sharing this Redis to close the user's live
// connections, without changing the rules. It returns how many proxies
// received the request.
func (s *Store) Kick(ctx context.Context, name string) (int64, error) {
	return s.rdb.Publish(ctx, s.KickChannel(), name).Result()
}

// keyspacePrefix is the keyspace-notification channel of a key prefix in
// the client's database, and the pattern that matches every key under it.
func (s *Store) keyspacePrefix(keyPrefix string) (pattern, channelPrefix string) {
	db := 0
	if c, ok := s.rdb.(*redis.Client); ok {
		db = c.Options().DB
	}
	channelPrefix = fmt.Sprintf("__keyspace@%d__:%s", db, keyPrefix)
	return escapeGlob(channelPrefix) + "*", channelPrefix
}

// Watch delivers changes until ctx ends: usernames published on
// ChangesChannel and role names on RoleChangesChannel (by the operator
// calls), kick requests on KickChannel, and, when Redis has keyspace
// notifications on (notify-keyspace-events with K, g, h and x:
// NotifyFlags, "Kghx"), every write to a user's or a role's hash made by
// anyone, such as redis-cli, and its expiry (every event of the key is
// delivered, "expired" included; see CheckNotifications). A subscription
// is re-established after a Redis outage, and f then gets a policy.Change
// with Resync set. With Redis Cluster, where keyspace notifications stay
// on the node that holds the key, every master is subscribed to (the
// masters are looked up again every few seconds). f is called one change
// at a time and must not block for long.
//
// With another schema, the keyspace notifications watched are those of
// the schema's keys instead (Store.NotifyFlags names the classes they
// need), each mapped to the user it concerns, or to every session for a
// key every decision reads (mosquitto-go-auth's common:* sets, a key
// template that does not name the user): a policy.Change of the default
// role.
func (s *Store) Watch(ctx context.Context, f func(policy.Change)) error {
	userPattern, userChannel := s.keyspacePrefix(s.UserKey(""))
	rolePattern, roleChannel := s.keyspacePrefix(s.RoleKey(""))
	patterns := []string{userPattern}
	if !s.noTopics {
		patterns = append(patterns, rolePattern)
	}
	schemaPatterns := map[string]bool{}
	_, keyspace := s.keyspacePrefix("")
	if s.schema != nil {
		patterns = nil
		for _, w := range distinctWatched(s.schema.watched()) {
			p, ch := s.keyspacePrefix(w.key)
			if !w.prefix {
				p = escapeGlob(ch)
			}
			patterns = append(patterns, p)
			schemaPatterns[p] = true
		}
	}
	var mu sync.Mutex
	deliver := func(c policy.Change) {
		mu.Lock()
		defer mu.Unlock()
		f(c)
	}
	onMessage := func(m *redis.Message) {
		switch {
		case schemaPatterns[m.Pattern]:
			// The proxy's own keys (failed-attempt counts, known
			// addresses, bans, the decision log) are not the schema's.
			if key, ok := strings.CutPrefix(m.Channel, keyspace); ok && !strings.HasPrefix(key, s.prefix) {
				for _, c := range s.schema.changes(key) {
					deliver(c)
				}
			}
		case m.Channel == s.ChangesChannel():
			deliver(policy.Change{Username: m.Payload})
		case m.Channel == s.KickChannel():
			deliver(policy.Change{Username: m.Payload, Kick: true})
		case m.Channel == s.RoleChangesChannel():
			deliver(policy.Change{Role: m.Payload})
		case m.Channel == s.BanChangesChannel():
			kind, value, _ := strings.Cut(m.Payload, " ")
			deliver(policy.Change{BanKind: kind, BanValue: value})
		case m.Pattern == userPattern:
			if name, ok := strings.CutPrefix(m.Channel, userChannel); ok && name != "" {
				deliver(policy.Change{Username: name})
			}
		case m.Pattern == rolePattern:
			if name, ok := strings.CutPrefix(m.Channel, roleChannel); ok && name != "" {
				deliver(policy.Change{Role: name})
			}
		}
	}
	resync := func() { deliver(policy.Change{Resync: true}) }
	channels := []string{s.ChangesChannel(), s.KickChannel(), s.RoleChangesChannel(), s.BanChangesChannel()}
	cc, cluster := s.rdb.(*redis.ClusterClient)
	if !cluster {
		return s.receive(ctx, s.rdb.Subscribe(ctx), channels, patterns, false, onMessage, resync)
	}
	// Channel messages reach every node of a cluster; keyspace
	// notifications do not leave theirs.
	done := make(chan struct{})
	defer func() { <-done }()
	go func() {
		defer close(done)
		s.watchMasters(ctx, cc, patterns, onMessage, resync)
	}()
	return s.receive(ctx, cc.Subscribe(ctx), channels, nil, false, onMessage, resync)
}

// clusterRefresh is how often Watch looks up a cluster's masters again.
const clusterRefresh = 5 * time.Second

// watchMasters keeps one keyspace subscription on every master of the
// cluster until ctx ends. A master that appears later (a promoted replica,
// a new shard) asks for a resync once subscribed: changes made before may
// have been missed.
func (s *Store) watchMasters(ctx context.Context, cc *redis.ClusterClient, patterns []string, onMessage func(*redis.Message), resync func()) {
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
					_ = s.receive(nctx, node.Subscribe(nctx), nil, patterns, !first, onMessage, resync)
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
func (s *Store) receive(ctx context.Context, ps *redis.PubSub, channels []string, patterns []string, startLost bool,
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
				s.log.Warn("change notifications interrupted; resubscribing when Redis is back", "error", err)
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
				s.log.Info("change notifications resumed")
				resync()
			}
		case *redis.Message:
			onMessage(m)
		}
	}
}

// distinctWatched leaves out the watched keys another one's prefix
// already covers, so that no write is delivered twice.
func distinctWatched(ws []watchedKey) []watchedKey {
	var out []watchedKey
	for i, w := range ws {
		covered := false
		for j, o := range ws {
			same := o.key == w.key && o.prefix == w.prefix
			if i != j && (same && j < i || !same && o.prefix && strings.HasPrefix(w.key, o.key)) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, w)
		}
	}
	return out
}
