package decisionlog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Defaults of a Reader.
const (
	// DefaultLimit is how many entries ReadDecisions returns when the
	// filter sets no Limit.
	DefaultLimit = 100
	// DefaultScan is how many entries ReadDecisions examines at most,
	// newest first, when the filter sets no MaxScan.
	DefaultScan = 100000
)

// Reader reads the decision log of one key prefix.
type Reader struct {
	rdb redis.UniversalClient
	key string
}

// NewReader reads the decision log under prefix ("": DefaultPrefix)
// through rdb.
func NewReader(rdb redis.UniversalClient, prefix string) *Reader {
	return &Reader{rdb: rdb, key: redisconn.NewKeys(prefix).DecisionsKey()}
}

// Filter selects entries of the decision log. Empty fields match
// anything; the others must match exactly.
type Filter struct {
	User     string
	ClientID string
	Outcome  string
	// Since, when set, keeps entries whose time is at or after it.
	Since time.Time
	// Limit is how many of the newest matching entries to return, at
	// most; 0 takes DefaultLimit. Negative: none (FollowDecisions
	// then delivers only entries added after it started).
	Limit int
	// MaxScan bounds how many entries are examined, newest first; 0 takes
	// DefaultScan.
	MaxScan int
}

func (f Filter) match(r policy.Record) bool {
	return (f.User == "" || r.Username == f.User) && (f.ClientID == "" || r.ClientID == f.ClientID) &&
		(f.Outcome == "" || r.Outcome == f.Outcome) && (f.Since.IsZero() || !r.Time.Before(f.Since))
}

// sinceSlack widens the stream ID bound of Filter.Since:
// IDs are Redis's clock when the entry was written, times the replica's
// when it decided, so an entry may be written a little after its time and
// the clocks may differ a little. Entries are then filtered by their time.
const sinceSlack = time.Minute

// page is how many entries one XREVRANGE or XREAD returns.
const page = 1000

// ReadDecisions returns the newest entries of the decision log that match
// f, oldest first (newest last). It examines the stream newest first with
// XREVRANGE, page by page, until it has f.Limit entries, reaches f.Since
// or has examined f.MaxScan entries. An empty or missing stream gives no
// entries and no error.
func (r *Reader) ReadDecisions(ctx context.Context, f Filter) ([]policy.Record, error) {
	recs, _, err := r.readDecisions(ctx, f)
	return recs, err
}

// readDecisions is ReadDecisions, plus the ID of the stream's newest entry
// when it started ("0-0" for an empty stream): the entries after it are
// the ones it did not see.
func (r *Reader) readDecisions(ctx context.Context, f Filter) ([]policy.Record, string, error) {
	top, err := r.rdb.XRevRangeN(ctx, r.key, "+", "-", 1).Result()
	if err != nil {
		return nil, "", fmt.Errorf("read the decision log %s: %w", r.key, err)
	}
	if len(top) == 0 {
		return nil, "0-0", nil
	}
	newest := top[0].ID
	if f.Limit < 0 {
		return nil, newest, nil
	}
	out, err := r.scan(ctx, f.withDefaults(), newest)
	if err != nil {
		return nil, "", err
	}
	slices.Reverse(out)
	return out, newest, nil
}

// withDefaults fills Limit and MaxScan when they are not set.
func (f Filter) withDefaults() Filter {
	if f.Limit == 0 {
		f.Limit = DefaultLimit
	}
	if f.MaxScan <= 0 {
		f.MaxScan = DefaultScan
	}
	return f
}

// stopID is the oldest stream ID worth reading for f.Since ("-": any).
func (f Filter) stopID() string {
	if !f.Since.IsZero() {
		if ms := f.Since.Add(-sinceSlack).UnixMilli(); ms > 0 {
			return strconv.FormatInt(ms, 10)
		}
	}
	return "-"
}

// scan reads the stream newest first from the entry start, page by page,
// until f.Limit entries match, or it reaches f.Since, or it has examined
// f.MaxScan entries; it returns the matching ones newest first.
func (r *Reader) scan(ctx context.Context, f Filter, start string) ([]policy.Record, error) {
	stop := f.stopID()
	var out []policy.Record
	for scanned := 0; len(out) < f.Limit && scanned < f.MaxScan; {
		n := min(page, f.MaxScan-scanned)
		if f.User == "" && f.ClientID == "" && f.Outcome == "" {
			n = min(n, f.Limit-len(out)) // unfiltered: no more than wanted
		}
		msgs, err := r.rdb.XRevRangeN(ctx, r.key, start, stop, int64(n)).Result()
		if err != nil {
			return nil, fmt.Errorf("read the decision log %s: %w", r.key, err)
		}
		scanned += len(msgs)
		for _, m := range msgs {
			if rec := decode(m); f.match(rec) {
				out = append(out, rec)
				if len(out) == f.Limit {
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
	return out, nil
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

// followBlock is how long one XREAD waits for new entries: the
// longest FollowDecisions takes to notice that ctx ended.
const followBlock = time.Second

// FollowDecisions delivers to deliver, one at a time and oldest first, the
// entries ReadDecisions(ctx, f) returns, then every matching entry added to
// the stream after them (XREAD BLOCK from the newest entry the read saw,
// so none is missed or delivered twice), until ctx ends (it returns
// ctx.Err()) or Redis fails (it returns the error).
func (r *Reader) FollowDecisions(ctx context.Context, f Filter, deliver func(policy.Record)) error {
	recs, last, err := r.readDecisions(ctx, f)
	if err != nil {
		return err
	}
	for _, rec := range recs {
		deliver(rec)
	}
	key := r.key
	for ctx.Err() == nil {
		streams, err := r.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{key, last}, Count: page, Block: followBlock}).Result()
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
				if rec := decode(m); f.match(rec) {
					deliver(rec)
				}
			}
		}
	}
	return ctx.Err()
}

// ParseSince reads a "since" bound as `decisions --since` and the admin
// API's `since` take it: a Go duration back from now (15m, 2h), a number
// of days (7d), or an RFC 3339 time. ok is false for anything else, or a
// duration that is not positive.
func ParseSince(v string, now time.Time) (t time.Time, ok bool) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, true
	}
	d, err := time.ParseDuration(v)
	if days, found := strings.CutSuffix(v, "d"); found && err != nil {
		if n, nerr := strconv.Atoi(days); nerr == nil && n <= 100000 {
			d, err = time.Duration(n)*24*time.Hour, nil
		}
	}
	if err != nil || d <= 0 {
		return time.Time{}, false
	}
	return now.Add(-d), true
}
