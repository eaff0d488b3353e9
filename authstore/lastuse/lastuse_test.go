package lastuse

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
)

// TestWriterRecordsAndReads: uses are written in batches, a repeated use
// within Refresh is not written again, the last use and the client ids of
// the last 24 h are read back per credential, and a use after Close is
// dropped.
func TestWriterRecordsAndReads(t *testing.T) {
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { rdb.Close() })
	w := NewWriter(rdb, Options{Linger: time.Millisecond})
	now := time.Now()
	fp, other := Fingerprint("$argon2id$a"), Fingerprint("$argon2id$b")
	if fp == other || len(fp) != 16 {
		t.Fatalf("fingerprints %q %q", fp, other)
	}
	for i := range 300 {
		w.Note("u", "$argon2id$a", fmt.Sprintf("c-%d", i%100), netip.MustParseAddr("10.0.0.1"), now.Add(time.Duration(i)*time.Millisecond))
	}
	w.Note("u", "$argon2id$b", "old", netip.MustParseAddr("10.0.0.9"), now.Add(-25*time.Hour))
	w.Close()
	w.Note("u", "$argon2id$a", "late", netip.Addr{}, now)
	if w.Stored() != 101 || w.Dropped() != 1 {
		t.Fatalf("stored %d, dropped %d; want 101 (100 client ids, then throttled) and 1", w.Stored(), w.Dropped())
	}
	got, err := Read(context.Background(), rdb, redisconn.NewKeys(""), "u", []string{fp, other, "none"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if l := got[fp]; l.ClientIDs24h != 100 || l.Addr != "10.0.0.1" || l.ClientID != "c-99" || l.Time.Unix() != now.Add(99*time.Millisecond).Unix() {
		t.Fatalf("the credential's uses: %+v", l)
	}
	if l := got[other]; l.ClientIDs24h != 0 || l.ClientID != "old" {
		t.Fatalf("a use older than 24 h: %+v", l)
	}
	if got["none"].Used() {
		t.Fatal("a credential never used reads as used")
	}
}

// BenchmarkNote: what an accepted CONNECT pays for its use on the hot
// path (Note: the remembered-use check, and for a use due a write the
// fingerprint of the stored hash and the queue), a new client id every
// time (queued) or the same (remembered). The writer's Redis refuses
// connections, so that its batches (off the hot path) cost next to
// nothing here.
func BenchmarkNote(b *testing.B) {
	redis.SetLogger(quiet{})
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	b.Cleanup(func() { rdb.Close() })
	stored := "$authproxy-sha256$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	addr := netip.MustParseAddr("10.0.0.1")
	for _, c := range []struct {
		name string
		id   func(i int) string
	}{{"new client id", func(i int) string { return fmt.Sprintf("dev:%d", i) }}, {"same client id", func(int) string { return "dev" }}} {
		b.Run(c.name, func(b *testing.B) {
			w := NewWriter(rdb, Options{QueueSize: 1 << 20, Logger: slog.New(slog.DiscardHandler)})
			defer w.Close()
			ids := make([]string, b.N)
			for i := range ids {
				ids[i] = c.id(i)
			}
			now := time.Now()
			b.ResetTimer()
			for i := range b.N {
				w.Note("dev", stored, ids[i], addr, now)
			}
		})
	}
}

// TestRememberedUses: a use noted again within Refresh is not queued
// again, one after Refresh is; a use is remembered through at least
// rememberedUses later ones and forgotten once two generations passed;
// a queued use carries the credential's fingerprint, never the stored
// hash.
func TestRememberedUses(t *testing.T) {
	// A Writer whose queue nobody reads: what is queued stays there.
	w := &Writer{o: Options{}.withDefaults(), queue: make(chan Use, 4*rememberedUses)}
	w.written.init()
	now := time.Now()
	addr := netip.MustParseAddr("::ffff:10.0.0.1")
	w.Note("u", "$h", "c", addr, now)
	w.Note("u", "$h", "c", addr, now.Add(DefaultRefresh-time.Second))
	if n := len(w.queue); n != 1 {
		t.Fatalf("%d uses queued, want 1 (the second within Refresh)", n)
	}
	if u := <-w.queue; u.Addr != "10.0.0.1" || u.Fingerprint != Fingerprint("$h") || u.ClientID != "c" || u.User != "u" {
		t.Fatalf("queued %+v", u)
	}
	w.Note("u", "$h", "c", addr, now.Add(DefaultRefresh))
	if n := len(w.queue); n != 1 {
		t.Fatalf("a use after Refresh: %d queued, want 1", n)
	}
	<-w.queue
	for i := range rememberedUses {
		w.Note("u", "$h", fmt.Sprint("other-", i), addr, now)
	}
	w.Note("u", "$h", "c", addr, now.Add(DefaultRefresh+time.Second))
	if n := len(w.queue); n != rememberedUses {
		t.Fatalf("%d queued, want %d: a use is remembered through rememberedUses later ones", n, rememberedUses)
	}
	for i := range rememberedUses {
		w.Note("u", "$h", fmt.Sprint("more-", i), addr, now)
	}
	w.Note("u", "$h", "c", addr, now.Add(DefaultRefresh+2*time.Second))
	if n := len(w.queue); n != 2*rememberedUses+1 {
		t.Fatalf("%d queued, want %d: after two generations the use is forgotten and queued again", n, 2*rememberedUses+1)
	}
}

// quiet is a go-redis logger that discards.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}
