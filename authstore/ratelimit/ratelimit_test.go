package ratelimit

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
)

func newLimiter(t *testing.T, addr, replica string) *Limiter {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	return New(rdb, redisconn.NewKeys("rl:"), replica, 200*time.Millisecond, slog.New(slog.DiscardHandler))
}

// TestSharedSlots: two replicas take slots of one key's rate through a
// real Redis: together they get one slot every interval, no burst, each
// later one the interval after the one before (on Redis's clock); another
// key has a rate of its own.
func TestSharedSlots(t *testing.T) {
	srv := testenv.Redis(t)
	a, b := newLimiter(t, srv.Addr(), "a"), newLimiter(t, srv.Addr(), "b")
	ctx := context.Background()
	const interval = 100 * time.Millisecond
	var waits []time.Duration
	for i := range 6 {
		l := a
		if i%2 == 1 {
			l = b
		}
		waits = append(waits, l.Reserve(ctx, "broker:x", interval))
	}
	for i, w := range waits {
		// Each slot is one interval past the one before, less the time
		// the reservations themselves took.
		if low := time.Duration(i)*interval - 50*time.Millisecond; w < low {
			t.Fatalf("slot %d is due in %v, want at least %v: %v", i, w, low, waits)
		}
	}
	if w := a.Reserve(ctx, "broker:y", interval); w != 0 {
		t.Fatalf("another address's first slot is due in %v", w)
	}
	if a.Offline() != 0 {
		t.Fatal("slots taken without Redis while it answered")
	}
}

// TestShareWhileRedisIsAway: with Redis gone, a replica keeps its share
// of the rate: one slot every interval times the replicas it last counted
// (both beat once), and counts those slots.
func TestShareWhileRedisIsAway(t *testing.T) {
	srv := testenv.Redis(t)
	a, b := newLimiter(t, srv.Addr(), "a"), newLimiter(t, srv.Addr(), "b")
	ctx := context.Background()
	a.beat(ctx)
	b.beat(ctx)
	a.beat(ctx)
	if a.Replicas() != 2 {
		t.Fatalf("replicas counted: %d", a.Replicas())
	}
	srv.Stop()
	const interval = 50 * time.Millisecond
	w0 := a.Reserve(ctx, "broker:x", interval)
	w1 := a.Reserve(ctx, "broker:x", interval)
	w2 := a.Reserve(ctx, "broker:x", interval)
	if w0 != 0 || w1 < 2*interval-10*time.Millisecond || w2 < 4*interval-10*time.Millisecond || a.Offline() != 3 {
		t.Fatalf("without Redis: slots due in %v %v %v (offline %d), want every %v", w0, w1, w2, a.Offline(), 2*interval)
	}
}
