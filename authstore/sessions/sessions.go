// Package sessions is the one registry of the live sessions of every
// replica, in Redis, with two views under one notion of which replicas
// are alive: their leases.
//
// Each replica holds a lease (its Counter) that it renews every third of
// the lease (30 s by default); a replica that dies stops renewing, and
// its lease ends, by Redis's clock, without anyone cleaning up. A replica
// that loses its lease (Redis was away, or restarted) claims a new one.
//
// The first view counts, for max_sessions: a CONNECT is admitted only
// while fewer than the user's max_sessions are live, and of two replicas
// racing for the last place exactly one wins (one Lua script reads the
// count and takes the place). A replica's own counts are kept in memory
// too; they are the truth it writes back when it claims a new lease.
//
// The second view lists, for the admin API, `user show`, explain and the
// status page: each replica publishes its live sessions (a Publisher,
// from the proxy's snapshot, off the hot path: what changed since the
// last round, every few seconds) to a hash of its own, and List reads the
// hashes of the replicas whose lease holds. So a dead replica's sessions
// leave the list when its lease ends, the moment they stop counting, and
// a replica that closes its Counter leaves both at once.
//
// Keys (redisconn.Keys): the sorted set of leases, member
// "<replica>#<epoch>" scored by when the lease ends (Redis's clock, unix
// ms), and per user a hash of one field per lease member: the user's
// sessions there; these share the hash tag {sessions}, so one slot on a
// Cluster. Per replica, the hash of its published sessions, one field per
// session; it expires some time after the replica stops publishing, which
// only collects a dead replica's garbage.
package sessions

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
)

// Options configure a Counter. Zero values take the defaults.
type Options struct {
	Prefix  string // key prefix, default "mqtt:"
	Replica string // this replica's id (required)
	// Lease is how long a replica's counts hold without a renewal,
	// default DefaultLease; it is renewed every third of it.
	Lease time.Duration
	// Timeout bounds each Redis call, default 500ms.
	Timeout time.Duration
	Logger  *slog.Logger
}

// DefaultLease is Options.Lease's default: a replica that stops renewing
// its lease (it died) is forgotten within it.
const DefaultLease = 30 * time.Second

// ErrLeaseLapsed: this replica's lease had ended (Redis was unreachable,
// or lost its data) and is being claimed again; the CONNECT is refused
// until it is, as while Redis is down.
var ErrLeaseLapsed = errors.New("sessions: this replica's lease lapsed; claiming it again")

// Counter counts sessions for one replica. Create it with New, stop it
// with Close. It is safe for concurrent use.
type Counter struct {
	rdb  redis.UniversalClient
	keys redisconn.Keys
	o    Options
	seed maphash.Seed

	// mu: admissions and releases share it; a new lease's claim holds it
	// alone, so that the counts it writes are the whole truth.
	mu      sync.RWMutex
	member  string         // "<replica>#<epoch>", the lease's member (under mu)
	stripes [64]sync.Mutex // one admission of a user at a time on this replica
	lmu     sync.Mutex     // guards local
	local   map[string]int // this replica's sessions by user
	dirty   atomic.Bool    // a write failed, or the lease lapsed: claim a new one
	wake    chan struct{}  // asks the loop to claim a lease now
	stop    chan struct{}
	done    chan struct{}
	failing atomic.Bool // the last renewal failed (logged once)
}

// New starts counting for o.Replica: it claims a lease (in the
// background when Redis does not answer now) and renews it until Close.
func New(rdb redis.UniversalClient, o Options) (*Counter, error) {
	if o.Replica == "" {
		return nil, errors.New("sessions: no replica id")
	}
	if o.Lease <= 0 {
		o.Lease = DefaultLease
	}
	if o.Timeout <= 0 {
		o.Timeout = 500 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	c := &Counter{rdb: rdb, keys: redisconn.NewKeys(o.Prefix), o: o, seed: maphash.MakeSeed(), local: map[string]int{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	c.dirty.Store(true)
	c.renew()
	go c.loop()
	return c, nil
}

// Close stops renewing and gives up the lease, so that this replica's
// sessions stop counting at once.
func (c *Counter) Close() {
	close(c.stop)
	<-c.done
	c.mu.RLock()
	member := c.member
	c.mu.RUnlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.o.Timeout)
	defer cancel()
	_ = c.rdb.ZRem(ctx, c.keys.SessionLeaseKey(), member).Err()
}

// Admit counts one more session of user if fewer than max are live on
// every replica together; live is the count it saw (this replica's
// included). An error (Redis unreachable, this replica's lease being
// claimed again) admits nothing: the caller refuses the CONNECT.
func (c *Counter) Admit(ctx context.Context, user string, max int) (ok bool, live int, err error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	stripe := &c.stripes[maphash.String(c.seed, user)%uint64(len(c.stripes))]
	stripe.Lock()
	defer stripe.Unlock()
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	res, err := admitScript.Run(ctx, c.rdb, []string{c.keys.SessionCountKey(user), c.keys.SessionLeaseKey()}, c.member, max).Int64Slice()
	switch {
	case err != nil:
		return false, 0, fmt.Errorf("sessions: %w", err)
	case len(res) != 2:
		return false, 0, fmt.Errorf("sessions: admit answered %v", res)
	case res[0] < 0:
		c.lapsed()
		return false, 0, ErrLeaseLapsed
	case res[0] == 0:
		return false, int(res[1]), nil
	}
	c.add(user, 1)
	return true, int(res[1]), nil
}

// Adopt counts a live session of user without a check (its user was
// given max_sessions while it was live).
func (c *Counter) Adopt(user string) { c.change(user, 1) }

// Release counts one session of user less.
func (c *Counter) Release(user string) { c.change(user, -1) }

// change adds delta to user's count here and in Redis; a write that fails
// leaves the local count right and has the next renewal write it all
// again.
func (c *Counter) change(user string, delta int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	c.add(user, delta)
	ctx, cancel := context.WithTimeout(context.Background(), c.o.Timeout)
	defer cancel()
	if err := changeScript.Run(ctx, c.rdb, []string{c.keys.SessionCountKey(user)}, c.member, delta).Err(); err != nil {
		c.lapsed()
	}
}

// add changes the local count of user.
func (c *Counter) add(user string, delta int) {
	c.lmu.Lock()
	defer c.lmu.Unlock()
	if c.local[user] += delta; c.local[user] <= 0 {
		delete(c.local, user)
	}
}

// lapsed has the loop claim a new lease and write the counts again.
func (c *Counter) lapsed() {
	c.dirty.Store(true)
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Live returns how many sessions of user are live on every replica whose
// lease holds (explain, user show).
func Live(ctx context.Context, rdb redis.UniversalClient, keys redisconn.Keys, user string) (int, error) {
	n, err := countScript.Run(ctx, rdb, []string{keys.SessionCountKey(user), keys.SessionLeaseKey()}).Int()
	if err != nil {
		return 0, fmt.Errorf("sessions: %w", err)
	}
	return n, nil
}

// newEpoch is a fresh lease member for replica.
func newEpoch(replica string) string { return replica + "#" + rand.Text()[:8] }
