package sessions

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
)

// publish starts publishing ss as replica's sessions, every 20 ms, and
// waits until the first round is in Redis.
func publish(t *testing.T, srv *testenv.Server, replica string, ss ...Session) *Publisher {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rdb.Close() })
	p, err := NewPublisher(rdb, PublisherOptions{Replica: replica, Interval: 20 * time.Millisecond,
		Snapshot: func() []Session { return slices.Clone(ss) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		select {
		case <-p.stop:
		default:
			p.Close()
		}
	})
	key := redisconn.NewKeys("").SessionsKey(replica)
	testenv.WaitFor(t, 5*time.Second, replica+"'s sessions published", func() bool {
		n, err := rdb.HLen(context.Background(), key).Result()
		return err == nil && n == int64(len(ss))
	})
	return p
}

// list is List on c's Redis.
func list(t *testing.T, c *Counter, f Filter) []Session {
	t.Helper()
	ss, err := List(context.Background(), c.rdb, c.keys, f)
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

// replicasOf are the replica ids of ss, in order.
func listed(ss []Session) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Replica+"/"+s.ClientID)
	}
	return out
}

func session(user, client string, since time.Time) Session {
	return Session{Username: user, ClientID: client, Remote: "10.0.0.1:1883", Since: since}
}

// TestListFollowsTheLease: the sessions a replica publishes are listed
// while its Counter's lease holds, with its id; when the Counter closes
// (its lease given up) they leave the list at once, though the replica's
// hash is still there, as they stop counting for max_sessions.
func TestListFollowsTheLease(t *testing.T) {
	srv := testenv.Redis(t)
	c := newCounter(t, srv, "a", 0)
	t0 := time.Now().Truncate(time.Second)
	publish(t, srv, "a", session("u", "u-1", t0), session("v", "v-1", t0.Add(time.Second)))
	if got := listed(list(t, c, Filter{})); !slices.Equal(got, []string{"a/u-1", "a/v-1"}) {
		t.Fatalf("listed %v, want a's two sessions, oldest first", got)
	}
	if got := listed(list(t, c, Filter{User: "v"})); !slices.Equal(got, []string{"a/v-1"}) {
		t.Fatalf("v's sessions: %v", got)
	}
	if all, _, err := Count(context.Background(), c.rdb, c.keys, "u"); all != 1 || err != nil {
		t.Fatalf("Count of u: %d, %v; want 1", all, err)
	}
	c.Close()
	if ss := list(t, c, Filter{}); len(ss) != 0 {
		t.Fatalf("right after a's Counter closed: %v listed, want none", listed(ss))
	}
	if n, err := c.rdb.HLen(context.Background(), c.keys.SessionsKey("a")).Result(); n != 2 || err != nil {
		t.Fatalf("a's hash: %d fields (%v); the test wants it still there, so that the lease alone hid it", n, err)
	}
}

// TestListForgetsADeadReplica: a replica that dies (no renewal, no
// goodbye, its Publisher gone too) is listed until its lease ends, then
// not, though its hash has not expired.
func TestListForgetsADeadReplica(t *testing.T) {
	srv := testenv.Redis(t)
	const lease = 900 * time.Millisecond
	c := newCounter(t, srv, "a", lease)
	p := publish(t, srv, "a", session("u", "u-1", time.Now()))
	close(p.stop) // the publisher dies too: no Close, the hash stays
	<-p.done
	c.die()
	died := time.Now()
	if got := listed(list(t, c, Filter{})); !slices.Equal(got, []string{"a/u-1"}) {
		t.Fatalf("right after a died: %v listed, want its session until its lease ends", got)
	}
	testenv.WaitFor(t, 5*lease, "a's lease to end", func() bool { return len(list(t, c, Filter{})) == 0 })
	if gone := time.Since(died); gone < lease/2 {
		t.Fatalf("a's sessions left the list %v after it died: before its lease (%v, renewed every %v) could end", gone, lease, lease/3)
	}
	ttl, err := c.rdb.PTTL(context.Background(), c.keys.SessionsKey("a")).Result()
	if err != nil || ttl <= 0 {
		t.Fatalf("a's hash expires in %v (%v): want it still there, its expiry (lease + 3 intervals) later than the lease", ttl, err)
	}
}

// TestListTwoReplicas: the sessions of two live replicas are both listed,
// each with its replica's id, oldest first; a replica holding two leases
// for a moment (a claim) is listed once; a replica id may hold '#' (the
// lease member is the id up to its last '#').
func TestListTwoReplicas(t *testing.T) {
	srv := testenv.Redis(t)
	t0 := time.Now().Truncate(time.Second)
	a := newCounter(t, srv, "pod#1", 0)
	newCounter(t, srv, "b", 0)
	publish(t, srv, "pod#1", session("u", "u-1", t0), session("u", "u-3", t0.Add(2*time.Second)))
	publish(t, srv, "b", session("u", "u-2", t0.Add(time.Second)))
	want := []string{"pod#1/u-1", "b/u-2", "pod#1/u-3"}
	if got := listed(list(t, a, Filter{})); !slices.Equal(got, want) {
		t.Fatalf("listed %v, want %v", got, want)
	}
	if got := listed(list(t, a, Filter{Limit: 2})); !slices.Equal(got, want[1:]) {
		t.Fatalf("limit 2: %v, want the newest two %v", got, want[1:])
	}
	// b claims a new lease while its old one still holds.
	if err := a.rdb.ZAdd(context.Background(), a.keys.SessionLeaseKey(), redis.Z{Score: 1e15, Member: "b#previous"}).Err(); err != nil {
		t.Fatal(err)
	}
	if got := listed(list(t, a, Filter{})); !slices.Equal(got, want) {
		t.Fatalf("with b under two leases: %v, want %v", got, want)
	}
	if got, err := liveReplicas(context.Background(), a.rdb, a.keys); !slices.Equal(got, []string{"b", "pod#1"}) || err != nil {
		t.Fatalf("live replicas %v (%v), want b and pod#1 once each", got, err)
	}
}

// TestListIgnoresEndedLeases: a lease that ended by Redis's clock (its
// member not yet pruned) does not list its replica's hash.
func TestListIgnoresEndedLeases(t *testing.T) {
	srv := testenv.Redis(t)
	c := newCounter(t, srv, "a", 0)
	ctx := context.Background()
	redisNow, err := c.rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	ended := float64(redisNow.Add(-time.Second).UnixMilli())
	if err := c.rdb.ZAdd(ctx, c.keys.SessionLeaseKey(), redis.Z{Score: ended, Member: "z#old"}).Err(); err != nil {
		t.Fatal(err)
	}
	publish(t, srv, "z", session("u", "u-z", time.Now()))
	publish(t, srv, "a", session("u", "u-a", time.Now()))
	if got := listed(list(t, c, Filter{})); !slices.Equal(got, []string{"a/u-a"}) {
		t.Fatalf("listed %v, want a's session only (z's lease ended)", got)
	}
}

// TestPublisherReplicaIDChecked: a publisher needs a replica id that can
// name a key.
func TestPublisherReplicaIDChecked(t *testing.T) {
	for _, id := range []string{"", "a\nb", "a\x00b"} {
		if _, err := NewPublisher(nil, PublisherOptions{Replica: id}); err == nil {
			t.Errorf("replica id %q accepted", id)
		}
	}
}

// TestPublisherSkipsUnchangedRounds: with Version, a round that finds it
// unchanged lists nothing (an idle replica allocates nothing for its
// sessions) but still renews the hash's expiry; a changed Version
// publishes the change.
func TestPublisherSkipsUnchangedRounds(t *testing.T) {
	srv := testenv.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rdb.Close() })
	var version, rounds, snapshots atomic.Uint64
	var mu sync.Mutex
	ss := []Session{session("u", "u-1", time.Now())}
	p, err := NewPublisher(rdb, PublisherOptions{Replica: "a", Interval: 10 * time.Millisecond, Lease: time.Hour,
		Version: func() uint64 { rounds.Add(1); return version.Load() },
		Snapshot: func() []Session {
			snapshots.Add(1)
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(ss)
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	key := redisconn.NewKeys("").SessionsKey("a")
	testenv.WaitFor(t, 5*time.Second, "the first round", func() bool { return rdb.HLen(context.Background(), key).Val() == 1 })
	seen := snapshots.Load()
	_ = rdb.PExpire(context.Background(), key, time.Minute).Err()
	r := rounds.Load()
	testenv.WaitFor(t, 5*time.Second, "five more rounds", func() bool { return rounds.Load() >= r+5 })
	if n := snapshots.Load(); n != seen {
		t.Fatalf("%d snapshots after the first, with Version unchanged; want none", n-seen)
	}
	if ttl := rdb.PTTL(context.Background(), key).Val(); ttl < 30*time.Minute {
		t.Fatalf("the hash's expiry was not renewed by the rounds that published nothing: %v", ttl)
	}
	mu.Lock()
	ss = append(ss, session("v", "v-1", time.Now()))
	mu.Unlock()
	version.Add(1)
	testenv.WaitFor(t, 5*time.Second, "the new session published", func() bool { return rdb.HLen(context.Background(), key).Val() == 2 })
}
