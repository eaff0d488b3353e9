package lastuse

import (
	"context"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

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

// rememberedUses bounds the uses a Writer remembers having written, per
// generation (two are kept).
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

// Writer records uses in Redis in the background. Note never blocks.
// It is safe for concurrent use; its methods do nothing on a nil *Writer.
type Writer struct {
	rdb     redis.UniversalClient
	keys    redisconn.Keys
	o       Options
	written remembered
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
	w.written.init()
	go w.run()
	return w
}

// Note records an accepted CONNECT's use of the credential stored as
// stored, unless the same device's use of it was written less than
// Refresh ago; it never blocks. What the hot path pays when the same device used it within
// Refresh is one hash and one map lookup; the fingerprint and the
// address's text are made only for a use that is written.
func (w *Writer) Note(user, stored, clientID string, addr netip.Addr, now time.Time) {
	if w == nil {
		return
	}
	k := w.written.key(user, stored, clientID)
	if !w.closed.Load() && !w.written.due(k, now.UnixNano(), int64(w.o.Refresh)) {
		return
	}
	a := ""
	if addr.IsValid() {
		a = addr.Unmap().String()
	}
	w.enqueue(Use{User: user, Fingerprint: Fingerprint(stored), Addr: a, ClientID: clientID, Time: now, key: k})
}

// enqueue queues u, due a write (and remembered as written); it never
// blocks: with the queue full, or the Writer closed, u is dropped and
// counted.
func (w *Writer) enqueue(u Use) {
	if w.closed.Load() {
		w.dropped.Add(1)
		return
	}
	select {
	case w.queue <- u:
	default:
		w.written.forget(u.key)
		w.dropped.Add(1)
	}
}

// remembered is the uses a Writer wrote lately: a 64-bit hash of user,
// credential and client id to the unix ns of the write, in two
// generations of at most rememberedUses each (the older dropped whole
// when the newer fills, so a use is remembered for at least
// rememberedUses later ones). Its maps hold no pointers: the garbage
// collector never walks them, however many devices a fleet has (an LRU
// of string keys made every collection cycle scan one object per device).
// Two uses whose hashes collide (1 in 2^64) share their write.
type remembered struct {
	seed     maphash.Seed
	mu       sync.Mutex
	cur, old map[uint64]int64
}

func (r *remembered) init() {
	r.seed = maphash.MakeSeed()
	r.cur = make(map[uint64]int64)
}

// key is the use's hash; cred is the credential's stored hash.
func (r *remembered) key(user, cred, clientID string) uint64 {
	var h maphash.Hash
	h.SetSeed(r.seed)
	h.WriteString(user)
	h.WriteByte(0)
	h.WriteString(cred)
	h.WriteByte(0)
	h.WriteString(clientID)
	return h.Sum64()
}

// due reports whether use k was not written within refresh of now, and
// remembers a due use as written at now.
func (r *remembered) due(k uint64, now, refresh int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.cur[k]
	if !ok {
		t, ok = r.old[k]
	}
	if ok && now-t < refresh {
		return false
	}
	if len(r.cur) >= rememberedUses {
		r.old, r.cur = r.cur, make(map[uint64]int64, rememberedUses/4)
	}
	r.cur[k] = now
	return true
}

// forget drops use k: it is written again at its next use.
func (r *remembered) forget(k uint64) {
	r.mu.Lock()
	delete(r.cur, k)
	delete(r.old, k)
	r.mu.Unlock()
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
			w.written.forget(u.key)
		}
		return err
	}
	w.stored.Add(uint64(len(batch)))
	return nil
}
