// Package ratelimit is the broker connect rate's shared bucket: the slots
// of a rate (one every interval, no burst) taken by every replica of the
// proxy through Redis, so that the replicas together hold a broker to its
// rate. Redis's own clock times the slots, so the replicas' clocks need
// not agree.
//
// While Redis does not answer, each replica keeps its share of the rate:
// the rate divided by the replicas it last knew of (each replica beats in
// a sorted set every HeartbeatInterval, and one silent for ReplicaTTL is
// forgotten), and asks Redis again a second later.
package ratelimit

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
)

// Heartbeats of the replicas that share the rates.
const (
	HeartbeatInterval = 5 * time.Second
	ReplicaTTL        = 30 * time.Second
	// retryAfter is how long a replica keeps to its share after Redis
	// failed to answer, before it asks again.
	retryAfter = time.Second
)

// Limiter takes slots of rates shared through Redis. Create it with New
// and run its heartbeat with Run.
type Limiter struct {
	rdb     redis.UniversalClient
	keys    redisconn.Keys
	replica string
	timeout time.Duration
	log     *slog.Logger

	replicas atomic.Int64 // the replicas last known to share the rates, at least 1
	offline  atomic.Int64 // unix ns until which Redis is not asked
	failed   atomic.Int64 // reservations made without Redis

	mu    sync.Mutex
	local map[string]time.Time // each key's next free slot of this replica's share
}

// New returns a Limiter on rdb, under keys' prefix, for the replica of
// that id; timeout bounds each round trip.
func New(rdb redis.UniversalClient, keys redisconn.Keys, replica string, timeout time.Duration, log *slog.Logger) *Limiter {
	if log == nil {
		log = slog.Default()
	}
	l := &Limiter{rdb: rdb, keys: keys, replica: replica, timeout: timeout, log: log, local: map[string]time.Time{}}
	l.replicas.Store(1)
	return l
}

// reserve is GCRA without burst on Redis's clock: the slot is the later of
// now and the key's next free time, and the next free time moves one
// interval past it. It returns the wait in microseconds.
var reserve = redis.NewScript(`
local now = redis.call('TIME')
local t = tonumber(now[1]) * 1000000 + tonumber(now[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < t then tat = t end
redis.call('SET', KEYS[1], tat + interval, 'PX', math.floor((tat + interval - t) / 1000) + 1000)
return tat - t
`)

// Reserve takes the next slot of key's rate (one every interval across
// every replica) and returns how long until it is due. Without Redis it
// takes a slot of this replica's share instead (one every interval times
// the replicas last known).
func (l *Limiter) Reserve(ctx context.Context, key string, interval time.Duration) time.Duration {
	if time.Now().UnixNano() >= l.offline.Load() {
		rctx, cancel := context.WithTimeout(ctx, l.timeout)
		us, err := reserve.Run(rctx, l.rdb, []string{l.keys.BrokerRateKey(key)}, interval.Microseconds()).Int64()
		cancel()
		if err == nil {
			return time.Duration(us) * time.Microsecond
		}
		if ctx.Err() == nil {
			l.offline.Store(time.Now().Add(retryAfter).UnixNano())
			l.log.Warn("broker connect rate: Redis does not answer; this replica keeps its share of the rate",
				"replicas", l.replicas.Load(), "error", err)
		}
	}
	l.failed.Add(1)
	return l.reserveLocal(key, interval*time.Duration(l.replicas.Load()))
}

// reserveLocal is GCRA without burst in process.
func (l *Limiter) reserveLocal(key string, interval time.Duration) time.Duration {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.local[key]
	if t.Before(now) {
		t = now
	}
	l.local[key] = t.Add(interval)
	return t.Sub(now)
}

// Replicas is the number of replicas last known to share the rates.
func (l *Limiter) Replicas() int64 { return l.replicas.Load() }

// Offline counts the slots taken without Redis (this replica's share).
func (l *Limiter) Offline() int64 { return l.failed.Load() }

// Run beats this replica's heartbeat and counts the replicas, now and
// every HeartbeatInterval, until ctx ends; it then takes the replica out.
func (l *Limiter) Run(ctx context.Context) {
	t := time.NewTicker(HeartbeatInterval)
	defer t.Stop()
	for {
		l.beat(ctx)
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.timeout)
			l.rdb.ZRem(dctx, l.keys.BrokerRateReplicasKey(), l.replica)
			cancel()
			return
		case <-t.C:
		}
	}
}

// beat records this replica, forgets the silent ones and counts the rest.
func (l *Limiter) beat(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	now := time.Now()
	key := l.keys.BrokerRateReplicasKey()
	var card *redis.IntCmd
	_, err := l.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, key, redis.Z{Score: float64(now.Unix()), Member: l.replica})
		p.ZRemRangeByScore(ctx, key, "-inf", strconv.FormatInt(now.Add(-ReplicaTTL).Unix(), 10))
		p.Expire(ctx, key, 2*ReplicaTTL)
		card = p.ZCard(ctx, key)
		return nil
	})
	if err == nil {
		l.replicas.Store(max(card.Val(), 1))
	}
}
