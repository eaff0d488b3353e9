package authstore

// The decision log: every decision of every replica, appended to one Redis
// stream (<prefix>decisions) off the hot path, and read back by the CLI
// and the status page.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Defaults of the decision log.
const (
	// DefaultDecisionLogMaxLen is the stream's approximate cap (XADD
	// MAXLEN ~).
	DefaultDecisionLogMaxLen = 100000
	// DefaultDecisionLimit is how many entries ReadDecisions returns when
	// the filter sets no Limit.
	DefaultDecisionLimit = 100
	// DefaultDecisionScan is how many entries ReadDecisions examines at
	// most, newest first, when the filter sets no MaxScan.
	DefaultDecisionScan = 100000
)

// DecisionFields are the fields of every entry of the decision stream, in
// the order they are written: policy.Record's, never a password. time is
// RFC 3339 in UTC with milliseconds, protocol the MQTT protocol level
// ("" when unknown), resumed "true" or "false", duration a Go duration
// ("12.5ms"), count the connections a summary stands for ("" in an entry
// about one; entries written before it existed lack it).
var DecisionFields = []string{"time", "replica", "kind", "remote", "username", "client_id", "protocol", "tls", "resumed",
	"cert_sha256", "outcome", "reason", "duration", "count"}

// decisionTimeLayout is RFC 3339 with milliseconds.
const decisionTimeLayout = "2006-01-02T15:04:05.000Z07:00"

// A field of an entry is cut to these many bytes (with its length
// appended), so that a device sending a 60 KiB user name cannot make the
// stream's memory 60 KiB per entry.
const (
	maxDecisionField  = 256
	maxDecisionReason = 512
)

// DecisionsKey is the Redis stream of the decision log.
func (s *Store) DecisionsKey() string { return s.prefix + "decisions" }

// DecisionLogOptions tune a DecisionLog. Zero values take the defaults.
type DecisionLogOptions struct {
	// Prefix is the key prefix, default "mqtt:": the stream is
	// <Prefix>decisions.
	Prefix string
	// MaxLen caps the stream approximately (MAXLEN ~ N: Redis trims whole
	// nodes, so the stream may hold up to about a hundred entries more);
	// default DefaultDecisionLogMaxLen.
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

// DecisionLog appends decision records to the Redis stream
// <prefix>decisions in the background. Record never blocks: entries wait in
// a bounded queue (summaries in a smaller one of their own), and one writer
// goroutine sends them in batches, one
// pipeline of XADD MAXLEN ~ N per batch, each bounded by a short timeout.
// While Redis is down or slow, entries that do not fit the queue, and
// batches that fail, are dropped and counted; writing resumes by itself
// when Redis answers again (the writer retries after a pause that grows
// from 100 ms to 2 s). A slow or dead Redis therefore never delays or
// changes a decision. It is safe for concurrent use; its methods do
// nothing on a nil *DecisionLog.
type DecisionLog struct {
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

var _ policy.Recorder = (*DecisionLog)(nil)

// NewDecisionLog starts a decision log writing through rdb; stop it with
// Close.
func NewDecisionLog(rdb redis.UniversalClient, o DecisionLogOptions) *DecisionLog {
	if o.Prefix == "" {
		o.Prefix = "mqtt:"
	}
	if o.MaxLen <= 0 {
		o.MaxLen = DefaultDecisionLogMaxLen
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
		o.Linger = DefaultDecisionLogLinger
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	l := &DecisionLog{rdb: rdb, key: o.Prefix + "decisions", maxLen: o.MaxLen, batchSize: o.BatchSize, linger: o.Linger, timeout: o.Timeout,
		closeTimeout: o.CloseTimeout, replica: o.Replica, onDrop: o.OnDrop, log: o.Logger,
		queue: make(chan policy.Record, o.QueueSize), summaries: make(chan policy.Record, max(o.QueueSize/4, 1)),
		stop: make(chan struct{}), done: make(chan struct{})}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	go l.run()
	return l
}

// DecisionLog starts a decision log on the store's Redis client and key
// prefix (o.Prefix is ignored).
func (s *Store) DecisionLog(o DecisionLogOptions) *DecisionLog {
	o.Prefix = s.prefix
	return NewDecisionLog(s.rdb, o)
}

// Record queues r for the stream and returns at once; when its queue is
// full, or after Close, r is dropped and counted. A summary (Kind
// policy.KindSummary) goes to the summaries' queue, so that summaries never
// fill the decisions'. A zero Time is taken as now, an empty Replica as
// the log's.
func (l *DecisionLog) Record(r policy.Record) {
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
func (l *DecisionLog) Dropped() uint64 {
	if l == nil {
		return 0
	}
	return l.dropped.Load()
}

// Written is the number of entries Redis has acknowledged so far.
func (l *DecisionLog) Written() uint64 {
	if l == nil {
		return 0
	}
	return l.written.Load()
}

// Close stops the writer after writing what is queued, within
// CloseTimeout (plus at most one Timeout for a write under way); what is
// left is dropped and counted. Later Records are dropped. Later calls do
// nothing.
func (l *DecisionLog) Close() {
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

func (l *DecisionLog) drop(n int) {
	if n <= 0 {
		return
	}
	l.dropped.Add(uint64(n))
	if l.onDrop != nil {
		l.onDrop(n)
	}
}

// drain empties the queues and returns how many entries they held.
func (l *DecisionLog) drain() int {
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
	decisionRetryMin = 100 * time.Millisecond
	decisionRetryMax = 2 * time.Second
)

// run is the writer: it takes the queues in batches until Close.
func (l *DecisionLog) run() {
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
		pause = min(max(2*pause, decisionRetryMin), decisionRetryMax)
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

// DefaultDecisionLogLinger is DecisionLogOptions.Linger's default.
const DefaultDecisionLogLinger = 10 * time.Millisecond

// gather fills batch from the queues for up to the linger, or until it is
// full or Close was called.
func (l *DecisionLog) gather(batch []policy.Record) []policy.Record {
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
func (l *DecisionLog) fill(batch []policy.Record) []policy.Record {
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
func (l *DecisionLog) flush(batch []policy.Record) {
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
func (l *DecisionLog) write(batch []policy.Record) (int, error) {
	ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
	defer cancel()
	cmds, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, r := range batch {
			p.XAdd(ctx, &redis.XAddArgs{Stream: l.key, MaxLen: l.maxLen, Approx: true, Values: encodeDecision(r)})
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

// encodeDecision is r as the stream entry's field/value pairs, in
// DecisionFields' order (the same fields in every entry, which Redis
// stores once per stream node).
func encodeDecision(r policy.Record) []string {
	protocol, count := "", ""
	if r.Protocol != 0 {
		protocol = strconv.Itoa(r.Protocol)
	}
	if r.Count != 0 {
		count = strconv.Itoa(r.Count)
	}
	return []string{
		"time", r.Time.UTC().Format(decisionTimeLayout),
		"replica", capDecisionField(r.Replica, maxDecisionField),
		"kind", capDecisionField(r.Kind, maxDecisionField),
		"remote", capDecisionField(r.Remote, maxDecisionField),
		"username", capDecisionField(r.Username, maxDecisionField),
		"client_id", capDecisionField(r.ClientID, maxDecisionField),
		"protocol", protocol,
		"tls", capDecisionField(r.TLS, maxDecisionField),
		"resumed", strconv.FormatBool(r.Resumed),
		"cert_sha256", capDecisionField(r.CertSHA256, maxDecisionField),
		"outcome", capDecisionField(r.Outcome, maxDecisionField),
		"reason", capDecisionField(r.Reason, maxDecisionReason),
		"duration", r.Duration.String(),
		"count", count,
	}
}

// capDecisionField cuts s to at most max bytes, at a rune boundary, with
// its full length appended.
func capDecisionField(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "...(" + strconv.Itoa(len(s)) + " bytes)"
}

// decodeDecision is a stream entry as a Record. A field that is missing
// or does not parse is left zero; an entry without a readable time takes
// the time of its stream ID.
func decodeDecision(m redis.XMessage) policy.Record {
	str := func(k string) string {
		v, _ := m.Values[k].(string)
		return v
	}
	r := policy.Record{Replica: str("replica"), Kind: str("kind"), Remote: str("remote"), Username: str("username"),
		ClientID: str("client_id"), TLS: str("tls"), CertSHA256: str("cert_sha256"), Outcome: str("outcome"), Reason: str("reason")}
	r.Protocol, _ = strconv.Atoi(str("protocol"))
	r.Resumed, _ = strconv.ParseBool(str("resumed"))
	r.Duration, _ = time.ParseDuration(str("duration"))
	r.Count, _ = strconv.Atoi(str("count"))
	if t, err := time.Parse(time.RFC3339Nano, str("time")); err == nil {
		r.Time = t
	} else if ms, _, ok := strings.Cut(m.ID, "-"); ok {
		if n, err := strconv.ParseInt(ms, 10, 64); err == nil {
			r.Time = time.UnixMilli(n).UTC()
		}
	}
	return r
}

// DecisionFilter selects entries of the decision log. Empty fields match
// anything; the others must match exactly.
type DecisionFilter struct {
	User     string
	ClientID string
	Outcome  string
	// Since, when set, keeps entries whose time is at or after it.
	Since time.Time
	// Limit is how many of the newest matching entries to return, at
	// most; 0 takes DefaultDecisionLimit. Negative: none (FollowDecisions
	// then delivers only entries added after it started).
	Limit int
	// MaxScan bounds how many entries are examined, newest first; 0 takes
	// DefaultDecisionScan.
	MaxScan int
}

func (f DecisionFilter) match(r policy.Record) bool {
	return (f.User == "" || r.Username == f.User) && (f.ClientID == "" || r.ClientID == f.ClientID) &&
		(f.Outcome == "" || r.Outcome == f.Outcome) && (f.Since.IsZero() || !r.Time.Before(f.Since))
}

// decisionSinceSlack widens the stream ID bound of DecisionFilter.Since:
// IDs are Redis's clock when the entry was written, times the replica's
// when it decided, so an entry may be written a little after its time and
// the clocks may differ a little. Entries are then filtered by their time.
const decisionSinceSlack = time.Minute

// decisionPage is how many entries one XREVRANGE or XREAD returns.
const decisionPage = 1000

// ReadDecisions returns the newest entries of the decision log that match
// f, oldest first (newest last). It examines the stream newest first with
// XREVRANGE, page by page, until it has f.Limit entries, reaches f.Since
// or has examined f.MaxScan entries. An empty or missing stream gives no
// entries and no error.
func (s *Store) ReadDecisions(ctx context.Context, f DecisionFilter) ([]policy.Record, error) {
	recs, _, err := s.readDecisions(ctx, f)
	return recs, err
}

// readDecisions is ReadDecisions, plus the ID of the stream's newest entry
// when it started ("0-0" for an empty stream): the entries after it are
// the ones it did not see.
func (s *Store) readDecisions(ctx context.Context, f DecisionFilter) ([]policy.Record, string, error) {
	key := s.DecisionsKey()
	top, err := s.rdb.XRevRangeN(ctx, key, "+", "-", 1).Result()
	if err != nil {
		return nil, "", fmt.Errorf("read the decision log %s: %w", key, err)
	}
	if len(top) == 0 {
		return nil, "0-0", nil
	}
	newest := top[0].ID
	limit, maxScan := f.Limit, f.MaxScan
	switch {
	case limit < 0:
		return nil, newest, nil
	case limit == 0:
		limit = DefaultDecisionLimit
	}
	if maxScan <= 0 {
		maxScan = DefaultDecisionScan
	}
	stop := "-"
	if !f.Since.IsZero() {
		if ms := f.Since.Add(-decisionSinceSlack).UnixMilli(); ms > 0 {
			stop = strconv.FormatInt(ms, 10)
		}
	}
	var out []policy.Record
	start, scanned := newest, 0
	for len(out) < limit && scanned < maxScan {
		n := min(decisionPage, maxScan-scanned)
		if f.User == "" && f.ClientID == "" && f.Outcome == "" {
			n = min(n, limit-len(out)) // unfiltered: no more than wanted
		}
		msgs, err := s.rdb.XRevRangeN(ctx, key, start, stop, int64(n)).Result()
		if err != nil {
			return nil, "", fmt.Errorf("read the decision log %s: %w", key, err)
		}
		scanned += len(msgs)
		for _, m := range msgs {
			if r := decodeDecision(m); f.match(r) {
				out = append(out, r)
				if len(out) == limit {
					break
				}
			}
		}
		if len(msgs) < n {
			break
		}
		prev, ok := previousStreamID(msgs[len(msgs)-1].ID)
		if !ok {
			break
		}
		start = prev
	}
	slices.Reverse(out)
	return out, newest, nil
}

// previousStreamID is the greatest stream ID below id (XREVRANGE's bound
// is inclusive; the exclusive "(" form needs Redis 6.2).
func previousStreamID(id string) (string, bool) {
	msStr, seqStr, ok := strings.Cut(id, "-")
	if !ok {
		return "", false
	}
	ms, err1 := strconv.ParseUint(msStr, 10, 64)
	seq, err2 := strconv.ParseUint(seqStr, 10, 64)
	switch {
	case err1 != nil || err2 != nil:
		return "", false
	case seq > 0:
		return strconv.FormatUint(ms, 10) + "-" + strconv.FormatUint(seq-1, 10), true
	case ms > 0:
		return strconv.FormatUint(ms-1, 10) + "-" + strconv.FormatUint(^uint64(0), 10), true
	}
	return "", false // 0-0: nothing below
}

// decisionFollowBlock is how long one XREAD waits for new entries: the
// longest FollowDecisions takes to notice that ctx ended.
const decisionFollowBlock = time.Second

// FollowDecisions delivers to deliver, one at a time and oldest first, the
// entries ReadDecisions(ctx, f) returns, then every matching entry added to
// the stream after them (XREAD BLOCK from the newest entry the read saw,
// so none is missed or delivered twice), until ctx ends (it returns
// ctx.Err()) or Redis fails (it returns the error).
func (s *Store) FollowDecisions(ctx context.Context, f DecisionFilter, deliver func(policy.Record)) error {
	recs, last, err := s.readDecisions(ctx, f)
	if err != nil {
		return err
	}
	for _, r := range recs {
		deliver(r)
	}
	key := s.DecisionsKey()
	for ctx.Err() == nil {
		streams, err := s.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{key, last}, Count: decisionPage, Block: decisionFollowBlock}).Result()
		if errors.Is(err, redis.Nil) {
			continue // nothing new within the block
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return fmt.Errorf("follow the decision log %s: %w", key, err)
		}
		for _, st := range streams {
			for _, m := range st.Messages {
				last = m.ID
				if r := decodeDecision(m); f.match(r) {
					deliver(r)
				}
			}
		}
	}
	return ctx.Err()
}
