package authstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// TicketSaltKey is the Redis key of the ticket key salt of epoch (unix time
// divided by period): <prefix>tls-ticket-salt:<period in ms>:<epoch>. The
// period is part of the key so that replicas configured with different
// periods never mix their epochs.
func (s *Store) TicketSaltKey(period time.Duration, epoch int64) string {
	return s.prefix + "tls-ticket-salt:" + strconv.FormatInt(period.Milliseconds(), 10) + ":" + strconv.FormatInt(epoch, 10)
}

// TicketSaltSize is the length of a ticket key salt, in bytes: a salt of
// another length was not stored by a replica.
const TicketSaltSize = 32

// TicketSaltSkew is how much longer than its epoch's window (until
// e*period+keep) a salt's remaining lifetime in Redis may be: the replica
// that stored it computed its expiry on its own clock, which may run that
// much behind this one. A salt whose expiry is past it was not stored by a
// replica whose clock is within TicketSaltSkew of this one's.
const TicketSaltSkew = time.Minute

// ticketSaltRounds bounds the attempts at replacing one epoch's invalid
// salt (each finds another invalid one: someone writing them as fast).
const ticketSaltRounds = 3

// replaceTicketSalt replaces KEYS[1]'s value with ARGV[2], expiring in
// ARGV[3] ms (deleting it when ARGV[3] is not positive), only if the value
// is still ARGV[1], the invalid salt read before: when another replica has
// replaced it already, its replacement stays and every replica reads that
// one, so that they agree on one salt per epoch. A key gone meanwhile
// gets ARGV[2] as a proposal would (SET NX). It answers {1 when it
// replaced ARGV[1] else 0, the value now stored (nil: none), its PTTL}.
var replaceTicketSalt = redis.NewScript(`
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

// TicketSalts is where the proxies agree on their TLS session ticket keys
// without a leader: each key is derived from a secret that Redis never
// sees and the salt stored here for its epoch, so what Redis holds opens
// no ticket. For each epochs[i] it first stores proposals[i], when that is
// not nil, unless a salt is stored already (SET NX: the first proposal
// wins, every replica then reads the same salt), and then reads the salt
// stored and its expiry. A salt of epoch e expires at e*period+keep, after
// which no replica accepts its key anymore. The answer has one entry per
// epoch, nil where none is stored. One round trip (a pipeline; split per
// node on a Cluster), bounded by the store's timeout.
//
// Only salts that a replica could have stored are answered: TicketSaltSize
// bytes, with an expiry no later than e*period+keep (plus TicketSaltSkew).
// Another value (of another length, without expiry, expiring later: one
// written by someone else, who may know it) is replaced, each such key with
// a script that overwrites only the value read (so that replicas replacing
// at once still agree on one salt), by proposals[i] or else a fresh random
// salt, with the proper expiry; replaced counts them, and each is logged.
// An epoch after the next one (by this store's clock) is neither stored
// nor answered (nil): the proxy never asks for one, and a salt stored
// early for it is not adopted. Proposals must be TicketSaltSize bytes.
func (s *Store) TicketSalts(ctx context.Context, period, keep time.Duration, epochs []int64, proposals [][]byte) (salts [][]byte, replaced int, err error) {
	if len(proposals) != len(epochs) {
		return nil, 0, errors.New("ticket salts: one proposal (or nil) per epoch")
	}
	if period <= 0 {
		return nil, 0, errors.New("ticket salts: period must be positive")
	}
	for _, p := range proposals {
		if p != nil && len(p) != TicketSaltSize {
			return nil, 0, fmt.Errorf("ticket salts: a proposal of %d bytes, want %d", len(p), TicketSaltSize)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	now := s.now()
	next := now.UnixNano()/int64(period) + 1
	// ttls[i] is how long a salt of epochs[i] may live from now.
	ttls := make([]time.Duration, len(epochs))
	gets := make([]*redis.StringCmd, len(epochs))
	pttls := make([]*redis.DurationCmd, len(epochs))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, e := range epochs {
			if e > next {
				continue
			}
			key := s.TicketSaltKey(period, e)
			ttls[i] = time.UnixMilli(0).Add(time.Duration(e) * period).Add(keep).Sub(now)
			if proposals[i] != nil && ttls[i] > 0 {
				p.SetNX(ctx, key, proposals[i], ttls[i])
			}
			gets[i] = p.Get(ctx, key)
			pttls[i] = p.PTTL(ctx, key)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, 0, err
	}
	salts = make([][]byte, len(epochs))
	found := make([][]byte, len(epochs))    // an invalid salt read, to replace
	problems := make([]string, len(epochs)) // what is wrong with found[i]
	var invalid []int                       // the epochs (indexes) with one
	for i, g := range gets {
		if g == nil {
			continue
		}
		b, err := g.Bytes()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		ttl, err := pttls[i].Result()
		if err != nil {
			return nil, 0, err
		}
		if ttl == -2 {
			continue // expired between GET and PTTL: none
		}
		if problems[i] = ticketSaltProblem(b, ttl, ttls[i]); problems[i] == "" {
			salts[i] = b
		} else {
			found[i] = b
			invalid = append(invalid, i)
		}
	}
	for round := 0; len(invalid) > 0; round++ {
		if round == ticketSaltRounds {
			for _, i := range invalid {
				s.log.Warn("TLS ticket salt in Redis: invalid values keep coming; none used for this epoch (a local key instead)",
					"key", s.TicketSaltKey(period, epochs[i]), "epoch", epochs[i], "problem", problems[i])
			}
			break
		}
		cmds := make([]*redis.Cmd, len(invalid))
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for j, i := range invalid {
				// The salt this replica knows for the epoch, unless that is
				// the one found (now with a wrong expiry): then a fresh one.
				repl := proposals[i]
				if repl == nil || bytes.Equal(repl, found[i]) {
					repl = make([]byte, TicketSaltSize)
					_, _ = rand.Read(repl) // never fails (crypto/rand since Go 1.24)
				}
				ms := int64(0) // past its window: deleted
				if ttls[i] > 0 {
					ms = max(ttls[i].Milliseconds(), 1)
				}
				cmds[j] = replaceTicketSalt.Eval(ctx, p, []string{s.TicketSaltKey(period, epochs[i])}, found[i], repl, ms)
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, replaced, err
		}
		var again []int
		for j, i := range invalid {
			key := s.TicketSaltKey(period, epochs[i])
			r, err := cmds[j].Slice()
			if err != nil {
				return nil, replaced, fmt.Errorf("ticket salts: replacing %s: %w", key, err)
			}
			if len(r) != 3 {
				return nil, replaced, fmt.Errorf("ticket salts: replacing %s: unexpected answer %v", key, r)
			}
			if n, _ := r[0].(int64); n == 1 {
				replaced++
				s.log.Warn("TLS ticket salt in Redis replaced: it is not one a replica stored (someone else wrote it, or this replica's clock runs ahead of the one that did)",
					"key", key, "epoch", epochs[i], "problem", problems[i])
			}
			v, ok := r[1].(string)
			if !ok {
				continue // deleted (past its window), or gone
			}
			ms, _ := r[2].(int64)
			ttl := time.Duration(ms) // -1: no expiry, -2: none
			if ms >= 0 {
				ttl = time.Duration(ms) * time.Millisecond
			}
			if p := ticketSaltProblem([]byte(v), ttl, ttls[i]); p == "" {
				salts[i] = []byte(v)
			} else if ms != -2 {
				found[i], problems[i] = []byte(v), p
				again = append(again, i)
			}
		}
		invalid = again
	}
	return salts, replaced, nil
}

// ticketSaltProblem says what is wrong with a salt read from Redis whose
// key expires in ttl (-1: never), for an epoch whose salt may live window
// from now; "" when nothing is.
func ticketSaltProblem(salt []byte, ttl, window time.Duration) string {
	switch {
	case len(salt) != TicketSaltSize:
		return fmt.Sprintf("%d bytes, not %d", len(salt), TicketSaltSize)
	case ttl == -1:
		return "no expiry"
	case ttl > window+TicketSaltSkew:
		return fmt.Sprintf("expires in %v, past its epoch's window (%v from now)", ttl.Round(time.Second), max(window, 0).Round(time.Second))
	}
	return ""
}
