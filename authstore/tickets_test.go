package authstore

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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
	a, admin, srv := realStore(t, Options{})
	rdb, err := NewClient(testenv.RedisURL(srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	rt := &saltTrips{}
	rdb.AddHook(rt)
	b := New(rdb, Options{Timeout: 300 * time.Millisecond})

	ctx := context.Background()
	const period, keep = time.Hour, 26 * time.Hour
	e := time.Now().Unix() / 3600
	epochs := []int64{e + 1, e, e - 1}
	got, err := a.TicketSalts(ctx, period, keep, epochs, [][]byte{[]byte("salt a next"), []byte("salt a now"), nil})
	if err != nil {
		t.Fatal(err)
	}
	if string(got[0]) != "salt a next" || string(got[1]) != "salt a now" || got[2] != nil {
		t.Fatalf("first replica read %q", got)
	}
	again, err := b.TicketSalts(ctx, period, keep, epochs, [][]byte{[]byte("salt b next"), []byte("salt b now"), []byte("salt b before")})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again[0], got[0]) || !bytes.Equal(again[1], got[1]) || string(again[2]) != "salt b before" {
		t.Fatalf("second replica read %q, want the first one's salts (and its own where none was)", again)
	}
	if n := rt.n.Load(); n != 1 {
		t.Fatalf("%d round trips with salts, want one pipeline", n)
	}
	key := a.TicketSaltKey(period, e)
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
	if s, err := a.TicketSalts(ctx, period, keep, []int64{old}, [][]byte{[]byte("too old")}); err != nil || s[0] != nil {
		t.Fatalf("expired epoch: %q, %v", s, err)
	}
	if _, err := a.TicketSalts(ctx, period, keep, epochs, nil); err == nil {
		t.Fatal("proposals of another length accepted")
	}

	srv.Stop()
	start := time.Now()
	if _, err := a.TicketSalts(ctx, period, keep, epochs, make([][]byte, 3)); err == nil {
		t.Fatal("no error with Redis stopped")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v with Redis stopped, past the store's timeout", d)
	}
}

// TestTicketSaltsOnCluster: the salts of consecutive epochs live in
// different slots; the pipeline is split per node and answers as on one
// server.
func TestTicketSaltsOnCluster(t *testing.T) {
	nodes := testenv.RedisCluster(t, 3, 0)
	rdb, err := NewClient("redis://" + nodes[0].Addr() + "/0?cluster=true")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	s := New(rdb, Options{Timeout: 2 * time.Second})
	ctx := context.Background()
	var epochs []int64
	var props [][]byte
	e := time.Now().Unix() / 60
	for i := range int64(8) {
		epochs = append(epochs, e-i)
		props = append(props, []byte{byte(i)})
	}
	got, err := s.TicketSalts(ctx, time.Minute, time.Hour, epochs, props)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if !bytes.Equal(got[i], props[i]) {
			t.Fatalf("epoch %d: %q, want %q", epochs[i], got[i], props[i])
		}
	}
}
