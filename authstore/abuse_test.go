package authstore

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/internal/storetest"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
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
		rdb := storetest.Client(t, testenv.RedisURL(srv))
		return New(rdb, Options{Timeout: 500 * time.Millisecond, FailLimitUser: Limit{3, time.Minute}, FailLimitIP: Limit{5, time.Minute}})
	}
	a, b := open(), open()
	ctx := testenv.Context(t)
	if err := a.SetUser(ctx, "dev", operator.Update{Password: ptr("right")}); err != nil {
		t.Fatal(err)
	}
	home, attacker, other := "192.0.2.10", "198.51.100.7", "203.0.113.9"
	// The device connects from home once: home is a known address.
	if d, err := a.Authenticate(ctx, from(storetest.Req("dev", "right"), home)); err != nil || !d.Allowed() {
		t.Fatal(d, err)
	}
	// Three guesses, alternating replicas: the user's limit is reached.
	for i := range 3 {
		s := []*Store{a, b}[i%2]
		if d, err := s.Authenticate(ctx, from(storetest.Req("dev", "guess"), attacker)); err != nil || d.Outcome != policy.BadCredentials {
			t.Fatalf("guess %d: %+v %v", i, d, err)
		}
	}
	hashes := a.HashCount() + b.HashCount()
	for _, s := range []*Store{a, b} {
		d, err := s.Authenticate(ctx, from(storetest.Req("dev", "right"), other))
		if err != nil || d.Outcome != policy.TooManyFailures {
			t.Fatalf("right password from an unknown address past the limit: %+v %v", d, err)
		}
	}
	if a.HashCount()+b.HashCount() != hashes {
		t.Fatal("a refusal past the limit computed a hash")
	}
	// From home the right password still works, and resets the count.
	if d, err := b.Authenticate(ctx, from(storetest.Req("dev", "right"), home)); err != nil || !d.Allowed() {
		t.Fatalf("right password from home: %+v %v", d, err)
	}
	if d, err := a.Authenticate(ctx, from(storetest.Req("dev", "right"), other)); err != nil || !d.Allowed() {
		t.Fatalf("after the reset: %+v %v", d, err)
	}
	// The attacker's address reaches its own limit (5 with the 3 above),
	// for every user, unknown ones included.
	for i := range 2 {
		if d, _ := a.Authenticate(ctx, from(storetest.Req("nobody", "x"), attacker)); d.Outcome != policy.BadCredentials {
			t.Fatalf("guess %d: %+v", i, d)
		}
	}
	if d, err := b.Authenticate(ctx, from(storetest.Req("dev", "right"), attacker)); err != nil || d.Outcome != policy.TooManyFailures {
		t.Fatalf("address past its limit: %+v %v", d, err)
	}
	// A live session is never ended by someone else's guesses.
	d, _ := a.Authenticate(ctx, from(storetest.Req("dev", "right"), home))
	live := from(storetest.Req("dev", ""), attacker)
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
	if err := s.SetUser(ctx, "eve", operator.Update{Password: ptr("pw")}); err != nil {
		t.Fatal(err)
	}
	d, _ := s.Authenticate(ctx, storetest.Req("eve", "pw"))
	live := storetest.Req("eve", "")
	live.Verified = &d.Credential
	sub := admin.Subscribe(ctx, s.BanChangesChannel())
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddBan(ctx, rules.BanUser, "eve", 0, "abuse"); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.ReceiveMessage(ctx); err != nil || m.Payload != "user eve" {
		t.Fatalf("change %v %v", m, err)
	}
	before := s.HashCount()
	for _, r := range []policy.Request{storetest.Req("eve", "pw"), live} {
		if d, err := s.Authenticate(ctx, r); err != nil || d.Outcome != policy.Banned {
			t.Fatalf("banned: %+v %v", d, err)
		}
	}
	if s.HashCount() != before {
		t.Fatal("a ban computed a hash")
	}
	if err := s.RemoveBan(ctx, rules.BanUser, "eve"); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.Authenticate(ctx, storetest.Req("eve", "pw")); !d.Allowed() {
		t.Fatalf("lifted: %+v", d)
	}
	// A client id ban, expiring.
	if _, err := s.AddBan(ctx, rules.BanClientID, "eve:dev-1", time.Second, ""); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.Authenticate(ctx, storetest.Req("eve", "pw")); d.Outcome != policy.Banned {
		t.Fatalf("client id banned: %+v", d)
	}
	testenv.WaitFor(t, 5*time.Second, "the ban to expire", func() bool {
		d, _ := s.Authenticate(ctx, storetest.Req("eve", "pw"))
		return d.Allowed()
	})
	bans, _ := s.ListBans(ctx)
	if len(bans) != 0 {
		t.Fatalf("expired ban listed: %+v", bans)
	}
	if n, _ := admin.HLen(ctx, s.BanKey(string(rules.BanClientID))).Result(); n != 0 {
		t.Fatal("ListBans did not drop the expired ban")
	}
	// IP bans.
	for _, v := range []string{"192.0.2.0/24", "2001:db8::1"} {
		if _, err := s.AddBan(ctx, rules.BanIP, v, 0, "scanner"); err != nil {
			t.Fatal(err)
		}
	}
	ips, err := s.IPBans(ctx)
	if err != nil || len(ips) != 2 {
		t.Fatalf("%+v %v", ips, err)
	}
	for _, bad := range [][2]string{{"ip", "nope"}, {"user", ""}, {"host", "x"}} {
		if _, err := s.AddBan(ctx, rules.BanKind(bad[0]), bad[1], 0, ""); err == nil {
			t.Errorf("ban %v accepted", bad)
		}
	}
	if err := s.RemoveBan(ctx, rules.BanUser, "nobody"); !errors.Is(err, operator.ErrNoSuchBan) {
		t.Errorf("removing a missing ban: %v", err)
	}
}
