package lastuse

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
)

// Options tune a Writer. Zero values take the defaults.
type Options struct {
	Prefix string // key prefix, default "mqtt:"
	// Refresh: a use of the same credential by the same client id is
	// written again only when the last write of it is older than this;
	// default DefaultRefresh. A device that reconnects often costs one
	// write a minute, not one per CONNECT.
	Refresh time.Duration
	// QueueSize bounds the uses waiting to be written, default 4096: past
	// it a use is dropped (and counted).
	QueueSize int
	// Linger is how long the writer gathers uses before it writes them,
	// default 200ms.
	Linger time.Duration
	// Timeout bounds one batch's write, default 1s.
	Timeout time.Duration
	Logger  *slog.Logger
}

// DefaultRefresh is Options.Refresh's default.
const DefaultRefresh = time.Minute

// rememberedUses bounds the uses a Writer remembers having written.
const rememberedUses = 65536

func (o Options) withDefaults() Options {
	if o.Refresh <= 0 {
		o.Refresh = DefaultRefresh
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 4096
	}
	if o.Linger <= 0 {
		o.Linger = 200 * time.Millisecond
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Writer records uses in Redis in the background. Record never blocks.
// It is safe for concurrent use; its methods do nothing on a nil *Writer.
type Writer struct {
	rdb     redis.UniversalClient
	keys    redisconn.Keys
	o       Options
	written *lru.Cache[string, int64] // use key -> unix ns of its last write
	queue   chan Use
	dropped atomic.Uint64
	stored  atomic.Uint64
	closed  atomic.Bool
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// NewWriter starts a Writer on rdb; stop it with Close.
func NewWriter(rdb redis.UniversalClient, o Options) *Writer {
	o = o.withDefaults()
	w := &Writer{rdb: rdb, keys: redisconn.NewKeys(o.Prefix), o: o, queue: make(chan Use, o.QueueSize),
		stop: make(chan struct{}), done: make(chan struct{})}
	w.written, _ = lru.New[string, int64](rememberedUses)
	go w.run()
	return w
}

// Record queues u unless the same use was written less than Refresh ago;
// it never blocks: with the queue full, u is dropped and counted.
func (w *Writer) Record(u Use) {
	if w == nil {
		return
	}
	if w.closed.Load() {
		w.dropped.Add(1)
		return
	}
	if u.Time.IsZero() {
		u.Time = time.Now()
	}
	key := u.User + "\x00" + u.Fingerprint + "\x00" + u.ClientID
	if t, ok := w.written.Get(key); ok && u.Time.UnixNano()-t < int64(w.o.Refresh) {
		return
	}
	w.written.Add(key, u.Time.UnixNano())
	select {
	case w.queue <- u:
	default:
		w.written.Remove(key)
		w.dropped.Add(1)
	}
}

// Dropped counts the uses dropped: a full queue, or a failed write.
func (w *Writer) Dropped() uint64 {
	if w == nil {
		return 0
	}
	return w.dropped.Load()
}

// Stored counts the uses Redis took.
func (w *Writer) Stored() uint64 {
	if w == nil {
		return 0
	}
	return w.stored.Load()
}

// Close writes what is queued (within the write timeout) and stops the
// writer; later Records are dropped.
func (w *Writer) Close() {
	if w == nil {
		return
	}
	w.once.Do(func() {
		w.closed.Store(true)
		close(w.stop)
		<-w.done
	})
}

func (w *Writer) run() {
	defer close(w.done)
	failing, pause := false, time.Duration(0)
	for {
		var batch []Use
		select {
		case u := <-w.queue:
			batch = w.gather([]Use{u})
		case <-w.stop:
			w.write(w.gather(nil))
			return
		}
		err := w.write(batch)
		switch {
		case err != nil && !failing:
			w.o.Logger.Warn("credential last uses: writing to Redis failed; uses are dropped until it answers", "error", err)
		case err == nil && failing:
			w.o.Logger.Info("credential last uses: writing to Redis again")
		}
		failing = err != nil
		if !failing {
			pause = 0
			continue
		}
		// While Redis fails, wait a little longer each time (uses queue,
		// then drop): an outage costs no busy loop of failing writes.
		pause = min(max(2*pause, 100*time.Millisecond), 2*time.Second)
		select {
		case <-time.After(pause):
		case <-w.stop:
			return
		}
	}
}

// gather adds to batch what comes within the linger (everything queued,
// when stopping).
func (w *Writer) gather(batch []Use) []Use {
	t := time.NewTimer(w.o.Linger)
	defer t.Stop()
	for len(batch) < 1024 {
		select {
		case u := <-w.queue:
			batch = append(batch, u)
		case <-t.C:
			return batch
		case <-w.stop:
			for {
				select {
				case u := <-w.queue:
					batch = append(batch, u)
				default:
					return batch
				}
			}
		}
	}
	return batch
}

// write sends a batch in one pipeline, grouped by user and credential:
// for each, one HSET of its last use, one ZADD of every client id that
// used it, and the set trimmed to the last SeenWindow and to maxSeen
// members. A batch of a thousand uses of one shared user name costs Redis
// six commands, not two thousand.
func (w *Writer) write(batch []Use) error {
	if len(batch) == 0 {
		return nil
	}
	type group struct {
		last Use
		seen map[string]float64
	}
	groups := map[[2]string]*group{}
	var order [][2]string
	for _, u := range batch {
		k := [2]string{u.User, u.Fingerprint}
		g := groups[k]
		if g == nil {
			g = &group{seen: map[string]float64{}}
			groups[k], order = g, append(order, k)
		}
		if !u.Time.Before(g.last.Time) {
			g.last = u
		}
		g.seen[u.ClientID] = max(g.seen[u.ClientID], float64(u.Time.Unix()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.o.Timeout)
	defer cancel()
	_, err := w.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range order {
			g := groups[k]
			lk, sk := w.keys.LastUseKey(k[0]), w.keys.SeenKey(k[0], k[1])
			members := make([]redis.Z, 0, len(g.seen))
			for id, t := range g.seen {
				members = append(members, redis.Z{Score: t, Member: id})
			}
			p.HSet(ctx, lk, k[1], formatLast(g.last))
			p.Expire(ctx, lk, lastUseRetention)
			p.ZAdd(ctx, sk, members...)
			p.ZRemRangeByScore(ctx, sk, "-inf", "("+strconv.FormatInt(g.last.Time.Add(-SeenWindow).Unix(), 10))
			p.ZRemRangeByRank(ctx, sk, 0, -maxSeen-1)
			p.Expire(ctx, sk, SeenWindow+time.Hour)
		}
		return nil
	})
	if err != nil {
		w.dropped.Add(uint64(len(batch)))
		for _, u := range batch { // written again at the next use
			w.written.Remove(u.User + "\x00" + u.Fingerprint + "\x00" + u.ClientID)
		}
		return err
	}
	w.stored.Add(uint64(len(batch)))
	return nil
}
