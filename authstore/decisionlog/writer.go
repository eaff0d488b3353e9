// Package decisionlog is the decision log: every decision of every
// replica, appended to one Redis stream (<prefix>decisions) off the hot
// path by a Writer, and read back by the CLI and the status page through
// a Reader.
package decisionlog

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Defaults of a Writer.
const (
	// DefaultMaxLen is the stream's approximate cap (XADD MAXLEN ~).
	DefaultMaxLen = 100000
	// DefaultLinger is Options.Linger's default.
	DefaultLinger = 10 * time.Millisecond
)

// Options tune a Writer. Zero values take the defaults.
type Options struct {
	// Prefix is the key prefix, default "mqtt:": the stream is
	// <Prefix>decisions.
	Prefix string
	// MaxLen caps the stream approximately (MAXLEN ~ N: Redis trims whole
	// nodes, so the stream may hold up to about a hundred entries more);
	// default DefaultMaxLen.
	MaxLen int64
	// QueueSize bounds the entries waiting in memory to be written,
	// default 8192: past it Record drops the entry and counts it.
	// Summaries (Kind policy.KindSummary) wait apart, in a queue a quarter
	// that size (at least 1) whose overflow drops summaries only: a flood
	// of them never takes a decision's place, and the writer takes
	// decisions first.
	QueueSize int
	// BatchSize is the most entries written in one pipeline, default 256.
	BatchSize int
	// Linger is how long the writer waits, after an entry came, for more
	// to fill the batch before it writes, default 10ms (negative: none).
	// Under a steady flow of CONNECTs one pipeline then carries many
	// entries instead of one round trip each; an entry reaches the stream
	// at most Linger later.
	Linger time.Duration
	// Timeout bounds the write of one batch, default 1s. A batch that fails
	// or times out is dropped (and counted), not retried: an entry is
	// written at most once.
	Timeout time.Duration
	// CloseTimeout bounds how long Close waits for the queue to be
	// written, default 2s (plus at most one Timeout for a write under way).
	CloseTimeout time.Duration
	// Replica is written in entries whose Replica is empty.
	Replica string
	// OnDrop, when set, is called with the number of entries dropped each
	// time some are (a full queue, a failed write, a Record after Close),
	// from Record's goroutine or the writer's. It must not block: a
	// Prometheus counter's Add fits.
	OnDrop func(n int)
	// Logger gets one warning when writes start failing and one line when
	// they succeed again; nil is slog.Default().
	Logger *slog.Logger
}

// Writer appends decision records to the Redis stream
// <prefix>decisions in the background. Record never blocks: entries wait in
// a bounded queue (summaries in a smaller one of their own), and one writer
// goroutine sends them in batches, one
// pipeline of XADD MAXLEN ~ N per batch, each bounded by a short timeout.
// While Redis is down or slow, entries that do not fit the queue, and
// batches that fail, are dropped and counted; writing resumes by itself
// when Redis answers again (the writer retries after a pause that grows
// from 100 ms to 2 s). A slow or dead Redis therefore never delays or
// changes a decision. It is safe for concurrent use; its methods do
// nothing on a nil *Writer.
type Writer struct {
	rdb          redis.UniversalClient
	key          string
	maxLen       int64
	batchSize    int
	linger       time.Duration
	timeout      time.Duration
	closeTimeout time.Duration
	replica      string
	onDrop       func(int)
	log          *slog.Logger

	queue     chan policy.Record // decisions, and every kind of entry but summaries
	summaries chan policy.Record // entries of Kind policy.KindSummary
	dropped   atomic.Uint64
	written   atomic.Uint64
	closed    atomic.Bool

	ctx       context.Context // cancelled by Close once its bound has passed
	cancel    context.CancelFunc
	stop      chan struct{} // closed by Close
	done      chan struct{} // closed when the writer has returned
	closeOnce sync.Once
}

var _ policy.Recorder = (*Writer)(nil)

// withDefaults fills the options left zero.
func (o Options) withDefaults() Options {
	if o.MaxLen <= 0 {
		o.MaxLen = DefaultMaxLen
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 8192
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 256
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.Linger == 0 {
		o.Linger = DefaultLinger
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// NewWriter starts a decision log writing through rdb; stop it with
// Close.
func NewWriter(rdb redis.UniversalClient, o Options) *Writer {
	o = o.withDefaults()
	l := &Writer{rdb: rdb, key: redisconn.NewKeys(o.Prefix).DecisionsKey(), maxLen: o.MaxLen, batchSize: o.BatchSize, linger: o.Linger, timeout: o.Timeout,
		closeTimeout: o.CloseTimeout, replica: o.Replica, onDrop: o.OnDrop, log: o.Logger,
		queue: make(chan policy.Record, o.QueueSize), summaries: make(chan policy.Record, max(o.QueueSize/4, 1)),
		stop: make(chan struct{}), done: make(chan struct{})}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	go l.run()
	return l
}

// Record queues r for the stream and returns at once; when its queue is
// full, or after Close, r is dropped and counted. A summary (Kind
// policy.KindSummary) goes to the summaries' queue, so that summaries never
// fill the decisions'. A zero Time is taken as now, an empty Replica as
// the log's.
func (l *Writer) Record(r policy.Record) {
	if l == nil {
		return
	}
	if l.closed.Load() {
		l.drop(1)
		return
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	if r.Replica == "" {
		r.Replica = l.replica
	}
	q := l.queue
	if r.Kind == policy.KindSummary {
		q = l.summaries
	}
	select {
	case q <- r:
	default:
		l.drop(1)
	}
}

// Dropped is the number of entries dropped so far: the queue was full,
// their write failed, or they came after Close.
func (l *Writer) Dropped() uint64 {
	if l == nil {
		return 0
	}
	return l.dropped.Load()
}

// Written is the number of entries Redis has acknowledged so far.
func (l *Writer) Written() uint64 {
	if l == nil {
		return 0
	}
	return l.written.Load()
}

// Close stops the writer after writing what is queued, within
// CloseTimeout (plus at most one Timeout for a write under way); what is
// left is dropped and counted. Later Records are dropped. Later calls do
// nothing.
func (l *Writer) Close() {
	if l == nil {
		return
	}
	l.closeOnce.Do(func() {
		l.closed.Store(true)
		close(l.stop)
		t := time.NewTimer(l.closeTimeout)
		defer t.Stop()
		select {
		case <-l.done:
		case <-t.C:
			l.cancel() // the flush's next write fails at once
			<-l.done
		}
		l.cancel()
		// A Record that raced with Close may have queued after the flush.
		l.drop(l.drain())
	})
}

func (l *Writer) drop(n int) {
	if n <= 0 {
		return
	}
	l.dropped.Add(uint64(n))
	if l.onDrop != nil {
		l.onDrop(n)
	}
}

// drain empties the queues and returns how many entries they held.
func (l *Writer) drain() int {
	for n := 0; ; n++ {
		select {
		case <-l.queue:
		case <-l.summaries:
		default:
			return n
		}
	}
}

// Pauses of the writer after a failed write, growing while Redis fails.
const (
	retryMin = 100 * time.Millisecond
	retryMax = 2 * time.Second
)

// run is the writer: it takes the queues in batches until Close.
func (l *Writer) run() {
	defer close(l.done)
	batch := make([]policy.Record, 0, l.batchSize)
	var pause time.Duration
	failing, lost := false, 0 // writes are failing; entries dropped meanwhile
	for {
		select {
		case r := <-l.queue:
			batch = l.gather(append(batch[:0], r))
		case r := <-l.summaries:
			batch = l.gather(append(batch[:0], r))
		case <-l.stop:
			l.flush(batch)
			return
		}
		n, err := l.write(batch)
		if err == nil {
			if failing {
				l.log.Info("decision log: writing to Redis again", "dropped_meanwhile", lost)
			}
			failing, lost, pause = false, 0, 0
			continue
		}
		if !failing {
			l.log.Warn("decision log: writing to Redis failed; entries are dropped (and counted) until it answers", "error", err)
		}
		failing, lost = true, lost+len(batch)-n
		pause = min(max(2*pause, retryMin), retryMax)
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-l.stop:
			t.Stop()
			l.flush(batch)
			return
		}
	}
}

// gather fills batch from the queues for up to the linger, or until it is
// full or Close was called.
func (l *Writer) gather(batch []policy.Record) []policy.Record {
	batch = l.fill(batch)
	if l.linger <= 0 || len(batch) >= l.batchSize {
		return batch
	}
	t := time.NewTimer(l.linger)
	defer t.Stop()
	for len(batch) < l.batchSize {
		select {
		case r := <-l.queue:
			batch = l.fill(append(batch, r))
		case r := <-l.summaries:
			batch = l.fill(append(batch, r))
		case <-t.C:
			return batch
		case <-l.stop:
			return batch
		}
	}
	return batch
}

// fill adds to batch what the queues hold now, up to the batch size:
// decisions first, then summaries.
func (l *Writer) fill(batch []policy.Record) []policy.Record {
	for len(batch) < l.batchSize {
		select {
		case r := <-l.queue:
			batch = append(batch, r)
			continue
		default:
		}
		select {
		case r := <-l.summaries:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// flush writes what is queued, batch by batch, until the queues are empty,
// a write fails or Close's bound has passed; the rest is dropped.
func (l *Writer) flush(batch []policy.Record) {
	for {
		batch = l.fill(batch[:0])
		if len(batch) == 0 {
			return
		}
		if _, err := l.write(batch); err != nil {
			l.drop(l.drain())
			return
		}
	}
}

// write sends batch in one pipeline and returns how many entries Redis
// acknowledged; the others are counted as dropped.
func (l *Writer) write(batch []policy.Record) (int, error) {
	ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
	defer cancel()
	cmds, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, r := range batch {
			p.XAdd(ctx, &redis.XAddArgs{Stream: l.key, MaxLen: l.maxLen, Approx: true, Values: encode(r)})
		}
		return nil
	})
	ok := 0
	for _, c := range cmds {
		if c.Err() == nil {
			ok++
		}
	}
	l.written.Add(uint64(ok))
	l.drop(len(batch) - ok)
	if err == nil && ok < len(batch) {
		err = errors.New("not every entry was written")
	}
	return ok, err
}
