// Package tickets is where the proxies agree on the salts of their TLS
// session ticket keys, in the rule store's Redis, without a leader: the
// first proposal for an epoch wins, and a salt that no replica could have
// stored is replaced so that every replica adopts the same replacement.
package tickets

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
)

// SaltSize is the length of a ticket key salt, in bytes: a salt of
// another length was not stored by a replica.
const SaltSize = 32

// SaltSkew is how much longer than its epoch's window (until
// e*period+keep) a salt's remaining lifetime in Redis may be: the replica
// that stored it computed its expiry on its own clock, which may run that
// much behind this one. A salt whose expiry is past it was not stored by a
// replica whose clock is within SaltSkew of this one's.
const SaltSkew = time.Minute

// rounds bounds the attempts at replacing one epoch's invalid salt (each
// finds another invalid one: someone writing them as fast).
const rounds = 3

// Options tune Salts. Zero values take the defaults.
type Options struct {
	Prefix  string        // key prefix, default "mqtt:"
	Timeout time.Duration // per call, default 500ms
	Logger  *slog.Logger  // default slog.Default()
	Now     func() time.Time
}

// withDefaults fills the options left zero.
func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = 500 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Salts are the ticket key salts in one Redis. It is safe for concurrent
// use.
type Salts struct {
	rdb     redis.UniversalClient
	keys    redisconn.Keys
	timeout time.Duration
	log     *slog.Logger
	now     func() time.Time
}

// New returns the salts under o.Prefix in rdb.
func New(rdb redis.UniversalClient, o Options) *Salts {
	o = o.withDefaults()
	return &Salts{rdb: rdb, keys: redisconn.NewKeys(o.Prefix), timeout: o.Timeout, log: o.Logger, now: o.Now}
}

// TicketSalts is where the proxies agree on their TLS session ticket keys
// without a leader: each key is derived from a secret that Redis never
// sees and the salt stored here for its epoch, so what Redis holds opens
// no ticket. For each epochs[i] it first stores proposals[i], when that is
// not nil, unless a salt is stored already (SET NX: the first proposal
// wins, every replica then reads the same salt), and then reads the salt
// stored and its expiry. A salt of epoch e expires at e*period+keep, after
// which no replica accepts its key anymore. The answer has one entry per
// epoch, nil where none is stored. One round trip (a pipeline; split per
// node on a Cluster), bounded by the timeout.
//
// Only salts that a replica could have stored are answered: SaltSize
// bytes, with an expiry no later than e*period+keep (plus SaltSkew).
// Another value (of another length, without expiry, expiring later: one
// written by someone else, who may know it) is replaced, each such key with
// a script that overwrites only the value read (so that replicas replacing
// at once still agree on one salt), by proposals[i] or else a fresh random
// salt, with the proper expiry; replaced counts them, and each is logged.
// An epoch after the next one (by this clock) is neither stored nor
// answered (nil): the proxy never asks for one, and a salt stored early
// for it is not adopted. Proposals must be SaltSize bytes.
func (s *Salts) TicketSalts(ctx context.Context, period, keep time.Duration, epochs []int64, proposals [][]byte) (salts [][]byte, replaced int, err error) {
	if err := checkProposals(period, epochs, proposals); err != nil {
		return nil, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	c := s.newCall(period, keep, epochs, proposals)
	invalid, err := c.read(ctx)
	if err != nil {
		return nil, 0, err
	}
	for round := 0; len(invalid) > 0; round++ {
		if round == rounds {
			for _, i := range invalid {
				s.log.Warn("TLS ticket salt in Redis: invalid values keep coming; none used for this epoch (a local key instead)",
					"key", c.key(i), "epoch", epochs[i], "problem", c.problems[i])
			}
			break
		}
		if invalid, err = c.replace(ctx, invalid); err != nil {
			return nil, c.replaced, err
		}
	}
	return c.salts, c.replaced, nil
}

// checkProposals checks TicketSalts' arguments.
func checkProposals(period time.Duration, epochs []int64, proposals [][]byte) error {
	if len(proposals) != len(epochs) {
		return errors.New("ticket salts: one proposal (or nil) per epoch")
	}
	if period <= 0 {
		return errors.New("ticket salts: period must be positive")
	}
	for _, p := range proposals {
		if p != nil && len(p) != SaltSize {
			return fmt.Errorf("ticket salts: a proposal of %d bytes, want %d", len(p), SaltSize)
		}
	}
	return nil
}

// call is one TicketSalts call: its epochs, and what it found of them.
type call struct {
	s         *Salts
	period    time.Duration
	epochs    []int64
	proposals [][]byte
	next      int64           // the epoch after the current one
	ttls      []time.Duration // ttls[i]: how long a salt of epochs[i] may live from now
	salts     [][]byte        // the answer
	found     [][]byte        // an invalid salt read, to replace
	problems  []string        // what is wrong with found[i]
	replaced  int
}

func (s *Salts) newCall(period, keep time.Duration, epochs []int64, proposals [][]byte) *call {
	now := s.now()
	c := &call{s: s, period: period, epochs: epochs, proposals: proposals, next: now.UnixNano()/int64(period) + 1,
		ttls: make([]time.Duration, len(epochs)), salts: make([][]byte, len(epochs)),
		found: make([][]byte, len(epochs)), problems: make([]string, len(epochs))}
	for i, e := range epochs {
		c.ttls[i] = time.UnixMilli(0).Add(time.Duration(e) * period).Add(keep).Sub(now)
	}
	return c
}

// key is the Redis key of epochs[i]'s salt.
func (c *call) key(i int) string { return c.s.keys.TicketSaltKey(c.period, c.epochs[i]) }

// read stores the proposals (SET NX) and reads every epoch's salt up to
// the next one with its expiry, in one pipeline. It returns the epochs
// (indexes) whose salt is invalid.
func (c *call) read(ctx context.Context) (invalid []int, err error) {
	gets := make([]*redis.StringCmd, len(c.epochs))
	pttls := make([]*redis.DurationCmd, len(c.epochs))
	_, err = c.s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, e := range c.epochs {
			if e > c.next {
				continue
			}
			if c.proposals[i] != nil && c.ttls[i] > 0 {
				p.SetNX(ctx, c.key(i), c.proposals[i], c.ttls[i])
			}
			gets[i] = p.Get(ctx, c.key(i))
			pttls[i] = p.PTTL(ctx, c.key(i))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	for i, g := range gets {
		if g == nil {
			continue
		}
		b, err := g.Bytes()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, err
		}
		ttl, err := pttls[i].Result()
		if err != nil {
			return nil, err
		}
		if ttl != -2 && !c.take(i, b, ttl) { // -2: expired between GET and PTTL: none
			invalid = append(invalid, i)
		}
	}
	return invalid, nil
}

// take answers salt for epochs[i] when it is one a replica could have
// stored, with an expiry in ttl (-1: never); else it keeps it as found,
// to replace, and reports false.
func (c *call) take(i int, salt []byte, ttl time.Duration) bool {
	if p := saltProblem(salt, ttl, c.ttls[i]); p != "" {
		c.found[i], c.problems[i] = salt, p
		return false
	}
	c.salts[i] = salt
	return true
}

// replaceSalt replaces KEYS[1]'s value with ARGV[2], expiring in ARGV[3]
// ms (deleting it when ARGV[3] is not positive), only if the value is
// still ARGV[1], the invalid salt read before: when another replica has
// replaced it already, its replacement stays and every replica reads that
// one, so that they agree on one salt per epoch. A key gone meanwhile
// gets ARGV[2] as a proposal would (SET NX). It answers {1 when it
// replaced ARGV[1] else 0, the value now stored (nil: none), its PTTL}.
var replaceSalt = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
local replaced = 0
if v == ARGV[1] or not v then
  if tonumber(ARGV[3]) > 0 then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  else
    redis.call('DEL', KEYS[1])
  end
  if v then replaced = 1 end
end
return {replaced, redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
`)

// replace replaces the invalid salts of the epochs invalid (indexes), in
// one pipeline of scripts, and returns those whose salt is invalid still
// (another one written meanwhile).
func (c *call) replace(ctx context.Context, invalid []int) (again []int, err error) {
	cmds := make([]*redis.Cmd, len(invalid))
	_, err = c.s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for j, i := range invalid {
			cmds[j] = replaceSalt.Eval(ctx, p, []string{c.key(i)}, c.found[i], c.replacement(i), c.expiryMS(i))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	for j, i := range invalid {
		ok, err := c.settle(i, cmds[j])
		if err != nil {
			return nil, err
		}
		if !ok {
			again = append(again, i)
		}
	}
	return again, nil
}

// replacement is the salt that replaces epochs[i]'s invalid one: the
// salt this replica knows for the epoch, unless that is the one found
// (now with a wrong expiry): then a fresh one.
func (c *call) replacement(i int) []byte {
	repl := c.proposals[i]
	if repl == nil || bytes.Equal(repl, c.found[i]) {
		repl = make([]byte, SaltSize)
		_, _ = rand.Read(repl) // never fails (crypto/rand since Go 1.24)
	}
	return repl
}

// expiryMS is the expiry of epochs[i]'s replacement in milliseconds; 0
// when the epoch is past its window (the key is deleted).
func (c *call) expiryMS(i int) int64 {
	if c.ttls[i] > 0 {
		return max(c.ttls[i].Milliseconds(), 1)
	}
	return 0
}

// settle reads a replacement script's answer for epochs[i]: it counts
// and logs a replacement, and answers the salt now stored when it is
// valid. It reports false when another invalid one is stored.
func (c *call) settle(i int, cmd *redis.Cmd) (bool, error) {
	key := c.key(i)
	r, err := cmd.Slice()
	if err != nil {
		return false, fmt.Errorf("ticket salts: replacing %s: %w", key, err)
	}
	if len(r) != 3 {
		return false, fmt.Errorf("ticket salts: replacing %s: unexpected answer %v", key, r)
	}
	if n, _ := r[0].(int64); n == 1 {
		c.replaced++
		c.s.log.Warn("TLS ticket salt in Redis replaced: it is not one a replica stored (someone else wrote it, or this replica's clock runs ahead of the one that did)",
			"key", key, "epoch", c.epochs[i], "problem", c.problems[i])
	}
	v, ok := r[1].(string)
	if !ok {
		return true, nil // deleted (past its window), or gone
	}
	ms, _ := r[2].(int64)
	ttl := time.Duration(ms) // -1: no expiry, -2: none
	if ms >= 0 {
		ttl = time.Duration(ms) * time.Millisecond
	}
	return c.take(i, []byte(v), ttl) || ms == -2, nil
}

// saltProblem says what is wrong with a salt read from Redis whose key
// expires in ttl (-1: never), for an epoch whose salt may live window from
// now; "" when nothing is.
func saltProblem(salt []byte, ttl, window time.Duration) string {
	switch {
	case len(salt) != SaltSize:
		return fmt.Sprintf("%d bytes, not %d", len(salt), SaltSize)
	case ttl == -1:
		return "no expiry"
	case ttl > window+SaltSkew:
		return fmt.Sprintf("expires in %v, past its epoch's window (%v from now)", ttl.Round(time.Second), max(window, 0).Round(time.Second))
	}
	return ""
}
