package authstore

import (
	"context"
	"errors"
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

// TicketSalts is where the proxies agree on their TLS session ticket keys
// without a leader: each key is derived from a secret that Redis never
// sees and the salt stored here for its epoch, so what Redis holds opens
// no ticket. For each epochs[i] it first stores proposals[i], when that is
// not nil, unless a salt is stored already (SET NX: the first proposal
// wins, every replica then reads the same salt), and then reads the salt
// stored. A salt of epoch e expires at e*period+keep, after which no
// replica accepts its key anymore. The answer has one entry per epoch, nil
// where none is stored. One round trip (a pipeline; split per node on a
// Cluster), bounded by the store's timeout.
func (s *Store) TicketSalts(ctx context.Context, period, keep time.Duration, epochs []int64, proposals [][]byte) ([][]byte, error) {
	if len(proposals) != len(epochs) {
		return nil, errors.New("ticket salts: one proposal (or nil) per epoch")
	}
	if period <= 0 {
		return nil, errors.New("ticket salts: period must be positive")
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	now := s.now()
	gets := make([]*redis.StringCmd, len(epochs))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, e := range epochs {
			key := s.TicketSaltKey(period, e)
			if ttl := time.UnixMilli(0).Add(time.Duration(e) * period).Add(keep).Sub(now); proposals[i] != nil && ttl > 0 {
				p.SetNX(ctx, key, proposals[i], ttl)
			}
			gets[i] = p.Get(ctx, key)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	salts := make([][]byte, len(epochs))
	for i, g := range gets {
		b, err := g.Bytes()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return nil, err
		default:
			salts[i] = b
		}
	}
	return salts, nil
}
