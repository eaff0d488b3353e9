package tickets

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/internal/storetest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
)

// saltTrips counts the round trips (commands and pipelines) that touch a
// ticket salt key, leaving out a new connection's own commands.
type saltTrips struct{ n atomic.Int64 }

func touchesSalts(cmds ...redis.Cmder) bool {
	for _, c := range cmds {
		if strings.Contains(fmt.Sprint(c.Args()...), "tls-ticket-salt:") {
			return true
		}
	}
	return false
}

func (r *saltTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *saltTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if touchesSalts(cmd) {
			r.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (r *saltTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if touchesSalts(cmds...) {
			r.n.Add(1)
		}
		return next(ctx, cmds)
	}
}

// TestTicketSaltsFirstWriterWins: two replicas proposing salts for the
// same epochs read the same ones (the first proposal), a read-only epoch
// without a salt answers nil, a salt expires at its epoch's start plus
// keep, and all of it is one round trip.
func TestTicketSaltsFirstWriterWins(t *testing.T) {
	a, admin, srv := realSalts(t, Options{})
	rdb := storetest.Client(t, testenv.RedisURL(srv))
	rt := &saltTrips{}
	rdb.AddHook(rt)
	b := New(rdb, Options{Timeout: 300 * time.Millisecond})

	ctx := context.Background()
	const period, keep = time.Hour, 26 * time.Hour
	e := time.Now().Unix() / 3600
	epochs := []int64{e + 1, e, e - 1}
	got, _, err := a.TicketSalts(ctx, period, keep, epochs, [][]byte{salt32("salt a next"), salt32("salt a now"), nil})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[0], salt32("salt a next")) || !bytes.Equal(got[1], salt32("salt a now")) || got[2] != nil {
		t.Fatalf("first replica read %q", got)
	}
	again, _, err := b.TicketSalts(ctx, period, keep, epochs, [][]byte{salt32("salt b next"), salt32("salt b now"), salt32("salt b before")})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again[0], got[0]) || !bytes.Equal(again[1], got[1]) || !bytes.Equal(again[2], salt32("salt b before")) {
		t.Fatalf("second replica read %q, want the first one's salts (and its own where none was)", again)
	}
	if n := rt.n.Load(); n != 1 {
		t.Fatalf("%d round trips with salts, want one pipeline", n)
	}
	key := a.keys.TicketSaltKey(period, e)
	if want := "mqtt:tls-ticket-salt:3600000:"; !strings.HasPrefix(key, want) {
		t.Fatalf("key %s, want it under %s", key, want)
	}
	ttl, err := admin.PTTL(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	want := time.Until(time.Unix(e*3600, 0).Add(keep))
	if d := ttl - want; d < -2*time.Second || d > 2*time.Second {
		t.Fatalf("salt of the current epoch expires in %v, want %v (its start plus keep)", ttl, want)
	}
	// A proposal for an epoch already past its keep is not stored.
	old := e - 30
	if s, _, err := a.TicketSalts(ctx, period, keep, []int64{old}, [][]byte{salt32("too old")}); err != nil || s[0] != nil {
		t.Fatalf("expired epoch: %q, %v", s, err)
	}
	if _, _, err := a.TicketSalts(ctx, period, keep, epochs, nil); err == nil {
		t.Fatal("proposals of another length accepted")
	}

	srv.Stop()
	// With Redis stopped the call fails; it does not hang (the wait is
	// many times the store's timeout).
	failed := make(chan error, 1)
	go func() {
		_, _, err := a.TicketSalts(ctx, period, keep, epochs, make([][]byte, 3))
		failed <- err
	}()
	select {
	case err := <-failed:
		if err == nil {
			t.Fatal("no error with Redis stopped")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer within 10 s with Redis stopped: the store's timeout did not bound the call")
	}
}

// TestTicketSaltsOnCluster: the salts of consecutive epochs live in
// different slots; the pipeline is split per node and answers as on one
// server.
func TestTicketSaltsOnCluster(t *testing.T) {
	nodes := testenv.RedisCluster(t, 3, 0)
	rdb := storetest.Client(t, "redis://"+nodes[0].Addr()+"/0?cluster=true")
	s := New(rdb, Options{Timeout: 2 * time.Second})
	ctx := context.Background()
	var epochs []int64
	var props [][]byte
	e := time.Now().Unix() / 60
	for i := range int64(8) {
		epochs = append(epochs, e-i)
		props = append(props, salt32(string(rune('a'+i))))
	}
	got, _, err := s.TicketSalts(ctx, time.Minute, time.Hour, epochs, props)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if !bytes.Equal(got[i], props[i]) {
			t.Fatalf("epoch %d: %q, want %q", epochs[i], got[i], props[i])
		}
	}
}

// salt32 is a salt of SaltSize bytes that starts with s.
func salt32(s string) []byte {
	b := make([]byte, SaltSize)
	copy(b, s)
	return b
}

// beforeEval runs fn (once) before the first pipeline with an EVAL goes
// to Redis: another replica acting between this one's read and its
// replacement.
type beforeEval struct {
	once sync.Once
	fn   func()
}

func (h *beforeEval) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *beforeEval) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *beforeEval) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if c.Name() == "eval" || c.Name() == "evalsha" {
				h.once.Do(h.fn)
				break
			}
		}
		return next(ctx, cmds)
	}
}

// TestTicketSaltsReplacesPlantedOnes: salts written into Redis by someone
// else (of another length, without expiry, expiring later than their
// epoch's window) are not adopted: they are replaced with a fresh salt
// that expires properly, counted and logged. A replica that read the
// planted salts but replaces after another one did adopts the other's
// replacement: the replicas agree on one salt per epoch, and each planted
// salt is replaced once. Valid salts (one expiring within SaltSkew
// past its window among them) are kept, and an epoch after the next one
// is never answered.
func TestTicketSaltsReplacesPlantedOnes(t *testing.T) {
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	a, admin, srv := realSalts(t, Options{Logger: log})
	rdb := storetest.Client(t, testenv.RedisURL(srv))
	b := New(rdb, Options{Timeout: 2 * time.Second, Logger: log})

	ctx := context.Background()
	const period, keep = time.Hour, 26 * time.Hour
	e := time.Now().Unix() / 3600
	window := func(ep int64) time.Duration { return time.Until(time.Unix(ep*3600, 0).Add(keep)) }
	planted := map[int64][]byte{
		e + 1: []byte("known salt"),      // 10 bytes, proper expiry
		e:     salt32("no expiry"),       // no TTL
		e - 1: salt32("too far ahead"),   // expires two hours past its window
		e - 2: salt32("valid"),           // proper expiry: kept
		e - 3: salt32("clock a bit off"), // 30 s past its window: kept (SaltSkew)
		e + 2: salt32("planted early"),   // after the next epoch: never answered
	}
	ttl := map[int64]time.Duration{e + 1: window(e + 1), e: 0, e - 1: window(e-1) + 2*time.Hour, e - 2: window(e - 2),
		e - 3: window(e-3) + 30*time.Second, e + 2: window(e + 2)}
	for ep, v := range planted {
		if err := admin.Set(ctx, a.keys.TicketSaltKey(period, ep), v, ttl[ep]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	epochs := []int64{e + 1, e, e - 1, e - 2, e - 3}
	bad := map[int64]bool{e + 1: true, e: true, e - 1: true}

	// b reads the planted salts; before its replacements reach Redis, a
	// reads and replaces them all.
	var fromA [][]byte
	var replacedA int
	rdb.AddHook(&beforeEval{fn: func() {
		var err error
		fromA, replacedA, err = a.TicketSalts(ctx, period, keep, epochs, make([][]byte, len(epochs)))
		if err != nil {
			t.Error(err)
		}
	}})
	known := salt32("b knows this one for e+1")
	fromB, replacedB, err := b.TicketSalts(ctx, period, keep, epochs, [][]byte{known, nil, nil, nil, nil})
	if err != nil {
		t.Fatal(err)
	}
	if fromA == nil {
		t.Fatal("b replaced nothing: the planted salts were adopted")
	}
	if replacedA != 3 || replacedB != 0 {
		t.Errorf("replaced: a %d, b %d; want 3 by a (the first) and none by b", replacedA, replacedB)
	}
	for i, ep := range epochs {
		if !bytes.Equal(fromA[i], fromB[i]) {
			t.Errorf("epoch %+d: the replicas disagree: %x and %x", ep-e, fromA[i], fromB[i])
		}
		if len(fromB[i]) != SaltSize {
			t.Errorf("epoch %+d: salt %x", ep-e, fromB[i])
		}
		if got := bytes.Equal(fromB[i], planted[ep]); got == bad[ep] {
			t.Errorf("epoch %+d: planted salt adopted %v, want %v", ep-e, got, !bad[ep])
		}
		stored, err := admin.Get(ctx, a.keys.TicketSaltKey(period, ep)).Bytes()
		if err != nil || !bytes.Equal(stored, fromB[i]) {
			t.Errorf("epoch %+d: Redis holds %x %v, not the salt answered", ep-e, stored, err)
		}
		if pttl := admin.PTTL(ctx, a.keys.TicketSaltKey(period, ep)).Val(); bad[ep] && (pttl <= 0 || pttl > window(ep)+time.Second) {
			t.Errorf("epoch %+d: the replacement expires in %v, want within its window, %v", ep-e, pttl, window(ep))
		}
	}

	// Stable: asked again, each answers the same salts and replaces none.
	for name, s := range map[string]*Salts{"a": a, "b": b} {
		again, n, err := s.TicketSalts(ctx, period, keep, epochs, make([][]byte, len(epochs)))
		if err != nil || n != 0 {
			t.Fatalf("%s asked again: %d replaced, %v", name, n, err)
		}
		for i := range epochs {
			if !bytes.Equal(again[i], fromB[i]) {
				t.Errorf("%s asked again: epoch %+d changed", name, epochs[i]-e)
			}
		}
	}

	// An epoch after the next one: not answered, not replaced, no proposal
	// stored.
	got, n, err := a.TicketSalts(ctx, period, keep, []int64{e + 2, e + 3}, [][]byte{salt32("p2"), salt32("p3")})
	if err != nil || n != 0 || got[0] != nil || got[1] != nil {
		t.Fatalf("epochs +2 and +3: %x, %d replaced, %v", got, n, err)
	}
	if v, _ := admin.Get(ctx, a.keys.TicketSaltKey(period, e+2)).Bytes(); !bytes.Equal(v, planted[e+2]) {
		t.Errorf("epoch +2 was touched: %x", v)
	}
	if admin.Exists(ctx, a.keys.TicketSaltKey(period, e+3)).Val() != 0 {
		t.Error("a proposal for epoch +3 was stored")
	}

	out := logs.String()
	for _, want := range []string{"10 bytes, not 32", "no expiry", "past its epoch's window"} {
		if !strings.Contains(out, want) || !strings.Contains(out, "TLS ticket salt in Redis replaced") {
			t.Errorf("no warning with %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "TLS ticket salt in Redis replaced"); n != 3 {
		t.Errorf("%d warnings, want 3:\n%s", n, out)
	}
	if strings.Contains(out, "known salt") || strings.Contains(out, "too far ahead") {
		t.Errorf("a salt in the log:\n%s", out)
	}

	// A proposal of another length is a caller's bug.
	if _, _, err := a.TicketSalts(ctx, period, keep, []int64{e}, [][]byte{[]byte("short")}); err == nil {
		t.Error("a proposal of 5 bytes was accepted")
	}
}

// TestTicketSaltsReplacedConcurrently: replicas that all find the same
// planted salts at once replace each exactly once between them and answer
// the same salts.
func TestTicketSaltsReplacedConcurrently(t *testing.T) {
	a, admin, srv := realSalts(t, Options{Logger: slog.New(slog.DiscardHandler)})
	stores := []*Salts{a}
	for range 3 {
		rdb := storetest.Client(t, testenv.RedisURL(srv))
		stores = append(stores, New(rdb, Options{Timeout: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)}))
	}
	ctx := context.Background()
	const period, keep = time.Hour, 26 * time.Hour
	e := time.Now().Unix() / 3600
	epochs := []int64{e + 1, e, e - 1}
	admin.Set(ctx, a.keys.TicketSaltKey(period, e+1), "short", time.Hour)
	admin.Set(ctx, a.keys.TicketSaltKey(period, e), salt32("forever"), 0)
	admin.Set(ctx, a.keys.TicketSaltKey(period, e-1), salt32("a week"), 7*24*time.Hour)

	answers := make([][][]byte, len(stores))
	counts := make([]int, len(stores))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, s := range stores {
		wg.Go(func() {
			<-start
			var err error
			if answers[i], counts[i], err = s.TicketSalts(ctx, period, keep, epochs, make([][]byte, len(epochs))); err != nil {
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	total := 0
	for i := range stores {
		total += counts[i]
		for j := range epochs {
			if len(answers[i][j]) != SaltSize || !bytes.Equal(answers[i][j], answers[0][j]) {
				t.Errorf("store %d, epoch %+d: %x, store 0: %x", i, epochs[j]-e, answers[i][j], answers[0][j])
			}
		}
	}
	if total != 3 {
		t.Errorf("%d replacements in all (%v), want one per planted salt", total, counts)
	}
}

// TestTicketSaltsKnownSaltWithWrongExpiry: a replica that proposes the
// salt it knows for an epoch replaces an invalid salt with it, unless the
// invalid one is that very salt (its expiry removed since): then with a
// fresh one.
func TestTicketSaltsKnownSaltWithWrongExpiry(t *testing.T) {
	a, admin, _ := realSalts(t, Options{Logger: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	const period, keep = time.Hour, 26 * time.Hour
	e := time.Now().Unix() / 3600
	known, other := salt32("known"), salt32("known too")
	admin.Set(ctx, a.keys.TicketSaltKey(period, e), known, 0)
	admin.Set(ctx, a.keys.TicketSaltKey(period, e+1), "1234", 0)
	got, n, err := a.TicketSalts(ctx, period, keep, []int64{e, e + 1}, [][]byte{known, other})
	if err != nil || n != 2 {
		t.Fatalf("%d replaced, %v", n, err)
	}
	if len(got[0]) != SaltSize || bytes.Equal(got[0], known) {
		t.Errorf("the known salt without expiry was kept: %x", got[0])
	}
	if !bytes.Equal(got[1], other) {
		t.Errorf("epoch +1: %x, want the salt proposed", got[1])
	}
}

// realSalts are salts in a real redis-server.
func realSalts(t *testing.T, o Options) (*Salts, *redis.Client, *testenv.Server) {
	t.Helper()
	rdb, admin, srv := storetest.Redis(t)
	if o.Timeout == 0 {
		o.Timeout = 300 * time.Millisecond
	}
	return New(rdb, o), admin, srv
}
