package sessions

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
)

// DefaultInterval is how often a Publisher publishes what changed.
const DefaultInterval = 5 * time.Second

// PublisherOptions configure a Publisher.
type PublisherOptions struct {
	Prefix  string // key prefix, default "mqtt:"
	Replica string // this replica's id (required): its Counter's
	// Interval is how often what changed is published, default
	// DefaultInterval.
	Interval time.Duration
	// Lease is the lease of this replica's Counter, default DefaultLease.
	// The hash expires Lease + 3 Intervals after the last round, so that
	// a dead replica's sessions are listed until its lease ends, as they
	// count, and no longer (List reads only the replicas whose lease
	// holds): the expiry only collects a dead replica's hash.
	Lease time.Duration
	// Snapshot lists this replica's live sessions (Replica ignored).
	Snapshot func() []Session
	// Version, when set, changes whenever what Snapshot lists changes:
	// a round that finds it as it was publishes nothing new (it only
	// renews the hash's expiry), so an idle replica neither lists its
	// sessions nor allocates for them every Interval.
	Version func() uint64
	Logger  *slog.Logger
}

// Publisher publishes one replica's live sessions, every Interval, off
// the hot path: the sessions that started or ended since its last round
// (all of them after a failed round), and the hash's expiry renewed. They
// are listed while the replica's lease (its Counter's) holds.
type Publisher struct {
	rdb  redis.UniversalClient
	keys redisconn.Keys
	o    PublisherOptions
	// last is what was published: each session's field and a hash of its
	// value (the value itself is not kept).
	last map[string]uint64
	seed maphash.Seed
	// version is Version's value at the last round that published.
	version uint64
	// dirty: the last round failed (or none ran): publish everything.
	dirty bool
	stop  chan struct{}
	done  chan struct{}
}

// NewPublisher starts publishing; stop it with Close.
func NewPublisher(rdb redis.UniversalClient, o PublisherOptions) (*Publisher, error) {
	if !validReplica(o.Replica) {
		return nil, fmt.Errorf("sessions: replica id %q", o.Replica)
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Lease <= 0 {
		o.Lease = DefaultLease
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	p := &Publisher{rdb: rdb, keys: redisconn.NewKeys(o.Prefix), o: o, dirty: true, seed: maphash.MakeSeed(),
		stop: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	return p, nil
}

// Close stops publishing and removes this replica's sessions (within a
// second), so that a replica shut down cleanly is not listed even if its
// lease still holds.
func (p *Publisher) Close() {
	close(p.stop)
	<-p.done
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = p.rdb.Del(ctx, p.keys.SessionsKey(p.o.Replica)).Err()
}

func (p *Publisher) run() {
	defer close(p.done)
	t := time.NewTicker(p.o.Interval)
	defer t.Stop()
	failing := false
	for {
		err := p.round()
		switch {
		case err != nil && !failing:
			p.o.Logger.Warn("session registry: publishing this replica's sessions to Redis failed; retrying every round", "error", err)
		case err == nil && failing:
			p.o.Logger.Info("session registry: publishing to Redis again")
		}
		failing = err != nil
		select {
		case <-t.C:
		case <-p.stop:
			return
		}
	}
}

// round publishes what changed since the last one: the sessions that
// started or whose value changed, the fields of those that ended.
func (p *Publisher) round() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var version uint64
	if p.o.Version != nil {
		if version = p.o.Version(); !p.dirty && version == p.version {
			return p.write(ctx, nil, nil)
		}
	}
	cur := make(map[string]uint64, len(p.last))
	var set []any
	for _, s := range p.o.Snapshot() {
		s.Replica = ""
		v, _ := json.Marshal(s)
		f, h := s.field(), maphash.Bytes(p.seed, v)
		cur[f] = h
		if old, ok := p.last[f]; p.dirty || !ok || old != h {
			set = append(set, f, string(v))
		}
	}
	var del []string
	for f := range p.last {
		if _, ok := cur[f]; !ok && !p.dirty {
			del = append(del, f)
		}
	}
	err := p.write(ctx, set, del)
	p.dirty = err != nil
	if err == nil {
		p.last, p.version = cur, version
	}
	return err
}

// write sends one round in one pipeline.
func (p *Publisher) write(ctx context.Context, set []any, del []string) error {
	key, ttl := p.keys.SessionsKey(p.o.Replica), p.o.Lease+3*p.o.Interval
	_, err := p.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		if p.dirty {
			pl.Del(ctx, key)
		}
		for i := 0; i < len(set); i += 2000 {
			pl.HSet(ctx, key, set[i:min(i+2000, len(set))]...)
		}
		if len(del) > 0 {
			pl.HDel(ctx, key, del...)
		}
		pl.PExpire(ctx, key, ttl)
		return nil
	})
	return err
}
