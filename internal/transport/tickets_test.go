package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/pki"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
)

// memSalts is a TicketSaltStore in memory with Redis's SET NX semantics
// and an outage switch; the proxy's tests run the same scheme on a real
// redis-server (authstore.Store).
type memSalts struct {
	mu    sync.Mutex
	m     map[int64][]byte
	down  bool
	calls int
	asked []int64 // the epochs of the last call
}

func (s *memSalts) TicketSalts(_ context.Context, _, _ time.Duration, epochs []int64, proposals [][]byte) ([][]byte, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	s.asked = slices.Clone(epochs)
	if s.down {
		return nil, 0, errors.New("connection refused")
	}
	out := make([][]byte, len(epochs))
	for i, e := range epochs {
		if _, ok := s.m[e]; !ok && proposals[i] != nil {
			s.m[e] = bytes.Clone(proposals[i])
		}
		out[i] = s.m[e]
	}
	return out, 0, nil
}

func (s *memSalts) set(f func(*memSalts)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

var testSecret = []byte("0123456789abcdef0123456789abcdef-test")

func newKeys(secret []byte, store TicketSaltStore, log *slog.Logger) *ticketKeys {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return newTicketKeys(time.Hour, 25, secret, store, log)
}

// at is a moment inside epoch e of one-hour epochs.
func at(e int64) time.Time { return time.Unix(e*3600+1800, 0) }

// TestTicketKeysReplicasAgree: replicas with the same secret and store seal
// with the same key and accept the next epoch's key before it starts; one
// with another secret derives other keys from the same salts.
func TestTicketKeysReplicasAgree(t *testing.T) {
	store := &memSalts{m: map[int64][]byte{}}
	a, b := newKeys(testSecret, store, nil), newKeys(testSecret, store, nil)
	other := newKeys([]byte("another secret of at least 32 bytes!!"), store, nil)
	ctx := context.Background()
	const e = 490000
	// An empty store: a local key first, a fresh salt a refresh later.
	warm := a.refresh(ctx, at(e))
	if st := a.state(); st.SealingShared || !st.StoreOK || len(store.m) != 0 {
		t.Fatalf("first refresh on an empty store: %+v, %d salts", st, len(store.m))
	}
	ka := a.refresh(ctx, at(e).Add(time.Minute))
	kb, ko := b.refresh(ctx, at(e).Add(10*time.Minute)), other.refresh(ctx, at(e))
	if !slices.Contains(ka, warm[0]) {
		t.Fatal("the local key of the first refresh is no longer accepted")
	}
	if ka[0] != kb[0] {
		t.Fatal("two replicas with the same secret seal with different keys")
	}
	if ko[0] == ka[0] || slices.Contains(ka, ko[0]) {
		t.Fatal("a replica with another secret derived a key the others accept")
	}
	if !a.state().SealingShared || a.state().Mode != "shared" || !a.state().StoreOK {
		t.Fatalf("state %+v", a.state())
	}
	if len(ka) != 3 || len(store.m) != 2 {
		t.Fatalf("%d keys accepted, %d salts stored; want the current and the next (and the local key)", len(ka), len(store.m))
	}
	// The next epoch's key is accepted already: a replica whose clock is
	// ahead seals with it before the others rotate.
	next := b.refresh(ctx, at(e+1))
	if next[0] == ka[0] || !slices.Contains(ka, next[0]) {
		t.Fatalf("next epoch's sealing key (in %d keys accepted before) not pre-accepted", len(ka))
	}
	if k := deriveTicketKey(testSecret, store.m[e], e); k != ka[0] {
		t.Fatal("the sealing key is not HKDF(secret, salt of the epoch, epoch)")
	}
	if deriveTicketKey(testSecret, store.m[e], e+1) == ka[0] {
		t.Fatal("the key is not bound to its epoch")
	}
}

// TestTicketKeysRotationWindow: a new key seals each epoch; a key is
// accepted for TicketKeysKept epochs (the current one included), then
// dropped.
func TestTicketKeysRotationWindow(t *testing.T) {
	for _, shared := range []bool{true, false} {
		var store TicketSaltStore
		if shared {
			store = &memSalts{m: map[int64][]byte{}}
		}
		k := newKeys(testSecret, store, nil)
		k.kept = 3
		ctx := context.Background()
		const e = 490000
		first := k.refresh(ctx, at(e))[0]
		var seals [][32]byte
		for i := int64(1); i <= 3; i++ {
			keys := k.refresh(ctx, at(e+i))
			if keys[0] == first || slices.Contains(seals, keys[0]) {
				t.Fatalf("shared=%v: epoch +%d seals with an earlier key", shared, i)
			}
			seals = append(seals, keys[0])
			if got := slices.Contains(keys, first); got != (i < 3) {
				t.Fatalf("shared=%v: epoch +%d: first key accepted %v, want %v", shared, i, got, i < 3)
			}
		}
		if st := k.state(); st.Epoch != e+3 || st.SealingShared != shared || slices.Min(st.Accepted) != e+1 {
			t.Fatalf("shared=%v: state %+v", shared, st)
		}
	}
}

// TestTicketKeysStoreOutage: while the store does not answer, known keys
// keep working and an epoch without a shared key gets a local one; when
// the store answers again the replica seals with the shared key and
// still accepts its local one. A replica that started during the outage
// converges too.
func TestTicketKeysStoreOutage(t *testing.T) {
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	store := &memSalts{m: map[int64][]byte{}}
	a := newKeys(testSecret, store, log)
	ctx := context.Background()
	const e = 490000
	_ = a.refresh(ctx, at(e).Add(-time.Minute))
	before := a.refresh(ctx, at(e))
	if !a.state().SealingShared || len(before) != 3 {
		t.Fatalf("before the outage: %+v", a.state())
	}

	store.set(func(s *memSalts) { s.down = true })
	during := a.refresh(ctx, at(e).Add(time.Minute))
	if !slices.Equal(during, before) {
		t.Fatal("the keys changed during the outage within the epoch")
	}
	// The next epoch's key was fetched before the outage: still shared.
	next := a.refresh(ctx, at(e+1))
	if !slices.Contains(before, next[0]) || next[0] == before[0] || !a.state().SealingShared || a.state().StoreOK {
		t.Fatalf("epoch +1 during the outage: state %+v", a.state())
	}
	late := newKeys(testSecret, store, log) // started during the outage
	lateKeys := late.refresh(ctx, at(e+1))
	if slices.Contains(next, lateKeys[0]) || late.state().SealingShared {
		t.Fatal("a replica without the store sealed with a key the others know")
	}
	// Epoch +2 is not known to a: a local key.
	local := a.refresh(ctx, at(e+2))
	if a.state().SealingShared || !slices.Contains(local, next[0]) || !slices.Contains(local, before[0]) {
		t.Fatalf("epoch +2 during the outage: state %+v", a.state())
	}
	if n := strings.Count(logs.String(), "Redis unavailable"); n != 2 {
		t.Fatalf("%d outage warnings, want one per replica:\n%s", n, logs.String())
	}

	store.set(func(s *memSalts) { s.down = false })
	// Nobody had a salt for epoch +2: a's next refresh finds none, the
	// one after proposes it; late converges on it.
	_ = a.refresh(ctx, at(e+2).Add(time.Minute))
	_ = late.refresh(ctx, at(e+2).Add(time.Minute))
	after := a.refresh(ctx, at(e+2).Add(2*time.Minute))
	lateAfter := late.refresh(ctx, at(e+2).Add(3*time.Minute))
	if after[0] == local[0] || !a.state().SealingShared || !slices.Contains(after, local[0]) {
		t.Fatalf("after the outage: sealing shared %v, local key still accepted %v", a.state().SealingShared, slices.Contains(after, local[0]))
	}
	if lateAfter[0] != after[0] || !slices.Contains(lateAfter, next[0]) || !slices.Contains(lateAfter, lateKeys[0]) {
		t.Fatal("the replica started during the outage did not converge (same sealing key, the others' keys and its own accepted)")
	}
	if !strings.Contains(logs.String(), "Redis answers again") {
		t.Fatalf("no recovery line:\n%s", logs.String())
	}
}

// TestTicketKeysStoreLosesData: a store that lost its salts (a restart
// without persistence, a failover to an empty replica) is filled again
// with the salts the replicas know, so a replica started afterwards
// resumes sessions sealed before.
func TestTicketKeysStoreLosesData(t *testing.T) {
	store := &memSalts{m: map[int64][]byte{}}
	a := newKeys(testSecret, store, nil)
	ctx := context.Background()
	const e = 490000
	_ = a.refresh(ctx, at(e-1))
	_ = a.refresh(ctx, at(e-1).Add(time.Minute))
	before := a.refresh(ctx, at(e))
	if !a.state().SealingShared {
		t.Fatalf("state %+v", a.state())
	}
	store.set(func(s *memSalts) { s.m = map[int64][]byte{} })
	// A new replica asks first: it finds nothing and proposes nothing yet.
	b := newKeys(testSecret, store, nil)
	_ = b.refresh(ctx, at(e).Add(30*time.Second))
	again := a.refresh(ctx, at(e).Add(time.Minute))
	if again[0] != before[0] {
		t.Fatal("the sealing key changed after the store lost its data")
	}
	for _, k := range before {
		if !slices.Contains(again, k) {
			t.Fatal("a key is no longer accepted after the store lost its data")
		}
	}
	fresh := b.refresh(ctx, at(e).Add(2*time.Minute))
	if fresh[0] != before[0] {
		t.Fatal("the new replica seals with another key: the salts were not put back before it made its own")
	}
	shared := 0
	for _, k := range a.keys {
		if k.salt != nil {
			shared++
			if !slices.Contains(fresh, k.key) {
				t.Fatalf("the new replica does not accept the shared key of epoch %d, sealed before the store lost its data", k.epoch)
			}
		}
	}
	if shared != 3 {
		t.Fatalf("%d shared keys, want epochs -1, 0 and +1", shared)
	}
}

// TestTicketKeysRefreshSchedule: the keys are refreshed at each epoch's
// start, and between, in shared mode, often enough to converge.
func TestTicketKeysRefreshSchedule(t *testing.T) {
	k := newKeys(testSecret, &memSalts{m: map[int64][]byte{}}, nil)
	now := time.Unix(490000*3600+3590, 0) // 10 s before an epoch
	k.storeOK = true
	if d := k.next(now, 5*time.Minute); d != 10*time.Second {
		t.Fatalf("next refresh in %v, want at the epoch's start", d)
	}
	if d := k.next(now.Add(-time.Hour/2), 5*time.Minute); d != 5*time.Minute {
		t.Fatalf("next refresh in %v, want the refresh interval", d)
	}
	k.missed[490001] = true
	if d := k.next(now.Add(-time.Hour/2), 5*time.Minute); d != retryMissed {
		t.Fatalf("a salt to propose: next refresh in %v, want %v", d, retryMissed)
	}
	k.storeOK = false
	if d := k.next(now.Add(-time.Hour/2), 5*time.Minute); d != retryUnreachable {
		t.Fatalf("store unreachable: next refresh in %v, want %v", d, retryUnreachable)
	}
	local := newKeys(nil, nil, nil)
	if d := local.next(now.Add(-time.Hour/2), 5*time.Minute); d != time.Hour/2+10*time.Second {
		t.Fatalf("local keys: next refresh in %v, want at the epoch's start", d)
	}
}

// TestNewTLSTicketOptions: a short secret and a secret with a key file are
// refused; a terminator reports its ticket mode.
func TestNewTLSTicketOptions(t *testing.T) {
	ca, _ := pki.NewCA("ca")
	srv, _ := ca.Server("localhost")
	files, err := pki.WriteFiles(t.TempDir(), ca, srv)
	if err != nil {
		t.Fatal(err)
	}
	base := TLSConfig{CertFile: files.ServerCert, KeyFile: files.ServerKey, ReloadInterval: -1}
	short := base
	short.TicketSecret, short.TicketStore = []byte("short"), &memSalts{m: map[int64][]byte{}}
	if _, err := NewTLS(short, nil); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Fatalf("short secret: %v", err)
	}
	both := base
	both.TicketSecret, both.TicketKeyFile = testSecret, files.ServerKey
	if _, err := NewTLS(both, nil); err == nil {
		t.Fatal("a secret and a key file together were accepted")
	}
	for _, c := range []struct {
		store TicketSaltStore
		mode  string
	}{{nil, "local"}, {&memSalts{m: map[int64][]byte{}}, "shared"}} {
		cfg := base
		cfg.TicketSecret, cfg.TicketStore = testSecret, c.store
		s, err := NewTLS(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if st := s.TicketKeys(); st.Mode != c.mode || len(st.Accepted) == 0 {
			t.Errorf("state %+v, want mode %s", st, c.mode)
		}
		s.Close()
	}
}

// TestSharedKeysResumeAcrossTerminators: two terminators with the same
// secret and store resume each other's TLS 1.2 and 1.3 sessions; a third
// with per-process keys does not.
func TestSharedKeysResumeAcrossTerminators(t *testing.T) {
	ca, _ := pki.NewCA("ca")
	srv, _ := ca.Server("localhost")
	files, err := pki.WriteFiles(t.TempDir(), ca, srv)
	if err != nil {
		t.Fatal(err)
	}
	store := &memSalts{m: map[int64][]byte{}}
	mk := func(shared bool) *TLS {
		cfg := TLSConfig{CertFile: files.ServerCert, KeyFile: files.ServerKey, ReloadInterval: -1, TicketKeyRefresh: 10 * time.Millisecond}
		if shared {
			cfg.TicketSecret, cfg.TicketStore = testSecret, store
		}
		s, err := NewTLS(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	a, b, alone := mk(true), mk(true), mk(false)
	testenv.WaitFor(t, 10*time.Second, "both terminators sealing with shared keys", func() bool {
		return a.TicketKeys().SealingShared && b.TicketKeys().SealingShared
	})
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cache := &recordingCache{}
		client := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", MinVersion: v, MaxVersion: v, ClientSessionCache: cache}
		if hb := dialOnce(t, a.config, client); hb.resumed {
			t.Fatal("first handshake resumed")
		}
		if hb := dialOnce(t, b.config, client); !hb.resumed {
			t.Fatalf("%s: a session made on one terminator did not resume on the other", tls.VersionName(v))
		}
		if hb := dialOnce(t, alone.config, client); hb.resumed {
			t.Fatalf("%s: resumed on a terminator with per-process keys", tls.VersionName(v))
		}
	}
}

// TestTicketKeysAskKeptAndNextOnly: a refresh asks the store for the kept
// epochs and the next one, never a later one (the store refuses to
// answer those: a salt stored early for one is never adopted).
func TestTicketKeysAskKeptAndNextOnly(t *testing.T) {
	store := &memSalts{m: map[int64][]byte{}}
	k := newKeys(testSecret, store, nil)
	const e = 490000
	for _, now := range []time.Time{at(e), at(e).Add(-1799 * time.Second), at(e).Add(1799 * time.Second)} {
		_ = k.refresh(context.Background(), now)
		var want []int64
		for ep := int64(e + 1); ep > e-25; ep-- {
			want = append(want, ep)
		}
		if !slices.Equal(store.asked, want) {
			t.Fatalf("at %v asked for %v, want %d..%d", now, store.asked, e-24, e+1)
		}
	}
}

// TestTicketKeysWrongLengthSaltNotUsed: a salt of another length from the
// store (which replaces them; this one does not) seals nothing: a local
// key instead.
func TestTicketKeysWrongLengthSaltNotUsed(t *testing.T) {
	const e = 490000
	var logs strings.Builder
	store := &memSalts{m: map[int64][]byte{e: []byte("known salt"), e + 1: bytes.Repeat([]byte{7}, 64)}}
	k := newKeys(testSecret, store, slog.New(slog.NewTextHandler(&logs, nil)))
	keys := k.refresh(context.Background(), at(e))
	if k.state().SealingShared || slices.Contains(keys, deriveTicketKey(testSecret, store.m[e], e)) ||
		slices.Contains(keys, deriveTicketKey(testSecret, store.m[e+1], e+1)) {
		t.Fatalf("a salt of the wrong length was used: %+v", k.state())
	}
	if !strings.Contains(logs.String(), "wrong length") {
		t.Errorf("no warning:\n%s", logs.String())
	}
}

// TestTicketKeysPlantedSaltsOnRedis: on a real Redis, salts planted by
// someone else for the current, next and previous epochs (of the wrong
// length, without expiry, expiring hours after their window) are replaced
// and counted, not adopted; two replicas that start on them derive the
// same keys, from the replacements.
func TestTicketKeysPlantedSaltsOnRedis(t *testing.T) {
	srv := testenv.Redis(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { admin.Close() })
	var logs testenv.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	replica := func() *ticketKeys {
		rdb, err := redisconn.NewClient(testenv.RedisURL(srv))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rdb.Close() })
		return newKeys(testSecret, authstore.New(rdb, authstore.Options{Timeout: 2 * time.Second, Logger: log}), log)
	}
	a, b := replica(), replica()
	ctx := context.Background()
	now := time.Now()
	e := a.epochOf(now)
	keyOf := func(ep int64) string { return "mqtt:tls-ticket-salt:3600000:" + strconv.FormatInt(ep, 10) }
	window := func(ep int64) time.Duration { return a.startOf(ep).Add(26 * time.Hour).Sub(now) }
	planted := map[int64][]byte{e + 1: []byte("known salt"), e: bytes.Repeat([]byte("k"), 32), e - 1: bytes.Repeat([]byte("h"), 32)}
	for ep, ttl := range map[int64]time.Duration{e + 1: window(e + 1), e: 0, e - 1: window(e-1) + 3*time.Hour} {
		if err := admin.Set(ctx, keyOf(ep), planted[ep], ttl).Err(); err != nil {
			t.Fatal(err)
		}
	}
	ka, kb := a.refresh(ctx, now), b.refresh(ctx, now)
	sa, sb := a.state(), b.state()
	if !sa.SealingShared || !sb.SealingShared || ka[0] != kb[0] {
		t.Fatalf("the replicas do not seal with one shared key: %+v %+v", sa, sb)
	}
	if sa.SaltsReplaced+sb.SaltsReplaced != 3 {
		t.Errorf("salts replaced: %d and %d, want 3 in all", sa.SaltsReplaced, sb.SaltsReplaced)
	}
	for _, ep := range []int64{e - 1, e, e + 1} {
		stored, err := admin.Get(ctx, keyOf(ep)).Bytes()
		if err != nil || len(stored) != TicketSaltSize || bytes.Equal(stored, planted[ep]) {
			t.Fatalf("epoch %+d: Redis holds %x %v", ep-e, stored, err)
		}
		want := deriveTicketKey(testSecret, stored, ep)
		if ep == e && ka[0] != want {
			t.Error("the sealing key is not the current epoch's replacement's")
		}
		if !slices.Contains(ka, want) || !slices.Contains(kb, want) {
			t.Errorf("epoch %+d: the key of the replacement is not accepted by both", ep-e)
		}
		if len(planted[ep]) == TicketSaltSize && (slices.Contains(ka, deriveTicketKey(testSecret, planted[ep], ep)) ||
			slices.Contains(kb, deriveTicketKey(testSecret, planted[ep], ep))) {
			t.Errorf("epoch %+d: the planted salt's key is accepted", ep-e)
		}
	}
	if n := strings.Count(logs.String(), "TLS ticket salt in Redis replaced"); n != 3 {
		t.Errorf("%d warnings, want 3:\n%s", n, logs.String())
	}
}
