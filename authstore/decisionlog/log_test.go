package decisionlog

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/internal/storetest"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// sampleRecord is the i-th of a set of records with every field set.
func sampleRecord(base time.Time, i int) policy.Record {
	outcomes := []string{"accepted", "bad_credentials", "disabled"}
	return policy.Record{
		Time:       base.Add(time.Duration(i)*time.Second + 123456789), // sub-ms digits are dropped
		Replica:    fmt.Sprintf("replica-%d", i%2),
		Kind:       "connect",
		Remote:     fmt.Sprintf("10.0.0.%d:40000", i),
		Username:   fmt.Sprintf("user-%d", i%3),
		ClientID:   fmt.Sprintf("client-%d", i%4),
		Protocol:   4 + i%2,
		TLS:        "TLS 1.3",
		Resumed:    i%2 == 1,
		CertSHA256: fmt.Sprintf("%064x", i),
		Outcome:    outcomes[i%3],
		Reason:     fmt.Sprintf("reason number %d", i),
		Duration:   time.Duration(i)*time.Millisecond + 1234*time.Nanosecond,
	}
}

// stored is r as the stream gives it back: the time in UTC, to the
// millisecond.
func stored(r policy.Record) policy.Record {
	r.Time = r.Time.UTC().Truncate(time.Millisecond)
	return r
}

func awaitWritten(t *testing.T, l *Writer, n uint64) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, fmt.Sprintf("%d entries written", n), func() bool { return l.Written() >= n })
}

// TestDecisionLogRoundTrip: records written through the log come back from
// ReadDecisions field for field, oldest first; every entry has exactly
// Fields, in order, with the time in RFC 3339 with milliseconds;
// the filters, Limit and Since select the right entries; a 60 KiB user
// name is stored cut.
func TestDecisionLogRoundTrip(t *testing.T) {
	s, admin, _ := realStream(t)
	ctx := testenv.Context(t)
	l := s.DecisionLog(Options{Replica: "default-replica"})
	t.Cleanup(l.Close)

	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.FixedZone("CET", 3600))
	const n = 60
	var want []policy.Record
	for i := range n {
		r := sampleRecord(base, i)
		l.Record(r)
		want = append(want, stored(r))
	}
	awaitWritten(t, l, n)
	if l.Dropped() != 0 {
		t.Fatalf("%d entries dropped", l.Dropped())
	}

	// The raw entry: the fields in order, the time format.
	raw, err := admin.Do(ctx, "XRANGE", s.DecisionsKey(), "-", "+", "COUNT", 1).Slice()
	if err != nil || len(raw) != 1 {
		t.Fatalf("XRANGE: %v %v", raw, err)
	}
	kv := raw[0].([]any)[1].([]any)
	var names []string
	values := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		names = append(names, kv[i].(string))
		values[kv[i].(string)] = kv[i+1].(string)
	}
	if !slices.Equal(names, Fields) {
		t.Errorf("entry fields %v, want %v", names, Fields)
	}
	if values["time"] != "2026-03-01T11:00:00.123Z" || values["resumed"] != "false" || values["protocol"] != "4" || values["duration"] != "1.234µs" {
		t.Errorf("entry values: %v", values)
	}

	got, err := s.ReadDecisions(ctx, Filter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("read %d entries, want %d", len(got), n)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("entry %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}

	pick := func(keep func(policy.Record) bool, limit int) []policy.Record {
		var out []policy.Record
		for _, r := range want {
			if keep(r) {
				out = append(out, r)
			}
		}
		if limit > 0 && len(out) > limit {
			out = out[len(out)-limit:]
		}
		return out
	}
	for _, c := range []struct {
		name string
		f    Filter
		want []policy.Record
	}{
		{"user", Filter{User: "user-1"}, pick(func(r policy.Record) bool { return r.Username == "user-1" }, 0)},
		{"client id", Filter{ClientID: "client-3"}, pick(func(r policy.Record) bool { return r.ClientID == "client-3" }, 0)},
		{"outcome", Filter{Outcome: "disabled"}, pick(func(r policy.Record) bool { return r.Outcome == "disabled" }, 0)},
		{"user and client id", Filter{User: "user-2", ClientID: "client-1"},
			pick(func(r policy.Record) bool { return r.Username == "user-2" && r.ClientID == "client-1" }, 0)},
		{"user, newest 3", Filter{User: "user-0", Limit: 3}, pick(func(r policy.Record) bool { return r.Username == "user-0" }, 3)},
		{"default limit", Filter{}, want},
		{"since", Filter{Since: base.Add(45 * time.Second)}, want[45:]},
		{"since and outcome", Filter{Since: base.Add(30 * time.Second), Outcome: "accepted"},
			pick(func(r policy.Record) bool { return !r.Time.Before(base.Add(30*time.Second)) && r.Outcome == "accepted" }, 0)},
		{"nobody", Filter{User: "nobody"}, nil},
		{"negative limit", Filter{Limit: -1}, nil},
		{"scan bound", Filter{MaxScan: 5}, want[n-5:]},
	} {
		got, err := s.ReadDecisions(ctx, c.f)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(c.want) == 0 && len(got) != 0 || len(c.want) > 0 && !slices.Equal(got, c.want) {
			t.Errorf("%s: got %d entries %v\nwant %d %v", c.name, len(got), names2(got), len(c.want), names2(c.want))
		}
	}

	// Defaults and cuts: a record without time or replica, a huge user name.
	before := time.Now().Add(-time.Second)
	l.Record(policy.Record{Kind: "kick", Username: strings.Repeat("x", 60<<10), Outcome: "kicked", Reason: strings.Repeat("é", 400)})
	awaitWritten(t, l, n+1)
	last, err := s.ReadDecisions(ctx, Filter{Limit: 1})
	if err != nil || len(last) != 1 {
		t.Fatalf("last entry: %v %v", last, err)
	}
	r := last[0]
	if r.Replica != "default-replica" || r.Time.Before(before) || r.Time.After(time.Now()) {
		t.Errorf("defaults not filled: replica %q time %v", r.Replica, r.Time)
	}
	if len(r.Username) > 300 || !strings.HasSuffix(r.Username, "...(61440 bytes)") {
		t.Errorf("60 KiB user name stored as %d bytes: %.40s", len(r.Username), r.Username)
	}
	if len(r.Reason) > 600 || !strings.HasSuffix(r.Reason, "é...(800 bytes)") {
		t.Errorf("long reason stored as %d bytes, cut inside a rune? %q", len(r.Reason), r.Reason[len(r.Reason)-20:])
	}
}

// names2 is a short form of records for failure messages.
func names2(rs []policy.Record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Remote)
	}
	return out
}

// TestDecisionLogCapped: with MAXLEN ~ 1000, 5000 entries leave the stream
// near 1000 entries, the newest ones.
func TestDecisionLogCapped(t *testing.T) {
	s, admin, _ := realStream(t)
	ctx := testenv.Context(t)
	l := s.DecisionLog(Options{MaxLen: 1000, QueueSize: 5000})
	t.Cleanup(l.Close)
	base := time.Now()
	for i := range 5000 {
		l.Record(policy.Record{Time: base.Add(time.Duration(i) * time.Millisecond), Kind: "connect", Username: fmt.Sprint("u", i), Outcome: "accepted"})
	}
	awaitWritten(t, l, 5000)
	if l.Dropped() != 0 {
		t.Fatalf("%d dropped", l.Dropped())
	}
	n, err := admin.XLen(ctx, s.DecisionsKey()).Result()
	if err != nil {
		t.Fatal(err)
	}
	// Redis trims whole nodes of up to 100 entries (stream-node-max-entries).
	if n < 1000 || n > 1100 {
		t.Fatalf("XLEN %d after 5000 entries with MAXLEN ~ 1000", n)
	}
	got, err := s.ReadDecisions(ctx, Filter{Limit: 1})
	if err != nil || len(got) != 1 || got[0].Username != "u4999" {
		t.Fatalf("newest entry: %+v %v", got, err)
	}
}

// blockedRE matches CLIENT LIST's flags of a blocked client.
var blockedRE = regexp.MustCompile(`\bflags=\S*b`)

// writerStuck reports whether a client of Redis is blocked in an XADD:
// the writer, held by CLIENT PAUSE WRITE.
func writerStuck(ctx context.Context, admin *redis.Client) bool {
	list, err := admin.ClientList(ctx).Result()
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(list, "\n") {
		if blockedRE.MatchString(line) && strings.Contains(line, " cmd=xadd ") {
			return true
		}
	}
	return false
}

// TestDecisionLogNeverBlocksOnAPausedRedis: while the writer is provably
// stuck in an XADD (Redis under CLIENT PAUSE WRITE, the write's timeout
// far away), 10,000 Records return, what the queue cannot hold is counted
// as dropped (and reported to OnDrop), nothing is written; once Redis is
// unpaused writing resumes by itself.
func TestDecisionLogNeverBlocksOnAPausedRedis(t *testing.T) {
	s, admin, _ := realStream(t)
	ctx := testenv.Context(t)
	var reported atomic.Int64
	l := s.DecisionLog(Options{QueueSize: 64, BatchSize: 16, Timeout: time.Minute, OnDrop: func(n int) { reported.Add(int64(n)) }})
	t.Cleanup(l.Close)
	l.Record(policy.Record{Kind: "connect", Username: "before", Outcome: "accepted"})
	awaitWritten(t, l, 1)

	unpause := pauseWrites(t, admin)
	l.Record(policy.Record{Kind: "connect", Username: "stuck", Outcome: "accepted"})
	testenv.WaitFor(t, 10*time.Second, "the writer to be blocked in XADD", func() bool { return writerStuck(ctx, admin) })

	const records = 10000
	for i := range records {
		l.Record(policy.Record{Kind: "connect", Username: fmt.Sprint("during-", i), Outcome: "bad_credentials"})
	}
	// Every Record returned while the writer was stuck: what did not fit
	// the queue was dropped.
	if !writerStuck(ctx, admin) {
		t.Fatal("the writer was not stuck for the whole loop: the test proves nothing")
	}
	if d := l.Dropped(); d < records-64 || l.Written() != 1 {
		t.Fatalf("dropped %d, written %d: want at least %d dropped and nothing more written", d, l.Written(), records-64)
	}
	if reported.Load() != int64(l.Dropped()) {
		t.Fatalf("OnDrop reported %d, Dropped says %d", reported.Load(), l.Dropped())
	}
	if n := admin.XLen(ctx, s.DecisionsKey()).Val(); n != 1 {
		t.Fatalf("XLEN %d while paused", n)
	}

	unpause()
	// The queue is full of the loop's entries until the writer takes them:
	// record until an entry made after the pause is in the stream.
	testenv.WaitFor(t, 10*time.Second, "an entry recorded after the pause in the stream", func() bool {
		l.Record(policy.Record{Kind: "connect", Username: "after", Outcome: "accepted"})
		got, err := s.ReadDecisions(ctx, Filter{User: "after"})
		return err == nil && len(got) > 0
	})
	if reported.Load() != int64(l.Dropped()) {
		t.Fatalf("OnDrop reported %d, Dropped says %d", reported.Load(), l.Dropped())
	}
}

// TestDecisionLogSurvivesRedisRestart: with Redis stopped, 10,000 Records
// return, nothing is written and every entry is either still queued or
// counted as dropped; when Redis is back, new entries are written again
// without anyone asking.
func TestDecisionLogSurvivesRedisRestart(t *testing.T) {
	s, admin, srv := realStream(t)
	ctx := testenv.Context(t)
	var reported atomic.Int64
	l := s.DecisionLog(Options{QueueSize: 100, BatchSize: 10, OnDrop: func(n int) { reported.Add(int64(n)) }})
	t.Cleanup(l.Close)
	l.Record(policy.Record{Kind: "connect", Username: "before", Outcome: "accepted"})
	awaitWritten(t, l, 1)

	srv.Stop()
	const records = 10000
	for i := range records {
		l.Record(policy.Record{Kind: "connect", Username: fmt.Sprint("during-", i), Outcome: "store_unavailable"})
	}
	if l.Written() != 1 {
		t.Fatalf("written %d with Redis stopped", l.Written())
	}
	if d, queued := l.Dropped(), uint64(len(l.queue)); d < records-100-10 || d+queued > records {
		t.Fatalf("dropped %d, queued %d of %d", d, queued, records)
	}
	if reported.Load() != int64(l.Dropped()) {
		t.Fatalf("OnDrop reported %d, Dropped says %d", reported.Load(), l.Dropped())
	}

	srv.Start() // empty: no persistence
	testenv.WaitFor(t, 15*time.Second, "an entry recorded after the restart in the stream", func() bool {
		l.Record(policy.Record{Kind: "connect", Username: "after", Outcome: "accepted"})
		got, err := s.ReadDecisions(ctx, Filter{User: "after"})
		return err == nil && len(got) > 0
	})
	if n := admin.XLen(ctx, s.DecisionsKey()).Val(); n < 1 {
		t.Fatalf("XLEN %d", n)
	}
}

// TestDecisionLogClose: Close writes what is queued; a Record after Close
// is dropped and counted; with Redis gone Close still returns, and every
// entry is accounted for as written or dropped.
func TestDecisionLogClose(t *testing.T) {
	s, admin, srv := realStream(t)
	ctx := testenv.Context(t)
	l := s.DecisionLog(Options{QueueSize: 1000})
	for i := range 500 {
		l.Record(policy.Record{Kind: "connect", Username: fmt.Sprint("u", i), Outcome: "accepted"})
	}
	l.Close()
	if l.Written() != 500 || l.Dropped() != 0 {
		t.Fatalf("after Close: written %d, dropped %d", l.Written(), l.Dropped())
	}
	if n := admin.XLen(ctx, s.DecisionsKey()).Val(); n != 500 {
		t.Fatalf("XLEN %d after Close, want 500", n)
	}
	l.Record(policy.Record{Kind: "connect", Outcome: "accepted"})
	if l.Dropped() != 1 {
		t.Fatalf("a Record after Close: dropped %d", l.Dropped())
	}
	l.Close() // a second Close returns

	srv.Stop()
	l2 := s.DecisionLog(Options{QueueSize: 1000, CloseTimeout: 200 * time.Millisecond, Timeout: 200 * time.Millisecond})
	for range 500 {
		l2.Record(policy.Record{Kind: "connect", Outcome: "accepted"})
	}
	l2.Close()
	if l2.Written()+l2.Dropped() != 500 || l2.Written() != 0 {
		t.Fatalf("Close with Redis gone: written %d, dropped %d of 500", l2.Written(), l2.Dropped())
	}

	var nilLog *Writer
	nilLog.Record(policy.Record{})
	nilLog.Close()
	if nilLog.Dropped() != 0 || nilLog.Written() != 0 {
		t.Fatal("a nil log counts")
	}
}

// TestFollowDecisions: FollowDecisions delivers the newest matching
// entries first, then the matching entries added later, in order, none
// twice and none of the others; with a negative Limit only the later
// ones. It returns when ctx ends.
func TestFollowDecisions(t *testing.T) {
	s, _, _ := realStream(t)
	l := s.DecisionLog(Options{})
	t.Cleanup(l.Close)
	for i := range 5 {
		l.Record(policy.Record{Kind: "connect", Username: "a", ClientID: fmt.Sprint("old-", i), Outcome: "accepted"})
		l.Record(policy.Record{Kind: "connect", Username: "b", ClientID: fmt.Sprint("old-", i), Outcome: "accepted"})
	}
	l.Record(policy.Record{Kind: "connect", Username: "c", ClientID: "new-1", Outcome: "accepted"}) // old, but matches onlyNew's filter
	awaitWritten(t, l, 11)

	follow := func(f Filter) (<-chan policy.Record, func() error) {
		ctx, cancel := context.WithCancel(context.Background())
		ch := make(chan policy.Record, 1000)
		done := make(chan error, 1)
		go func() { done <- s.FollowDecisions(ctx, f, func(r policy.Record) { ch <- r }) }()
		return ch, func() error { cancel(); return <-done }
	}
	next := func(ch <-chan policy.Record, skip string) policy.Record {
		t.Helper()
		for {
			select {
			case r := <-ch:
				if r.Username == skip {
					continue
				}
				return r
			case <-time.After(10 * time.Second):
				t.Fatal("nothing delivered")
			}
		}
	}
	withHistory, stop1 := follow(Filter{User: "a", Limit: 2})
	for _, want := range []string{"old-3", "old-4"} {
		if r := next(withHistory, ""); r.Username != "a" || r.ClientID != want {
			t.Fatalf("history: %+v, want a %s", r, want)
		}
	}
	// onlyNew is following once an entry written after it started reaches
	// it; the old entry that matches its filter never does.
	onlyNew, stop2 := follow(Filter{Limit: -1, ClientID: "new-1"})
	testenv.WaitFor(t, 10*time.Second, "the follower to deliver a new entry", func() bool {
		l.Record(policy.Record{Kind: "connect", Username: "sync", ClientID: "new-1", Outcome: "accepted"})
		select {
		case r := <-onlyNew:
			if r.Username != "sync" {
				t.Fatalf("with a negative Limit, an old entry was delivered: %+v", r)
			}
			return true
		case <-time.After(50 * time.Millisecond):
			return false
		}
	})
	for i := range 3 {
		l.Record(policy.Record{Kind: "connect", Username: "b", ClientID: fmt.Sprint("new-", i), Outcome: "accepted"})
		l.Record(policy.Record{Kind: "connect", Username: "a", ClientID: fmt.Sprint("new-", i), Outcome: "disabled"})
	}
	for _, want := range []string{"new-0", "new-1", "new-2"} {
		if r := next(withHistory, ""); r.Username != "a" || r.ClientID != want || r.Outcome != "disabled" {
			t.Fatalf("followed: %+v, want a %s", r, want)
		}
	}
	for _, want := range []string{"b", "a"} {
		if r := next(onlyNew, "sync"); r.ClientID != "new-1" || r.Username != want {
			t.Fatalf("only new: %+v, want %s new-1", r, want)
		}
	}
	if err := stop1(); err != context.Canceled {
		t.Errorf("FollowDecisions returned %v when its context ended", err)
	}
	if err := stop2(); err != context.Canceled {
		t.Errorf("FollowDecisions returned %v when its context ended", err)
	}
	select {
	case r := <-withHistory:
		t.Errorf("delivered once more: %+v", r)
	default:
	}
	for len(onlyNew) > 0 {
		if r := <-onlyNew; r.Username != "sync" {
			t.Errorf("delivered once more: %+v", r)
		}
	}
}

// TestReadDecisionsRedisDown: reading fails with an error naming the
// stream when Redis is unreachable.
func TestReadDecisionsRedisDown(t *testing.T) {
	s, _, srv := realStream(t)
	srv.Stop()
	_, err := s.ReadDecisions(testenv.Context(t), Filter{})
	if err == nil || !strings.Contains(err.Error(), "read the decision log mqtt:decisions") {
		t.Fatalf("ReadDecisions with Redis down: %v", err)
	}
	err = s.FollowDecisions(testenv.Context(t), Filter{}, func(policy.Record) { t.Error("delivered") })
	if err == nil || !strings.Contains(err.Error(), "mqtt:decisions") {
		t.Fatalf("FollowDecisions with Redis down: %v", err)
	}
}

// TestDecisionLogCluster: on a Redis Cluster the stream is one key; the
// pipelined XADDs, XREVRANGE and XREAD reach its node.
func TestDecisionLogCluster(t *testing.T) {
	nodes := testenv.RedisCluster(t, 3, 0)
	rdb := storetest.Client(t, fmt.Sprintf("redis://%s/0?cluster=true&addr=%s&addr=%s", nodes[0].Addr(), nodes[1].Addr(), nodes[2].Addr()))
	s := newStream(rdb, "fleet:")
	l := s.DecisionLog(Options{})
	t.Cleanup(l.Close)
	for i := range 20 {
		l.Record(policy.Record{Kind: "connect", Username: fmt.Sprint("u", i%2), Outcome: "accepted", Remote: fmt.Sprint(i)})
	}
	awaitWritten(t, l, 20)
	ctx := testenv.Context(t)
	got, err := s.ReadDecisions(ctx, Filter{User: "u1"})
	if err != nil || len(got) != 10 || got[0].Remote != "1" || got[9].Remote != "19" {
		t.Fatalf("read on the cluster: %v %v", names2(got), err)
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan policy.Record, 1)
	go func() { _ = s.FollowDecisions(fctx, Filter{Limit: -1}, func(r policy.Record) { ch <- r }) }()
	testenv.WaitFor(t, 10*time.Second, "a followed entry", func() bool {
		l.Record(policy.Record{Kind: "kick", Username: "k", Outcome: "kicked"})
		select {
		case r := <-ch:
			return r.Username == "k"
		case <-time.After(100 * time.Millisecond):
			return false
		}
	})
}

func TestPreviousStreamID(t *testing.T) {
	for in, want := range map[string]string{"5-3": "5-2", "5-0": "4-18446744073709551615", "1700000000000-0": "1699999999999-18446744073709551615"} {
		if got, ok := previousStreamID(in); !ok || got != want {
			t.Errorf("previousStreamID(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"0-0", "x", "1-x"} {
		if got, ok := previousStreamID(in); ok {
			t.Errorf("previousStreamID(%q) = %q, want none", in, got)
		}
	}
}

// pipelineCounter counts the pipelines a client sends.
type pipelineCounter struct{ n atomic.Int64 }

func (*pipelineCounter) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (*pipelineCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (c *pipelineCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmds)
	}
}

// TestDecisionLogLinger: entries that come a little apart (as CONNECTs
// under load do) share a pipeline when the writer lingers; without the
// linger each costs a round trip of its own.
func TestDecisionLogLinger(t *testing.T) {
	srv := testenv.Redis(t)
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const n = 20
	for _, linger := range []time.Duration{time.Second, -1} {
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		t.Cleanup(func() { rdb.Close() })
		var pipelines pipelineCounter
		rdb.AddHook(&pipelines)
		l := NewWriter(rdb, Options{Prefix: fmt.Sprintf("linger%d:", linger), Linger: linger})
		for i := range n {
			l.Record(sampleRecord(base, i))
			if linger < 0 {
				awaitWritten(t, l, uint64(i+1)) // each written before the next comes
			} else {
				time.Sleep(time.Millisecond)
			}
		}
		awaitWritten(t, l, n)
		l.Close()
		got := pipelines.n.Load()
		switch {
		case linger > 0 && got > 3:
			t.Fatalf("linger %v: %d pipelines for %d entries 1 ms apart", linger, got, n)
		case linger < 0 && got < n:
			t.Fatalf("no linger: %d pipelines for %d entries, want one each (and the connection's own)", got, n)
		}
		if l.Dropped() != 0 {
			t.Fatalf("%d dropped", l.Dropped())
		}
	}
}

// TestDecisionLogSummariesNeverCrowdOutDecisions: with the writer provably
// stuck in an XADD, a flood of summaries fills only the summaries' queue (a
// quarter of QueueSize) and the rest of them is dropped and counted, while
// QueueSize decisions recorded after the flood are all kept; once Redis
// answers, every kept entry is written, a summary with its count.
func TestDecisionLogSummariesNeverCrowdOutDecisions(t *testing.T) {
	s, admin, _ := realStream(t)
	ctx := testenv.Context(t)
	const queue = 64
	var reported atomic.Int64
	l := s.DecisionLog(Options{QueueSize: queue, BatchSize: 16, Timeout: time.Minute, CloseTimeout: time.Minute,
		OnDrop: func(n int) { reported.Add(int64(n)) }})
	t.Cleanup(l.Close)

	unpause := pauseWrites(t, admin)
	l.Record(policy.Record{Kind: "connect", Username: "stuck", Outcome: "accepted"})
	testenv.WaitFor(t, 10*time.Second, "the writer to be blocked in XADD", func() bool { return writerStuck(ctx, admin) })

	const summaries = 1000
	for i := range summaries {
		l.Record(policy.Record{Kind: policy.KindSummary, Remote: fmt.Sprint("192.0.2.", i%250), Outcome: "tls_handshake_failed", Count: i + 1,
			Reason: fmt.Sprint(i+1, " connections refused before CONNECT")})
	}
	if d := l.Dropped(); d != summaries-queue/4 {
		t.Fatalf("after %d summaries: %d dropped, want %d (the summaries' queue holds %d)", summaries, d, summaries-queue/4, queue/4)
	}
	for i := range queue {
		l.Record(policy.Record{Kind: "connect", Username: fmt.Sprint("d-", i), Outcome: "bad_credentials"})
	}
	if d := l.Dropped(); d != summaries-queue/4 {
		t.Fatalf("%d decisions after a flood of summaries: %d dropped, want only the %d summaries", queue, d, summaries-queue/4)
	}
	if !writerStuck(ctx, admin) {
		t.Fatal("the writer was not stuck for the whole test: it proves nothing")
	}
	// The decisions' queue is its own QueueSize: the next decision does not fit.
	l.Record(policy.Record{Kind: "connect", Username: "one-too-many", Outcome: "bad_credentials"})
	if d := l.Dropped(); d != summaries-queue/4+1 {
		t.Fatalf("a decision past a full queue: %d dropped, want %d", d, summaries-queue/4+1)
	}

	unpause()
	l.Close()
	if w, d := l.Written(), l.Dropped(); w != 1+queue/4+queue || d != summaries-queue/4+1 {
		t.Fatalf("after Close: written %d, dropped %d; want %d and %d", w, d, 1+queue/4+queue, summaries-queue/4+1)
	}
	if reported.Load() != int64(l.Dropped()) {
		t.Fatalf("OnDrop reported %d, Dropped says %d", reported.Load(), l.Dropped())
	}
	got, err := s.ReadDecisions(ctx, Filter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	decisions, kept := map[string]bool{}, 0
	for _, r := range got {
		switch r.Kind {
		case "connect":
			decisions[r.Username] = true
		case policy.KindSummary:
			kept++
			if r.Count < 1 || r.Count > queue/4 || r.Reason != fmt.Sprint(r.Count, " connections refused before CONNECT") {
				t.Fatalf("summary read back %+v: want one of the first %d with its count", r, queue/4)
			}
		}
	}
	if kept != queue/4 {
		t.Fatalf("%d summaries in the stream, want %d", kept, queue/4)
	}
	for i := range queue {
		if !decisions[fmt.Sprint("d-", i)] {
			t.Fatalf("decision d-%d missing from the stream", i)
		}
	}
}

// stream is a decision log's stream as the store reads and writes it.
type stream struct {
	*Reader
	rdb    redis.UniversalClient
	prefix string
}

func newStream(rdb redis.UniversalClient, prefix string) stream {
	return stream{Reader: NewReader(rdb, prefix), rdb: rdb, prefix: prefix}
}

// DecisionLog starts a writer to the stream.
func (s stream) DecisionLog(o Options) *Writer {
	o.Prefix = s.prefix
	return NewWriter(s.rdb, o)
}

// DecisionsKey is the stream's key.
func (s stream) DecisionsKey() string { return redisconn.NewKeys(s.prefix).DecisionsKey() }

// realStream is the stream of the default prefix in a real redis-server.
func realStream(t *testing.T) (stream, *redis.Client, *testenv.Server) {
	t.Helper()
	rdb, admin, srv := storetest.Redis(t)
	return newStream(rdb, ""), admin, srv
}

// pauseWrites pauses Redis's writes (CLIENT PAUSE WRITE) until the
// returned function, or the test's end, unpauses them (once).
func pauseWrites(t *testing.T, admin *redis.Client) func() {
	t.Helper()
	if err := admin.Do(testenv.Context(t), "CLIENT", "PAUSE", 60000, "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	unpause := func() {
		once.Do(func() {
			if err := admin.Do(context.Background(), "CLIENT", "UNPAUSE").Err(); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(unpause)
	return unpause
}
