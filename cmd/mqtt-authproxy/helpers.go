package main

// Helpers the commands share: the Redis store of the operator commands, and
// the error that exits 1 without a message.

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/app"
)

// storeFromEnv opens the Redis store of the AUTHPROXY_* configuration for
// the operator command cmd ("user set"), with a context that bounds the
// command; done closes both. Redis is pinged first, so that with Redis
// down the command fails with one line naming it (the URL redacted) and
// the cause, before it does anything.
func storeFromEnv(cmd string) (*authstore.Store, context.Context, func(), error) {
	cfg, err := app.Load(os.Environ())
	if err != nil {
		return nil, nil, nil, err
	}
	s, err := cfg.ValidateStore()
	if err != nil {
		return nil, nil, nil, err
	}
	s.Credentials.LazyKeys = true // a command reads an issuer's keys only for a token it is given
	quietRedisLogs()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	if err := pingRedis(ctx, s.RedisURL); err != nil {
		cancel()
		return nil, nil, nil, redisUnreachable(cmd, s.RedisURL, err)
	}
	store, closeStore, err := app.OpenStore(s, nil)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	return store, ctx, func() { cancel(); _ = closeStore() }, nil
}

// pingRedis pings the Redis of url within ctx: the store's own Ping gives
// up at its lookup timeout, before go-redis has told why it cannot connect.
func pingRedis(ctx context.Context, url string) error {
	rdb, err := redisconn.NewClient(url)
	if err != nil {
		return err
	}
	defer rdb.Close()
	return rdb.Ping(ctx).Err()
}

// redisUnreachable is the one line a command fails with when Redis does
// not answer: the command, the URL without its password, the cause.
func redisUnreachable(cmd, url string, err error) error {
	return fmt.Errorf("%s: Redis at %s: %w", cmd, redisconn.RedactURL(url), err)
}

// quietRedisLogs discards go-redis's own log lines (a failed dial is
// logged on stderr, several times per command): the command's error says
// what matters, in the product's words.
func quietRedisLogs() { redis.SetLogger(quietRedis{}) }

// quietRedis is a go-redis logger that discards.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

// quietError exits 1 without a message: the output said it all.
type quietError struct{ msg string }

func (e *quietError) Error() string { return e.msg }
