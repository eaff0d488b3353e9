package redisconn

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// NotifyFlags are the notify-keyspace-events classes the change feed needs
// to see every change made to a user's hash by anyone: K (keyspace
// channels, which it subscribes to), g (DEL, EXPIRE, RENAME...), h (HSET,
// HDEL...) and x (expired: a hash that reaches its EXPIRE time).
const NotifyFlags = "Kghx"

// NotificationsMissing returns the classes of NotifyFlags that a
// notify-keyspace-events value lacks, in NotifyFlags' order ("" when none
// is). A stands for g$lshzxetd, as in Redis.
func NotificationsMissing(flags string) string { return MissingFlags(NotifyFlags, flags) }

// MissingFlags returns the classes of want that flags (a
// notify-keyspace-events value) lacks, in want's order.
func MissingFlags(want, flags string) string {
	flags = strings.ReplaceAll(flags, "A", "g$lshzxetd")
	var missing strings.Builder
	for _, f := range want {
		if !strings.ContainsRune(flags, f) {
			missing.WriteRune(f)
		}
	}
	return missing.String()
}

// CheckNotifications reads notify-keyspace-events (CONFIG GET) and returns
// the classes of want it lacks. On a Redis Cluster every master is read,
// and a class missing on any of them is reported. An error means it could
// not be checked: Redis is unreachable, or CONFIG is not allowed (managed
// Redis services often rename or forbid it).
func CheckNotifications(ctx context.Context, rdb redis.UniversalClient, want string) (missing string, err error) {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		flags, err := notifyFlags(ctx, rdb)
		if err != nil {
			return "", err
		}
		return MissingFlags(want, flags), nil
	}
	var mu sync.Mutex
	var lacking string
	err = cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		flags, err := notifyFlags(ctx, node)
		if err != nil {
			return fmt.Errorf("%s: %w", node.Options().Addr, err)
		}
		mu.Lock()
		lacking += MissingFlags(want, flags)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return "", err
	}
	// The union, in want's order.
	return MissingFlags(want, strings.Map(func(r rune) rune {
		if strings.ContainsRune(lacking, r) {
			return -1
		}
		return r
	}, want)), nil
}

// notifyFlags reads one server's notify-keyspace-events.
func notifyFlags(ctx context.Context, c redis.Cmdable) (string, error) {
	v, err := c.ConfigGet(ctx, "notify-keyspace-events").Result()
	if err != nil {
		return "", fmt.Errorf("CONFIG GET notify-keyspace-events: %w", err)
	}
	flags, ok := v["notify-keyspace-events"]
	if !ok {
		return "", fmt.Errorf("CONFIG GET notify-keyspace-events: no such setting in the answer")
	}
	return flags, nil
}

// KeyspaceChannel is the keyspace-notification channel of a key prefix in
// the client's database, and the pattern that matches every key under it.
func KeyspaceChannel(rdb redis.UniversalClient, keyPrefix string) (pattern, channelPrefix string) {
	db := 0
	if c, ok := rdb.(*redis.Client); ok {
		db = c.Options().DB
	}
	channelPrefix = fmt.Sprintf("__keyspace@%d__:%s", db, keyPrefix)
	return EscapeGlob(channelPrefix) + "*", channelPrefix
}
