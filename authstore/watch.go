package authstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Change is a notification that a user's rules may have changed.
type Change struct {
	Username string
	// Kick asks to close the user's live connections without re-deciding.
	Kick bool
	// Resync: notifications may have been missed (the subscription was
	// re-established after a Redis outage): re-decide every live connection.
	Resync bool
}

// KickChannel is the pub/sub channel Kick publishes usernames to.
func (s *Store) KickChannel() string { return s.prefix + "kick" }

// Kick asks every proxy sharing this Redis to close the user's live
// connections, without changing the rules. It returns how many proxies
// received the request.
func (s *Store) Kick(ctx context.Context, name string) (int64, error) {
	return s.rdb.Publish(ctx, s.KickChannel(), name).Result()
}

// keyspacePattern is the keyspace-notification pattern of user hashes in
// the client's database.
func (s *Store) keyspacePattern() (pattern, channelPrefix string) {
	db := 0
	if c, ok := s.rdb.(*redis.Client); ok {
		db = c.Options().DB
	}
	channelPrefix = fmt.Sprintf("__keyspace@%d__:%s", db, s.UserKey(""))
	return escapeGlob(channelPrefix) + "*", channelPrefix
}

// Watch delivers changes until ctx ends: usernames published on
// ChangesChannel (by the operator calls), kick requests on KickChannel, and,
// when Redis has keyspace notifications on (notify-keyspace-events with K,
// g and h, e.g. "Kgh"), every write to a user's hash made by anyone, such as
// redis-cli. The subscription is re-established after a Redis outage, and f
// then gets a Change with Resync set. f runs on Watch's goroutine and must
// not block for long.
func (s *Store) Watch(ctx context.Context, f func(Change)) error {
	pattern, chPrefix := s.keyspacePattern()
	ps := s.rdb.Subscribe(ctx)
	defer ps.Close()
	// Receive does not return on ctx alone: closing the subscription ends it.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	var backoff time.Duration
	// Both are recorded by go-redis even when Redis is down now, and
	// re-sent whenever the connection is re-established.
	err1 := ps.Subscribe(ctx, s.ChangesChannel(), s.KickChannel())
	err2 := ps.PSubscribe(ctx, pattern)
	lost := err1 != nil || err2 != nil
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
			if lost && m.Kind == "psubscribe" {
				lost = false
				s.log.Info("change notifications resumed")
				f(Change{Resync: true})
			}
		case *redis.Message:
			switch {
			case m.Channel == s.ChangesChannel():
				f(Change{Username: m.Payload})
			case m.Channel == s.KickChannel():
				f(Change{Username: m.Payload, Kick: true})
			case m.Pattern == pattern:
				if name, ok := strings.CutPrefix(m.Channel, chPrefix); ok && name != "" {
					f(Change{Username: name})
				}
			}
		}
	}
}
