package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
)

// Options configure a Publisher.
type Options struct {
	Prefix  string // key prefix, default "mqtt:"
	Replica string // this replica's id (required)
	// Interval is how often what changed is published, default
	// DefaultInterval; the replica's sessions expire 3 intervals after
	// its last round.
	Interval time.Duration
	// Snapshot lists this replica's live sessions (Replica ignored).
	Snapshot func() []Session
	Logger   *slog.Logger
}

// Publisher publishes one replica's live sessions, every Interval, off
// the hot path: the sessions that started or ended since its last round
// (all of them after a failed round), and the hash's expiry renewed.
type Publisher struct {
	rdb  redis.UniversalClient
	keys redisconn.Keys
	o    Options
	last map[string]string // field -> value published
	// dirty: the last round failed (or none ran): publish everything.
	dirty bool
	stop  chan struct{}
	done  chan struct{}
}

// NewPublisher starts publishing; stop it with Close.
func NewPublisher(rdb redis.UniversalClient, o Options) (*Publisher, error) {
	if !validReplica(o.Replica) {
		return nil, fmt.Errorf("registry: replica id %q", o.Replica)
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	p := &Publisher{rdb: rdb, keys: redisconn.NewKeys(o.Prefix), o: o, dirty: true, stop: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	return p, nil
}

// Close stops publishing and removes this replica's sessions (within a
// second), so that a replica shut down cleanly is not listed.
func (p *Publisher) Close() {
	close(p.stop)
	<-p.done
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, _ = p.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		pl.Del(ctx, p.keys.SessionsKey(p.o.Replica))
		pl.ZRem(ctx, p.keys.ReplicasKey(), p.o.Replica)
		return nil
	})
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

// round publishes what changed since the last one.
func (p *Publisher) round() error {
	now := make(map[string]string)
	for _, s := range p.o.Snapshot() {
		s.Replica = ""
		v, _ := json.Marshal(s)
		now[s.field()] = string(v)
	}
	var set []any
	var del []string
	for f, v := range now {
		if old, ok := p.last[f]; p.dirty || !ok || old != v {
			set = append(set, f, v)
		}
	}
	for f := range p.last {
		if _, ok := now[f]; !ok && !p.dirty {
			del = append(del, f)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := p.write(ctx, set, del)
	p.dirty = err != nil
	if err == nil {
		p.last = now
	}
	return err
}

// write sends one round in one pipeline.
func (p *Publisher) write(ctx context.Context, set []any, del []string) error {
	key, ttl := p.keys.SessionsKey(p.o.Replica), 3*p.o.Interval
	nowMS := time.Now().UnixMilli()
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
		pl.ZAdd(ctx, p.keys.ReplicasKey(), redis.Z{Score: float64(nowMS), Member: p.o.Replica})
		pl.ZRemRangeByScore(ctx, p.keys.ReplicasKey(), "-inf", "("+strconv.FormatInt(nowMS-ttl.Milliseconds(), 10))
		return nil
	})
	return err
}
