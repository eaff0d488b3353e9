package authstore

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

func from(r policy.Request, addr string) policy.Request {
	r.RemoteAddr = netip.MustParseAddr(addr)
	return r
}

// TestFailedAttemptLimits: past the per-user limit, CONNECTs for the user
// are refused without a hash, except from an address the user succeeded
// from (so guesses from elsewhere cannot lock a device out of its usual
// address); past the per-address limit, CONNECTs from the address are
// refused; a success resets the user's count; two stores (two replicas)
// share the counts through Redis.
func TestFailedAttemptLimits(t *testing.T) {
	srv := testenv.Redis(t)
	open := func() *Store {
		rdb, err := NewClient(testenv.RedisURL(srv))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rdb.Close() })
		return New(rdb, Options{Timeout: 500 * time.Millisecond, FailLimitUser: Limit{3, time.Minute}, FailLimitIP: Limit{5, time.Minute}})
	}
	a, b := open(), open()
	ctx := testenv.Context(t)
	if err := a.SetUser(ctx, "dev", Update{Password: ptr("right")}); err != nil {
		t.Fatal(err)
	}
	home, attacker, other := "192.0.2.10", "198.51.100.7", "203.0.113.9"
	// The device connects from home once: home is a known address.
	if d, err := a.Authenticate(ctx, from(req("dev", "right"), home)); err != nil || !d.Allowed() {
		t.Fatal(d, err)
	}
	// Three guesses, alternating replicas: the user's limit is reached.
	for i := range 3 {
		s := []*Store{a, b}[i%2]
		if d, err := s.Authenticate(ctx, from(req("dev", "guess"), attacker)); err != nil || d.Outcome != policy.BadCredentials {
			t.Fatalf("guess %d: %+v %v", i, d, err)
		}
	}
	hashes := a.HashCount() + b.HashCount()
	for _, s := range []*Store{a, b} {
		d, err := s.Authenticate(ctx, from(req("dev", "right"), other))
		if err != nil || d.Outcome != policy.TooManyFailures || d.Code() != 0x9F {
			t.Fatalf("right password from an unknown address past the limit: %+v %v", d, err)
		}
	}
	if a.HashCount()+b.HashCount() != hashes {
		t.Fatal("a refusal past the limit computed a hash")
	}
	// From home the right password still works, and resets the count.
	if d, err := b.Authenticate(ctx, from(req("dev", "right"), home)); err != nil || !d.Allowed() {
		t.Fatalf("right password from home: %+v %v", d, err)
	}
	if d, err := a.Authenticate(ctx, from(req("dev", "right"), other)); err != nil || !d.Allowed() {
		t.Fatalf("after the reset: %+v %v", d, err)
	}
	// The attacker's address reaches its own limit (5 with the 3 above),
	// for every user, unknown ones included.
	for i := range 2 {
		if d, _ := a.Authenticate(ctx, from(req("nobody", "x"), attacker)); d.Outcome != policy.BadCredentials {
			t.Fatalf("guess %d: %+v", i, d)
		}
	}
	if d, err := b.Authenticate(ctx, from(req("dev", "right"), attacker)); err != nil || d.Outcome != policy.TooManyFailures {
		t.Fatalf("address past its limit: %+v %v", d, err)
	}
	// A live session is never ended by someone else's guesses.
	d, _ := a.Authenticate(ctx, from(req("dev", "right"), home))
	live := from(req("dev", ""), attacker)
	live.Verified = &d.Credential
	if d, err := a.Authenticate(ctx, live); err != nil || !d.Allowed() {
		t.Fatalf("re-decision past the limits: %+v %v", d, err)
	}
}

// TestFailuresCountedWhileRedisCannot: with Redis paused for writes the
// process's own counts still refuse.
func TestLocalCounts(t *testing.T) {
	var c localCounts
	now := time.Unix(1000, 0)
	for range 3 {
		c.add("k", time.Minute, now)
	}
	if c.get("k", time.Minute, now.Add(30*time.Second)) != 3 || c.get("k", time.Minute, now.Add(time.Minute)) != 0 {
		t.Fatal("window")
	}
	c.reset("k")
	if c.get("k", time.Minute, now) != 0 {
		t.Fatal("reset")
	}
}

// TestBans: a user or client id ban refuses at once (0x05 / 0x87, no
// hash), live sessions included; it expires; IPBans lists the address
// bans; the change is published.
func TestBans(t *testing.T) {
	s, admin, _ := realStore(t, Options{})
	ctx := testenv.Context(t)
	if err := s.SetUser(ctx, "eve", Update{Password: ptr("pw")}); err != nil {
		t.Fatal(err)
	}
	d, _ := s.Authenticate(ctx, req("eve", "pw"))
	live := req("eve", "")
	live.Verified = &d.Credential
	sub := admin.Subscribe(ctx, s.BanChangesChannel())
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddBan(ctx, BanUser, "eve", 0, "abuse"); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.ReceiveMessage(ctx); err != nil || m.Payload != "user eve" {
		t.Fatalf("change %v %v", m, err)
	}
	before := s.HashCount()
	for _, r := range []policy.Request{req("eve", "pw"), live} {
		if d, err := s.Authenticate(ctx, r); err != nil || d.Outcome != policy.Banned || d.Code() != 0x87 {
			t.Fatalf("banned: %+v %v", d, err)
		}
	}
	if s.HashCount() != before {
		t.Fatal("a ban computed a hash")
	}
	if err := s.RemoveBan(ctx, BanUser, "eve"); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.Authenticate(ctx, req("eve", "pw")); !d.Allowed() {
		t.Fatalf("lifted: %+v", d)
	}
	// A client id ban, expiring.
	if _, err := s.AddBan(ctx, BanClientID, "eve:dev-1", time.Second, ""); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.Authenticate(ctx, req("eve", "pw")); d.Outcome != policy.Banned {
		t.Fatalf("client id banned: %+v", d)
	}
	testenv.WaitFor(t, 5*time.Second, "the ban to expire", func() bool {
		d, _ := s.Authenticate(ctx, req("eve", "pw"))
		return d.Allowed()
	})
	bans, _ := s.ListBans(ctx)
	if len(bans) != 0 {
		t.Fatalf("expired ban listed: %+v", bans)
	}
	if n, _ := admin.HLen(ctx, s.BanKey(BanClientID)).Result(); n != 0 {
		t.Fatal("ListBans did not drop the expired ban")
	}
	// IP bans.
	for _, v := range []string{"192.0.2.0/24", "2001:db8::1"} {
		if _, err := s.AddBan(ctx, BanIP, v, 0, "scanner"); err != nil {
			t.Fatal(err)
		}
	}
	ips, err := s.IPBans(ctx)
	if err != nil || len(ips) != 2 {
		t.Fatalf("%+v %v", ips, err)
	}
	for _, bad := range [][2]string{{"ip", "nope"}, {"user", ""}, {"host", "x"}} {
		if _, err := s.AddBan(ctx, BanKind(bad[0]), bad[1], 0, ""); err == nil {
			t.Errorf("ban %v accepted", bad)
		}
	}
	if err := s.RemoveBan(ctx, BanUser, "nobody"); !errors.Is(err, ErrNoSuchBan) {
		t.Errorf("removing a missing ban: %v", err)
	}
}

// TestHashQueueBound: with every slot taken and the queue full, a
// verification fails at once with ErrBusy instead of waiting; a waiter
// with priority (a known address) gets the next slot ahead of the others.
func TestHashQueueBound(t *testing.T) {
	s, _, _ := realStore(t, Options{MaxHashes: 1, MaxHashQueue: 2})
	ctx := testenv.Context(t)
	if err := s.slots.acquire(ctx, false); err != nil { // the one slot taken
		t.Fatal(err)
	}
	order := make(chan string, 3)
	var wg sync.WaitGroup
	for i, prio := range []bool{false, false, true} {
		if i == 2 {
			testenv.WaitFor(t, 5*time.Second, "two waiting", func() bool { return s.slots.waiting() == 2 })
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.slots.acquire(ctx, prio); err == nil {
				order <- map[bool]string{false: "low", true: "high"}[prio]
				s.slots.release()
			}
		}()
	}
	testenv.WaitFor(t, 5*time.Second, "three waiting", func() bool { return s.slots.waiting() == 3 })
	// The low queue is full: a fourth low waiter is refused at once.
	if _, err := s.verify(ctx, s.dummy, "y", false); !errors.Is(err, policy.ErrBusy) {
		t.Fatalf("a full queue: %v", err)
	}
	s.slots.release()
	wg.Wait()
	close(order)
	var got []string
	for o := range order {
		got = append(got, o)
	}
	if len(got) != 3 || got[0] != "high" {
		t.Fatalf("order %v: the waiter with priority must go first", got)
	}
	if s.slots.waiting() != 0 || s.slots.inUse() != 0 {
		t.Fatalf("%d waiting, %d in use", s.slots.waiting(), s.slots.inUse())
	}
	// A waiter whose context ends leaves the queue.
	_ = s.slots.acquire(ctx, false)
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if err := s.slots.acquire(short, false); !errors.Is(err, policy.ErrBusy) {
		t.Fatalf("ended wait: %v", err)
	}
	if s.slots.waiting() != 0 {
		t.Fatal("an ended waiter stayed queued")
	}
	s.slots.release()
}

// TestHashQueueExpectedWait: a waiter is admitted only if its turn can be
// expected within the wait budget and half its own deadline, judged from
// the recent computations' average time; cheaper computations admit more.
func TestHashQueueExpectedWait(t *testing.T) {
	h := newHashSlots(1, 1000, 10*time.Second)
	ctx := testenv.Context(t)
	if err := h.acquire(ctx, false); err != nil { // the one slot taken
		t.Fatal(err)
	}
	// Computations of 4 s or so: 2 waiters fit in 10 s, not 3.
	for range 50 {
		h.took(4 * time.Second)
	}
	waiters := func(ctx context.Context, n int) (admitted int, refused error) {
		t.Helper()
		errs := make(chan error, n)
		for i := range n {
			go func() { errs <- h.acquire(ctx, false) }()
			// Each waiter is queued (or refused) before the next comes.
			testenv.WaitFor(t, 5*time.Second, "queued or refused", func() bool { return h.waiting()+len(errs) == i+1 })
		}
		admitted = h.waiting()
		if len(errs) > 0 {
			refused = <-errs
		}
		return admitted, refused
	}
	wctx, cancel := context.WithCancel(ctx)
	n, err := waiters(wctx, 3)
	if n != 2 || !errors.Is(err, policy.ErrBusy) || !strings.Contains(err.Error(), "budget 10s") {
		t.Fatalf("4 s computations, 10 s budget: %d admitted, %v", n, err)
	}
	cancel()
	testenv.WaitFor(t, 5*time.Second, "the waiters gone", func() bool { return h.waiting() == 0 })

	// Computations of 100 ms: the same budget admits about 100.
	for range 100 {
		h.took(100 * time.Millisecond)
	}
	wctx, cancel = context.WithCancel(ctx)
	n, err = waiters(wctx, 101)
	cancel()
	if n < 90 || n > 100 || err == nil {
		t.Fatalf("100 ms computations, 10 s budget: %d admitted, %v", n, err)
	}
	testenv.WaitFor(t, 5*time.Second, "the waiters gone", func() bool { return h.waiting() == 0 })
	h.release()
}

// TestHashQueueWaitBounded: the budget bounds the wait itself, not only
// the admission: when the average misled (every slot stays taken), an
// admitted waiter hears "busy" at the end of its budget, and a deadline
// leaves half its time to what follows the hash.
func TestHashQueueWaitBounded(t *testing.T) {
	h := newHashSlots(1, 1000, 100*time.Millisecond)
	ctx := testenv.Context(t)
	if err := h.acquire(ctx, false); err != nil { // the one slot taken, for good
		t.Fatal(err)
	}
	for range 50 {
		h.took(40 * time.Millisecond)
	}
	start := time.Now()
	err := h.acquire(ctx, false)
	if !errors.Is(err, policy.ErrBusy) || !strings.Contains(err.Error(), "no slot within 100ms") {
		t.Fatalf("admitted, no slot freed: %v, want busy after the 100 ms budget", err)
	}
	if waited := time.Since(start); waited < 100*time.Millisecond {
		t.Fatalf("left after %v, before its budget", waited)
	}
	if h.waiting() != 0 {
		t.Fatal("a waiter past its budget stayed queued")
	}
	// 150 ms left: admitted (40 ms expected), gone after 75 ms, before its
	// deadline.
	short, cancelShort := context.WithTimeout(ctx, 150*time.Millisecond)
	err = h.acquire(short, false)
	if !errors.Is(err, policy.ErrBusy) || errors.Is(err, context.DeadlineExceeded) || short.Err() != nil {
		t.Fatalf("150 ms deadline: %v (context: %v), want busy within half of it", err, short.Err())
	}
	cancelShort()
	// 60 ms left: half of it is less than the 40 ms expected: refused at once.
	short, cancelShort = context.WithTimeout(ctx, 60*time.Millisecond)
	defer cancelShort()
	if err := h.acquire(short, false); !errors.Is(err, policy.ErrBusy) || !strings.Contains(err.Error(), "budget") {
		t.Fatalf("40 ms expected, 60 ms deadline: %v, want refused at once", err)
	}
	// A slot freed within the budget is taken.
	h = newHashSlots(1, 1000, 10*time.Second)
	if err := h.acquire(ctx, false); err != nil {
		t.Fatal(err)
	}
	go func() {
		for h.waiting() != 1 {
			time.Sleep(time.Millisecond)
		}
		h.release()
	}()
	if err := h.acquire(ctx, false); err != nil {
		t.Fatalf("a slot freed in time: %v", err)
	}
	h.release()
}
