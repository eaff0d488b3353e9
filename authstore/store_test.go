package authstore

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// Vectors made outside this code base: argon2id and bcrypt by the Python
// argon2-cffi and bcrypt packages, PBKDF2 by Python's hashlib following
// mosquitto-go-auth's documented format (PBKDF2$digest$iter$b64salt$b64hash).
var vectors = []struct{ name, hash, password string }{
	{"argon2id", "$argon2id$v=19$m=19456,t=2,p=1$ELINC+GPf8vL7IWHQ6szlw$M5CD1ZdIfhB2eXMS1hh7fWW1204q05ccSKMQ9qHi4iE", "argon-pass"},
	{"bcrypt 2b", "$2b$04$.MyMYYEjToFnNHnw3bpEqeesH5ElAsqBHvBxHoVFgBFxhAGLw8lwy", "bcrypt-pass"},
	{"bcrypt 2a", "$2a$04$ODrUWllZjlg80nF0jSzB2ODv.ZmzA.8voMsBqHUVGF6DPsgqYdVqm", "bcrypt-pass"},
	{"bcrypt 2y", "$2y$04$.MyMYYEjToFnNHnw3bpEqeesH5ElAsqBHvBxHoVFgBFxhAGLw8lwy", "bcrypt-pass"},
	{"pbkdf2 sha512", "PBKDF2$sha512$100000$MDEyMzQ1Njc4OWFiY2RlZg==$kRXD0Q6xQFHViVftYfGHiUn1FuWb8D3yeoONlW6FV0Qw97R26ipBlGUrPNbOeMV3KiNsx+NpJB8qyG7dp2KWJg==", "mosquitto-pass"},
	{"pbkdf2 sha256", "PBKDF2$sha256$1000$MDEyMzQ1Njc4OWFiY2RlZg==$tQiMXqcB5PD6y+Usxvp2sro3soO7p2nv5Mt9rdl+9yI=", "mosquitto-pass"},
}

// realStore starts a real redis-server and a Store over it.
func realStore(t *testing.T, o Options) (*Store, *redis.Client, *testenv.Server) {
	t.Helper()
	srv := testenv.Redis(t)
	rdb, err := NewClient(testenv.RedisURL(srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	if o.Timeout == 0 {
		o.Timeout = 300 * time.Millisecond
	}
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { admin.Close() })
	return New(rdb, o), admin, srv
}

var (
	certA   = []byte("certificate A DER")
	certB   = []byte("certificate B DER")
	fpA     = sha256.Sum256(certA)
	fpB     = sha256.Sum256(certB)
	fpAHex  = "sha256:" + strings.ToUpper(string(hexColon(fpA[:])))
	srcAddr = netip.MustParseAddr("192.0.2.10")
)

func hexColon(b []byte) []byte {
	const digits = "0123456789abcdef"
	var out []byte
	for i, c := range b {
		if i > 0 {
			out = append(out, ':')
		}
		out = append(out, digits[c>>4], digits[c&15])
	}
	return out
}

func TestVectorsVerify(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			ok, err := verifyPassword(v.hash, v.password, false)
			if err != nil || !ok {
				t.Fatalf("right password: %v %v", ok, err)
			}
			ok, err = verifyPassword(v.hash, v.password+"x", false)
			if err != nil || ok {
				t.Fatalf("wrong password: %v %v", ok, err)
			}
		})
	}
	for _, bad := range []string{"", "plaintext", "$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "$argon2i$v=19$m=64,t=1,p=1$c2FsdA$aGFzaA",
		"PBKDF2$md5$1000$c2FsdA==$aGFzaGhhc2hoYXNoaGFzaA==", "PBKDF2$sha256$0$c2FsdA==$aGFzaGhhc2hoYXNoaGFzaA==",
		"PBKDF2$sha256$1000$c2FsdA==", "$2b$31$.MyMYYEjToFnNHnw3bpEqeesH5ElAsqBHvBxHoVFgBFxhAGLw8lwy"} {
		if ok, err := verifyPassword(bad, "", false); ok || !errors.Is(err, ErrMalformedHash) {
			t.Errorf("%q: %v %v, want ErrMalformedHash", bad, ok, err)
		}
	}
	h := HashPassword("new-pass")
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("HashPassword = %q", h)
	}
	if ok, err := verifyPassword(h, "new-pass", false); !ok || err != nil {
		t.Fatalf("own hash does not verify: %v", err)
	}
}

func req(user, pass string) policy.Request {
	return policy.Request{Username: user, HasPassword: true, Password: pass, ClientID: user + ":dev-1", Protocol: packets.V311, RemoteAddr: srcAddr}
}

func TestRulesAgainstRealRedis(t *testing.T) {
	s, admin, _ := realStore(t, Options{})
	ctx := testenv.Context(t)
	pw := HashPassword("pw")
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
		code packets.ReasonCode
	}{
		{"password ok", []string{"password", pw}, req("u", "pw"), policy.Accepted, packets.Success},
		{"wrong password", []string{"password", pw}, req("u", "nope"), policy.BadCredentials, packets.BadUserNameOrPassword},
		{"no password sent", []string{"password", pw}, noPass(req("u", "")), policy.BadCredentials, packets.BadUserNameOrPassword},
		{"unknown user", nil, req("ghost", "pw"), policy.BadCredentials, packets.BadUserNameOrPassword},
		{"empty username", nil, req("", "pw"), policy.BadCredentials, packets.BadUserNameOrPassword},
		{"enabled true", []string{"password", pw, "enabled", "true"}, req("u", "pw"), policy.Accepted, packets.Success},
		{"disabled", []string{"password", pw, "enabled", "false"}, req("u", "pw"), policy.Disabled, packets.NotAuthorized},
		{"disabled, wrong password", []string{"password", pw, "enabled", "false"}, req("u", "x"), policy.BadCredentials, packets.BadUserNameOrPassword},
		{"not expired", []string{"password", pw, "not_after", future}, req("u", "pw"), policy.Accepted, packets.Success},
		{"expired", []string{"password", pw, "not_after", past}, req("u", "pw"), policy.Expired, packets.NotAuthorized},
		{"client id glob", []string{"password", pw, "clientids", "x-* dev-?"}, withID(req("u", "pw"), "dev-1"), policy.Accepted, packets.Success},
		{"client id %u", []string{"password", pw, "clientids", "%u-*"}, withID(req("u", "pw"), "u-7"), policy.Accepted, packets.Success},
		{"client id %u literal", []string{"password", pw, "clientids", "%u"}, withID(req("u*", "pw"), "ux"), policy.ClientIDNotAllowed, packets.ClientIdentifierNotValid},
		{"client id refused", []string{"password", pw, "clientids", "x-*"}, req("u", "pw"), policy.ClientIDNotAllowed, packets.ClientIdentifierNotValid},
		{"client ids empty", []string{"password", pw, "clientids", ""}, req("u", "pw"), policy.ClientIDNotAllowed, packets.ClientIdentifierNotValid},
		{"cidr ok", []string{"password", pw, "cidrs", "10.0.0.0/8 192.0.2.0/24"}, req("u", "pw"), policy.Accepted, packets.Success},
		{"cidr v4-mapped", []string{"password", pw, "cidrs", "192.0.2.10"}, withAddr(req("u", "pw"), "::ffff:192.0.2.10"), policy.Accepted, packets.Success},
		{"cidr refused", []string{"password", pw, "cidrs", "10.0.0.0/8"}, req("u", "pw"), policy.AddressNotAllowed, packets.NotAuthorized},
		{"cert-only ok", []string{"certs", fpAHex}, withCert(noPass(req("c", "")), fpA, "dev"), policy.Accepted, packets.Success},
		{"cert-only by cn", []string{"certs", "cn:dev-a"}, withCert(noPass(req("c", "")), fpB, "dev-a"), policy.Accepted, packets.Success},
		{"cert-only wrong cert", []string{"certs", fpAHex}, withCert(noPass(req("c", "")), fpB, "dev"), policy.BadCredentials, packets.BadUserNameOrPassword},
		{"cert-only no cert", []string{"certs", fpAHex}, noPass(req("c", "")), policy.BadCredentials, packets.BadUserNameOrPassword},
		{"password and cert", []string{"password", pw, "certs", fpAHex}, withCert(req("u", "pw"), fpA, ""), policy.Accepted, packets.Success},
		{"password, cert not bound", []string{"password", pw, "certs", fpAHex}, withCert(req("u", "pw"), fpB, ""), policy.CertNotAllowed, packets.NotAuthorized},
		{"password, no cert", []string{"password", pw, "certs", fpAHex}, req("u", "pw"), policy.CertNotAllowed, packets.NotAuthorized},
		{"neither password nor certs", []string{"enabled", "true"}, req("u", "pw"), policy.BadCredentials, packets.BadUserNameOrPassword},
		{"empty stored hash", []string{"password", ""}, req("u", ""), policy.BadCredentials, packets.BadUserNameOrPassword},
		{"default client ids: the user name", []string{"password", pw}, withID(req("u", "pw"), "u"), policy.Accepted, packets.Success},
		{"default client ids: user name colon", []string{"password", pw}, withID(req("u", "pw"), "u:phone"), policy.Accepted, packets.Success},
		// site1 may not take site1-gw's default client id (its session).
		{"default client ids: a user whose name is a prefix", []string{"password", pw}, withID(req("site1", "pw"), "site1-gw"), policy.ClientIDNotAllowed, packets.ClientIdentifierNotValid},
		{"default client ids: the prefix user's own", []string{"password", pw}, withID(req("site1-gw", "pw"), "site1-gw"), policy.Accepted, packets.Success},
		{"default client ids: a prefix user's suffixed id", []string{"password", pw}, withID(req("site1", "pw"), "site1-gw:cam"), policy.ClientIDNotAllowed, packets.ClientIdentifierNotValid},
		{"default client ids: empty, assigned by the broker", []string{"password", pw}, withID(req("u", "pw"), ""), policy.Accepted, packets.Success},
		{"default client ids: another user's", []string{"password", pw}, withID(req("u", "pw"), "alice-phone"), policy.ClientIDNotAllowed, packets.ClientIdentifierNotValid},
		{"default client ids: a prefix is not enough", []string{"password", pw}, withID(req("u", "pw"), "ux"), policy.ClientIDNotAllowed, packets.ClientIdentifierNotValid},
		{"explicit any client id", []string{"password", pw, "clientids", "*"}, withID(req("u", "pw"), "alice-phone"), policy.Accepted, packets.Success},
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
			if d.Outcome != c.want || d.Code() != c.code || d.Allowed() != (c.want == policy.Accepted) {
				t.Fatalf("got %+v (%v), want %v (%v)", d, d.Code(), c.want, c.code)
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
		if d, err := s.Authenticate(ctx, req("m", "pw")); !errors.Is(err, policy.ErrMalformedRule) || d.Allowed() {
			t.Errorf("malformed %v: got %+v, %v; want ErrMalformedRule", bad, d, err)
		}
		if d, err := s.Authenticate(ctx, req("m", "wrong")); err != nil || d.Outcome != policy.BadCredentials {
			t.Errorf("malformed %v, wrong password: got %+v, %v; want bad credentials", bad, d, err)
		}
	}
	// A stored hash that cannot be read authenticates no one: refused as
	// bad credentials after a dummy verification, like an unknown user.
	for _, bad := range []string{"", "plaintext", "$argon2id$v=19$m=x"} {
		hset("m", "password", bad)
		before := s.HashCount()
		if d, err := s.Authenticate(ctx, req("m", "pw")); err != nil || d.Outcome != policy.BadCredentials {
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
	if err := s.SetUser(ctx, "alice", Update{Password: ptr("one")}); err != nil {
		t.Fatal(err)
	}
	decide := func(pass string) policy.Decision {
		t.Helper()
		d, err := s.Authenticate(ctx, req("alice", pass))
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
	if err := s.SetUser(ctx, "alice", Update{Password: ptr("two")}); err != nil {
		t.Fatal(err)
	}
	if d := decide("one"); d.Outcome != policy.BadCredentials {
		t.Fatalf("old password after change: %+v", d)
	}
	if d := decide("two"); !d.Allowed() || d.Remembered {
		t.Fatalf("new password: %+v", d)
	}
	// A hash replaced by redis-cli, even for the same password, is verified afresh.
	admin.HSet(ctx, "mqtt:user:alice", "password", HashPassword("two"))
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
	if err := s.SetUser(ctx, "bob", Update{Password: ptr("pw")}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []policy.Request{req("nobody", "pw"), req("bob", "wrong"), req("bob", "wrong")} {
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
// whatever the user's roles (a script reads the user, the default role
// and the named roles together), and the server runs one script call.
func TestOneRoundTripPerDecision(t *testing.T) {
	srv := testenv.Redis(t)
	rdb, err := NewClient(testenv.RedisURL(srv))
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	trips := &roundTrips{}
	rdb.AddHook(trips)
	s := New(rdb, Options{Timeout: 300 * time.Millisecond})
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer admin.Close()
	ctx := testenv.Context(t)
	if err := s.SetUser(ctx, "carol", Update{Password: ptr("pw"), ClientIDs: &[]string{"%u:dev-*"}, CIDRs: &[]string{"192.0.2.0/24"}}); err != nil {
		t.Fatal(err)
	}
	admin.HSet(ctx, "mqtt:user:carol", "roles", "ops fleet", "publish", "devices/%u/#")
	admin.HSet(ctx, "mqtt:role:ops", "publish", "ops/#")
	admin.HSet(ctx, "mqtt:role:default", "subscribe", "public/#")
	if _, err := s.Authenticate(ctx, req("carol", "pw")); err != nil { // warm the pool and the script cache
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
		d, err := s.Authenticate(ctx, req("carol", "pw"))
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
	if got := evalsha() - scripts; got != n {
		t.Fatalf("%d script calls for %d decisions", got, n)
	}
}

func TestRedisDownFailsClosedAndRecovers(t *testing.T) {
	s, _, srv := realStore(t, Options{Timeout: 200 * time.Millisecond})
	ctx := testenv.Context(t)
	if err := s.SetUser(ctx, "dave", Update{Password: ptr("pw")}); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Authenticate(ctx, req("dave", "pw")); err != nil || !d.Allowed() {
		t.Fatal(d, err)
	}
	srv.Stop()
	start := time.Now()
	d, err := s.Authenticate(ctx, req("dave", "pw"))
	if !errors.Is(err, policy.ErrUnavailable) || d.Allowed() {
		t.Fatalf("Redis down: %+v %v, want ErrUnavailable", d, err)
	}
	t.Logf("Redis down answered in %v", time.Since(start))
	if err := s.Ping(ctx); !errors.Is(err, policy.ErrUnavailable) {
		t.Fatalf("Ping with Redis down: %v", err)
	}
	// A server that accepts but never answers: the timeout bounds the wait.
	srv.Start() // empty again: no persistence
	if err := s.SetUser(ctx, "dave", Update{Password: ptr("pw")}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "decisions to recover", func() bool {
		d, err := s.Authenticate(ctx, req("dave", "pw"))
		return err == nil && d.Allowed()
	})
}

func TestSlowRedisTimesOut(t *testing.T) {
	s, admin, _ := realStore(t, Options{Timeout: 150 * time.Millisecond})
	ctx := testenv.Context(t)
	if err := s.SetUser(ctx, "erin", Update{Password: ptr("pw")}); err != nil {
		t.Fatal(err)
	}
	// CLIENT PAUSE holds every client's commands past the timeout.
	if err := admin.Do(ctx, "CLIENT", "PAUSE", "1500", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := s.Authenticate(ctx, req("erin", "pw"))
	if !errors.Is(err, policy.ErrUnavailable) {
		t.Fatalf("slow Redis: %v, want ErrUnavailable", err)
	}
	if el := time.Since(start); el > 900*time.Millisecond {
		t.Fatalf("slow Redis answered after %v: the timeout did not bound it", el)
	}
}

func TestHashConcurrencyBound(t *testing.T) {
	s, _, _ := realStore(t, Options{MaxHashes: 1})
	ctx := testenv.Context(t)
	// A deliberately slow argon2id hash holds the only slot.
	slow := "$argon2id$v=19$m=262144,t=4,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
	if err := s.SetUser(ctx, "slow", Update{PasswordHash: &slow}); err != nil {
		t.Fatal(err)
	}
	held := make(chan struct{})
	go func() {
		defer close(held)
		_, _ = s.Authenticate(ctx, req("slow", "x"))
	}()
	testenv.WaitFor(t, 5*time.Second, "the slot to be taken", func() bool { return s.slots.inUse() == 1 })
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, err := s.Authenticate(short, req("nobody", "x"))
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
	if err := s.SetUser(ctx, "fleet", Update{Password: ptr("pw")}); err != nil {
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
			d, err := s.Authenticate(ctx, req("fleet", pw))
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

func ptr[T any](v T) *T { return &v }
