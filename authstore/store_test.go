package authstore

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/internal/storetest"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/passwords"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// realStore starts a real redis-server and a Store over it.
func realStore(t *testing.T, o Options) (*Store, *redis.Client, *testenv.Server) {
	t.Helper()
	rdb, admin, srv := storetest.Redis(t)
	if o.Timeout == 0 {
		o.Timeout = 300 * time.Millisecond
	}
	return New(rdb, o), admin, srv
}

func TestRulesAgainstRealRedis(t *testing.T) {
	s, admin, _ := realStore(t, Options{})
	ctx := testenv.Context(t)
	pw := passwords.HashPassword("pw")
	hset := func(user string, kv ...string) {
		t.Helper()
		if err := admin.Del(ctx, "mqtt:user:"+user).Err(); err != nil {
			t.Fatal(err)
		}
		if err := admin.HSet(ctx, "mqtt:user:"+user, kv).Err(); err != nil {
			t.Fatal(err)
		}
	}
	withCert := func(r policy.Request, fp [32]byte, cn string) policy.Request {
		r.CertSHA256, r.CertCN = fp[:], cn
		return r
	}
	withID := func(r policy.Request, id string) policy.Request { r.ClientID = id; return r }
	withAddr := func(r policy.Request, a string) policy.Request { r.RemoteAddr = netip.MustParseAddr(a); return r }
	noPass := func(r policy.Request) policy.Request { r.HasPassword, r.Password = false, ""; return r }

	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	past := time.Now().Add(-time.Second).UTC().Format(time.RFC3339)
	cases := []struct {
		name string
		hash []string
		req  policy.Request
		want policy.Outcome
	}{
		{"password ok", []string{"password", pw}, storetest.Req("u", "pw"), policy.Accepted},
		{"wrong password", []string{"password", pw}, storetest.Req("u", "nope"), policy.BadCredentials},
		{"no password sent", []string{"password", pw}, noPass(storetest.Req("u", "")), policy.BadCredentials},
		{"unknown user", nil, storetest.Req("ghost", "pw"), policy.BadCredentials},
		{"empty username", nil, storetest.Req("", "pw"), policy.BadCredentials},
		{"enabled true", []string{"password", pw, "enabled", "true"}, storetest.Req("u", "pw"), policy.Accepted},
		{"disabled", []string{"password", pw, "enabled", "false"}, storetest.Req("u", "pw"), policy.Disabled},
		{"disabled, wrong password", []string{"password", pw, "enabled", "false"}, storetest.Req("u", "x"), policy.BadCredentials},
		{"not expired", []string{"password", pw, "not_after", future}, storetest.Req("u", "pw"), policy.Accepted},
		{"expired", []string{"password", pw, "not_after", past}, storetest.Req("u", "pw"), policy.Expired},
		{"client id glob", []string{"password", pw, "clientids", "x-* dev-?"}, withID(storetest.Req("u", "pw"), "dev-1"), policy.Accepted},
		{"client id %u", []string{"password", pw, "clientids", "%u-*"}, withID(storetest.Req("u", "pw"), "u-7"), policy.Accepted},
		{"client id %u literal", []string{"password", pw, "clientids", "%u"}, withID(storetest.Req("u*", "pw"), "ux"), policy.ClientIDNotAllowed},
		{"client id refused", []string{"password", pw, "clientids", "x-*"}, storetest.Req("u", "pw"), policy.ClientIDNotAllowed},
		{"client ids empty", []string{"password", pw, "clientids", ""}, storetest.Req("u", "pw"), policy.ClientIDNotAllowed},
		{"cidr ok", []string{"password", pw, "cidrs", "10.0.0.0/8 192.0.2.0/24"}, storetest.Req("u", "pw"), policy.Accepted},
		{"cidr v4-mapped", []string{"password", pw, "cidrs", "192.0.2.10"}, withAddr(storetest.Req("u", "pw"), "::ffff:192.0.2.10"), policy.Accepted},
		{"cidr refused", []string{"password", pw, "cidrs", "10.0.0.0/8"}, storetest.Req("u", "pw"), policy.AddressNotAllowed},
		{"cert-only ok", []string{"certs", storetest.FpAHex}, withCert(noPass(storetest.Req("c", "")), storetest.FpA, "dev"), policy.Accepted},
		{"cert-only by cn", []string{"certs", "cn:dev-a"}, withCert(noPass(storetest.Req("c", "")), storetest.FpB, "dev-a"), policy.Accepted},
		{"cert-only wrong cert", []string{"certs", storetest.FpAHex}, withCert(noPass(storetest.Req("c", "")), storetest.FpB, "dev"), policy.BadCredentials},
		{"cert-only no cert", []string{"certs", storetest.FpAHex}, noPass(storetest.Req("c", "")), policy.BadCredentials},
		{"password and cert", []string{"password", pw, "certs", storetest.FpAHex}, withCert(storetest.Req("u", "pw"), storetest.FpA, ""), policy.Accepted},
		{"password, cert not bound", []string{"password", pw, "certs", storetest.FpAHex}, withCert(storetest.Req("u", "pw"), storetest.FpB, ""), policy.CertNotAllowed},
		{"password, no cert", []string{"password", pw, "certs", storetest.FpAHex}, storetest.Req("u", "pw"), policy.CertNotAllowed},
		{"neither password nor certs", []string{"enabled", "true"}, storetest.Req("u", "pw"), policy.BadCredentials},
		{"empty stored hash", []string{"password", ""}, storetest.Req("u", ""), policy.BadCredentials},
		{"default client ids: the user name", []string{"password", pw}, withID(storetest.Req("u", "pw"), "u"), policy.Accepted},
		{"default client ids: user name colon", []string{"password", pw}, withID(storetest.Req("u", "pw"), "u:phone"), policy.Accepted},
		// site1 may not take site1-gw's default client id (its session).
		{"default client ids: a user whose name is a prefix", []string{"password", pw}, withID(storetest.Req("site1", "pw"), "site1-gw"), policy.ClientIDNotAllowed},
		{"default client ids: the prefix user's own", []string{"password", pw}, withID(storetest.Req("site1-gw", "pw"), "site1-gw"), policy.Accepted},
		{"default client ids: a prefix user's suffixed id", []string{"password", pw}, withID(storetest.Req("site1", "pw"), "site1-gw:cam"), policy.ClientIDNotAllowed},
		{"default client ids: empty, assigned by the broker", []string{"password", pw}, withID(storetest.Req("u", "pw"), ""), policy.Accepted},
		{"default client ids: another user's", []string{"password", pw}, withID(storetest.Req("u", "pw"), "alice-phone"), policy.ClientIDNotAllowed},
		{"default client ids: a prefix is not enough", []string{"password", pw}, withID(storetest.Req("u", "pw"), "ux"), policy.ClientIDNotAllowed},
		{"explicit any client id", []string{"password", pw, "clientids", "*"}, withID(storetest.Req("u", "pw"), "alice-phone"), policy.Accepted},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			user := c.req.Username
			if c.hash != nil {
				hset(user, c.hash...)
			}
			d, err := s.Authenticate(ctx, c.req)
			if err != nil {
				t.Fatal(err)
			}
			if d.Outcome != c.want || d.Allowed() != (c.want == policy.Accepted) {
				t.Fatalf("got %+v, want %v", d, c.want)
			}
			if d.Reason == "" {
				t.Fatal("a decision without a reason")
			}
			if strings.HasPrefix(c.name, "default client ids") && c.want == policy.ClientIDNotAllowed && !strings.Contains(d.Reason, "CLIENTIDS_DEFAULT") {
				t.Fatalf("a refusal by the default does not name it: %q", d.Reason)
			}
		})
	}
	// Every refusal by the default is counted (for the fleet that uses
	// another client id form to see it coming); one by the user's own
	// clientids is not.
	byDefault := 0
	for _, c := range cases {
		if strings.HasPrefix(c.name, "default client ids") && c.want == policy.ClientIDNotAllowed {
			byDefault++
		}
	}
	if got := s.DefaultClientIDRefusals(); got != int64(byDefault) {
		t.Fatalf("refusals by the client id default counted %d, want %d", got, byDefault)
	}

	// A rule that cannot be read: with the right password it is an error
	// (fail closed: "server unavailable"); with a wrong one the answer is
	// the wrong password's, so a user's malformed rule does not reveal that
	// the user exists.
	for _, bad := range [][]string{{"enabled", "maybe"}, {"enabled", "no"}, {"not_after", "tomorrow"}, {"not_after", "2020-01-01"},
		{"cidrs", "10.0.0.0/33"}, {"certs", "md5:abcd"}, {"certs", "sha256:abcd"}} {
		hset("m", append([]string{"password", pw}, bad...)...)
		if d, err := s.Authenticate(ctx, storetest.Req("m", "pw")); !errors.Is(err, policy.ErrMalformedRule) || d.Allowed() {
			t.Errorf("malformed %v: got %+v, %v; want ErrMalformedRule", bad, d, err)
		}
		if d, err := s.Authenticate(ctx, storetest.Req("m", "wrong")); err != nil || d.Outcome != policy.BadCredentials {
			t.Errorf("malformed %v, wrong password: got %+v, %v; want bad credentials", bad, d, err)
		}
	}
	// A stored hash that cannot be read authenticates no one: refused as
	// bad credentials after a dummy verification, like an unknown user.
	for _, bad := range []string{"", "plaintext", "$argon2id$v=19$m=x"} {
		hset("m", "password", bad)
		before := s.HashCount()
		if d, err := s.Authenticate(ctx, storetest.Req("m", "pw")); err != nil || d.Outcome != policy.BadCredentials {
			t.Errorf("malformed hash %q: got %+v, %v; want bad credentials", bad, d, err)
		}
		if s.HashCount() != before+1 {
			t.Errorf("malformed hash %q: %d hashes, want 1 like an unknown user", bad, s.HashCount()-before)
		}
	}
}

func TestToggleAndPasswordChangeTakeEffectAtOnce(t *testing.T) {
	s, admin, _ := realStore(t, Options{})
	ctx := testenv.Context(t)
	if err := s.SetUser(ctx, "alice", operator.Update{Password: ptr("one")}); err != nil {
		t.Fatal(err)
	}
	decide := func(pass string) policy.Decision {
		t.Helper()
		d, err := s.Authenticate(ctx, storetest.Req("alice", pass))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := decide("one"); !d.Allowed() || d.Remembered {
		t.Fatalf("first: %+v", d)
	}
	if d := decide("one"); !d.Allowed() || !d.Remembered {
		t.Fatalf("second should be remembered: %+v", d)
	}
	// Toggle with plain redis-cli-style HSET: the very next decision obeys.
	for i, want := range []policy.Outcome{policy.Disabled, policy.Accepted, policy.Disabled, policy.Accepted} {
		admin.HSet(ctx, "mqtt:user:alice", "enabled", strconv.FormatBool(i%2 == 1))
		if d := decide("one"); d.Outcome != want {
			t.Fatalf("toggle %d: %v, want %v", i, d.Outcome, want)
		}
	}
	// A new password invalidates the remembered verification.
	if err := s.SetUser(ctx, "alice", operator.Update{Password: ptr("two")}); err != nil {
		t.Fatal(err)
	}
	if d := decide("one"); d.Outcome != policy.BadCredentials {
		t.Fatalf("old password after change: %+v", d)
	}
	if d := decide("two"); !d.Allowed() || d.Remembered {
		t.Fatalf("new password: %+v", d)
	}
	// A hash replaced by redis-cli, even for the same password, is verified afresh.
	admin.HSet(ctx, "mqtt:user:alice", "password", passwords.HashPassword("two"))
	if d := decide("two"); !d.Allowed() || d.Remembered {
		t.Fatalf("re-hashed password: %+v", d)
	}
	// A deleted user is unknown at once, remembered verification or not.
	admin.Del(ctx, "mqtt:user:alice")
	if d := decide("two"); d.Outcome != policy.BadCredentials {
		t.Fatalf("deleted user: %+v", d)
	}
}

func TestUnknownUserCostsAHash(t *testing.T) {
	s, _, _ := realStore(t, Options{})
	ctx := testenv.Context(t)
	if err := s.SetUser(ctx, "bob", operator.Update{Password: ptr("pw")}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []policy.Request{storetest.Req("nobody", "pw"), storetest.Req("bob", "wrong"), storetest.Req("bob", "wrong")} {
		before := s.HashCount()
		if d, err := s.Authenticate(ctx, r); err != nil || d.Allowed() {
			t.Fatal(d, err)
		}
		if s.HashCount() != before+1 {
			t.Fatalf("%s: %d hashes, want 1: a denial must cost one hash and never be remembered", r.Username, s.HashCount()-before)
		}
	}
}

// roundTrips counts what a go-redis client sends: one per command and one
// per pipeline, each a round trip.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { r.n.Add(1); return next(ctx, cmd) }
}
func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { r.n.Add(1); return next(ctx, cmds) }
}

// TestOneRoundTripPerDecision: each decision is one round trip to Redis,
// whatever the user's roles (one pipeline reads the user, the default
// role and the roles the user held last time), and the server runs no
// script (a script's call cost Redis about four times its commands); the
// first decision after the user's roles changed takes a second round trip
// for the new ones, and sees them.
func TestOneRoundTripPerDecision(t *testing.T) {
	rdb, admin, _ := storetest.Redis(t)
	trips := &roundTrips{}
	rdb.AddHook(trips)
	s := New(rdb, Options{Timeout: 300 * time.Millisecond})
	ctx := testenv.Context(t)
	if err := s.SetUser(ctx, "carol", operator.Update{Password: ptr("pw"), ClientIDs: &[]string{"%u:dev-*"}, CIDRs: &[]string{"192.0.2.0/24"}}); err != nil {
		t.Fatal(err)
	}
	admin.HSet(ctx, "mqtt:user:carol", "roles", "ops fleet", "publish", "devices/%u/#")
	admin.HSet(ctx, "mqtt:role:ops", "publish", "ops/#")
	admin.HSet(ctx, "mqtt:role:default", "subscribe", "public/#")
	if _, err := s.Authenticate(ctx, storetest.Req("carol", "pw")); err != nil { // warm the pool and the script cache
		t.Fatal(err)
	}
	evalsha := func() int {
		info := admin.Info(ctx, "commandstats").Val()
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "cmdstat_evalsha:calls="); ok {
				n, _ := strconv.Atoi(v[:strings.IndexByte(v, ',')])
				return n
			}
		}
		return 0
	}
	const n = 50
	before, scripts := trips.n.Load(), evalsha()
	for range n {
		d, err := s.Authenticate(ctx, storetest.Req("carol", "pw"))
		if err != nil || !d.Allowed() {
			t.Fatal(d, err)
		}
		if _, ok := d.Topics.CanPublish("ops/x"); !ok {
			t.Fatal("the role's rule was not read")
		}
		if _, ok := d.Topics.CanSubscribe("public/x"); !ok {
			t.Fatal("the default role's rule was not read")
		}
	}
	if got := trips.n.Load() - before; got != n {
		t.Fatalf("%d round trips for %d decisions, want exactly 1 each", got, n)
	}
	if got := evalsha() - scripts; got != 0 {
		t.Fatalf("%d script calls for %d decisions, want none", got, n)
	}
	admin.HSet(ctx, "mqtt:user:carol", "roles", "ops fleet lab")
	admin.HSet(ctx, "mqtt:role:lab", "publish", "lab/#")
	for i, want := range []int64{2, 1} {
		before := trips.n.Load()
		d, err := s.Authenticate(ctx, storetest.Req("carol", "pw"))
		if err != nil || !d.Allowed() {
			t.Fatal(d, err)
		}
		if _, ok := d.Topics.CanPublish("lab/x"); !ok {
			t.Fatalf("decision %d after the change: the new role's rule was not read", i)
		}
		if got := trips.n.Load() - before; got != want {
			t.Fatalf("decision %d after the roles changed: %d round trips, want %d", i, got, want)
		}
	}
}

func TestRedisDownFailsClosedAndRecovers(t *testing.T) {
	s, _, srv := realStore(t, Options{Timeout: 200 * time.Millisecond})
	ctx := testenv.Context(t)
	if err := s.SetUser(ctx, "dave", operator.Update{Password: ptr("pw")}); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Authenticate(ctx, storetest.Req("dave", "pw")); err != nil || !d.Allowed() {
		t.Fatal(d, err)
	}
	srv.Stop()
	start := time.Now()
	d, err := s.Authenticate(ctx, storetest.Req("dave", "pw"))
	if !errors.Is(err, policy.ErrUnavailable) || d.Allowed() {
		t.Fatalf("Redis down: %+v %v, want ErrUnavailable", d, err)
	}
	t.Logf("Redis down answered in %v", time.Since(start))
	if err := s.Ping(ctx); !errors.Is(err, policy.ErrUnavailable) {
		t.Fatalf("Ping with Redis down: %v", err)
	}
	// A server that accepts but never answers: the timeout bounds the wait.
	srv.Start() // empty again: no persistence
	if err := s.SetUser(ctx, "dave", operator.Update{Password: ptr("pw")}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "decisions to recover", func() bool {
		d, err := s.Authenticate(ctx, storetest.Req("dave", "pw"))
		return err == nil && d.Allowed()
	})
}

func TestSlowRedisTimesOut(t *testing.T) {
	s, admin, _ := realStore(t, Options{Timeout: 150 * time.Millisecond})
	ctx := testenv.Context(t)
	if err := s.SetUser(ctx, "erin", operator.Update{Password: ptr("pw")}); err != nil {
		t.Fatal(err)
	}
	// CLIENT PAUSE holds every client's commands for 10 timeouts. Only the
	// timeout can refuse: past the pause, Redis answers and erin is allowed.
	if err := admin.Do(ctx, "CLIENT", "PAUSE", "1500", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	_, err := s.Authenticate(ctx, storetest.Req("erin", "pw"))
	if !errors.Is(err, policy.ErrUnavailable) {
		t.Fatalf("slow Redis: %v, want ErrUnavailable (the timeout did not bound the wait)", err)
	}
}

func TestHashConcurrencyBound(t *testing.T) {
	s, _, _ := realStore(t, Options{Passwords: passwords.Options{MaxHashes: 1}})
	ctx := testenv.Context(t)
	// A deliberately slow argon2id hash holds the only slot.
	slow := "$argon2id$v=19$m=262144,t=4,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
	if err := s.SetUser(ctx, "slow", operator.Update{PasswordHash: &slow}); err != nil {
		t.Fatal(err)
	}
	held := make(chan struct{})
	go func() {
		defer close(held)
		_, _ = s.Authenticate(ctx, storetest.Req("slow", "x"))
	}()
	testenv.WaitFor(t, 5*time.Second, "the slot to be taken", func() bool { return s.passwords.Slots().InUse() == 1 })
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, err := s.Authenticate(short, storetest.Req("nobody", "x"))
	if !errors.Is(err, policy.ErrBusy) && !errors.Is(err, policy.ErrUnavailable) {
		t.Fatalf("second verification while the slot is held: %v, want ErrBusy", err)
	}
	<-held
}

// TestConcurrentFirstVerificationsShareOneHash: a fleet reconnecting at
// once with the same credentials costs one hash, not one per device; a
// wrong password is still verified (and refused) on its own.
func TestConcurrentFirstVerificationsShareOneHash(t *testing.T) {
	s, _, _ := realStore(t, Options{})
	ctx := testenv.Context(t)
	if err := s.SetUser(ctx, "fleet", operator.Update{Password: ptr("pw")}); err != nil {
		t.Fatal(err)
	}
	const n = 16
	errs := make(chan error, n)
	before := s.HashCount()
	for i := range n {
		go func() {
			pw := "pw"
			if i == 0 {
				pw = "wrong"
			}
			d, err := s.Authenticate(ctx, storetest.Req("fleet", pw))
			if err == nil && d.Allowed() != (pw == "pw") {
				err = fmt.Errorf("password %q: %v", pw, d.Outcome)
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// One hash for the right password (shared or remembered), one for the wrong one.
	if got := s.HashCount() - before; got != 2 {
		t.Fatalf("%d hashes for %d concurrent first CONNECTs, want 2", got, n)
	}
}
