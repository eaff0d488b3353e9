package sessions

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// The scripts read the time from Redis, so that the replicas' clocks
// never matter: a lease ends by Redis's clock. A lease member's count
// fields whose lease has ended (or is gone) are dead: no script counts
// them, and an admission of the user deletes them.

// now is the Lua prologue that sets now, Redis's time in unix ms.
const now = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// live is the Lua function that sums a user's live count (KEYS[1]) under
// the leases (KEYS[2]); with prune, dead fields are deleted.
const live = `local function live(prune)
  local h = redis.call('HGETALL', KEYS[1])
  local n = 0
  for i = 1, #h, 2 do
    local ends = redis.call('ZSCORE', KEYS[2], h[i])
    if ends and tonumber(ends) >= now then
      n = n + tonumber(h[i + 1])
    elseif prune then
      redis.call('HDEL', KEYS[1], h[i])
    end
  end
  return n
end
`

// admitScript: KEYS count hash, leases; ARGV member, max. {-1, 0}: the
// member's lease has ended; {0, live}: refused; {1, live}: counted.
var admitScript = redis.NewScript(now + live + `
local mine = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not mine or tonumber(mine) < now then
  return {-1, 0}
end
local n = live(true)
if n >= tonumber(ARGV[2]) then
  return {0, n}
end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return {1, n}
`)

// changeScript: KEYS count hash; ARGV member, delta. A field at zero or
// below is deleted.
var changeScript = redis.NewScript(`
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if n <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return n
`)

// countScript: KEYS count hash, leases: the live count.
var countScript = redis.NewScript(now + live + `
return live(false)
`)

// renewScript: KEYS leases; ARGV member, lease ms. 1: renewed; 0: the
// lease had ended (or is gone), nothing renewed. Ended leases are
// forgotten.
var renewScript = redis.NewScript(now + `
local mine = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
if not mine or tonumber(mine) < now then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
`)

// claimScript: KEYS leases, then count hashes; ARGV member, lease ms,
// old member, then one count per hash. It starts the member's lease,
// ends the old one's and writes the counts.
var claimScript = redis.NewScript(now + `
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if ARGV[3] ~= '' then
  redis.call('ZREM', KEYS[1], ARGV[3])
end
for i = 2, #KEYS do
  redis.call('HSET', KEYS[i], ARGV[1], ARGV[i + 2])
end
return 1
`)

// claimBatch bounds the counts one claim script writes.
const claimBatch = 500

// loop renews the lease every third of it, and claims a new one when it
// lapsed or a write failed, until Close.
func (c *Counter) loop() {
	defer close(c.done)
	t := time.NewTicker(c.o.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		case <-c.wake:
		}
		c.renew()
	}
}

// renew renews the lease, or claims a new one.
func (c *Counter) renew() {
	ctx, cancel := context.WithTimeout(context.Background(), c.o.Timeout)
	defer cancel()
	var err error
	if !c.dirty.Load() {
		c.mu.RLock()
		var ok int
		ok, err = renewScript.Run(ctx, c.rdb, []string{c.keys.SessionLeaseKey()}, c.member, c.o.Lease.Milliseconds()).Int()
		c.mu.RUnlock()
		if err == nil && ok == 0 {
			c.dirty.Store(true)
		}
	}
	if err == nil && c.dirty.Load() {
		err = c.claim(ctx)
	}
	switch failing := c.failing.Swap(err != nil); {
	case err != nil && !failing:
		c.o.Logger.Warn("max_sessions: cannot renew this replica's lease in Redis; CONNECTs of users with max_sessions are refused until it can", "error", err)
	case err == nil && failing:
		c.o.Logger.Info("max_sessions: this replica's lease in Redis is renewed again")
	}
}

// claim starts a new lease under a new member and writes this replica's
// counts under it; the old member's fields die with its lease. Nothing
// else is counted meanwhile.
func (c *Counter) claim(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	member := newEpoch(c.o.Replica)
	c.lmu.Lock()
	users := make([]string, 0, len(c.local))
	counts := make([]any, 0, len(c.local))
	for u, n := range c.local {
		users, counts = append(users, u), append(counts, n)
	}
	c.lmu.Unlock()
	old := c.member
	for i := 0; i == 0 || i < len(users); i += claimBatch {
		end := min(i+claimBatch, len(users))
		keys := []string{c.keys.SessionLeaseKey()}
		for _, u := range users[i:end] {
			keys = append(keys, c.keys.SessionCountKey(u))
		}
		args := append([]any{member, c.o.Lease.Milliseconds(), old}, counts[i:end]...)
		if err := claimScript.Run(ctx, c.rdb, keys, args...).Err(); err != nil {
			if i > 0 { // a lease with part of the counts: end it
				_ = c.rdb.ZRem(ctx, c.keys.SessionLeaseKey(), member).Err()
			}
			return err
		}
		old = "" // ended by the first batch
	}
	c.member = member
	c.dirty.Store(false)
	return nil
}
