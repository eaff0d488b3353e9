package authstore

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/internal/storetest"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/passwords"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/schemas"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// schemaStore is a store of the schema over srv's Redis, without limits
// on failed attempts (a decision is then one pipeline and nothing more).
func schemaStore(t *testing.T, srv *testenv.Server, sc schemas.Schema) *Store {
	t.Helper()
	rdb := storetest.Client(t, testenv.RedisURL(srv))
	return New(rdb, Options{Timeout: time.Second, Schema: sc})
}

func mustEMQX(t *testing.T, o schemas.EMQXOptions) schemas.Schema {
	t.Helper()
	if o.AuthnCmd == "" {
		o.AuthnCmd = schemas.DefaultEMQXAuthnCmd
	}
	if o.AuthzCmd == "" {
		o.AuthzCmd = schemas.DefaultEMQXAuthzCmd
	}
	if o.PasswordHash == "" {
		o.PasswordHash, o.SaltPosition = "sha256", "prefix"
	}
	sc, err := schemas.NewEMQX(o)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// decide authenticates and fails the test on an error.
func decide(t *testing.T, s *Store, r policy.Request) policy.Decision {
	t.Helper()
	d, err := s.Authenticate(context.Background(), r)
	if err != nil {
		t.Fatalf("%s: %v", r.Username, err)
	}
	return d
}

// wantOutcome checks a decision's outcome (its CONNACK codes follow from
// it: proxy.ConnackCode).
func wantOutcome(t *testing.T, d policy.Decision, want policy.Outcome) {
	t.Helper()
	if d.Outcome != want {
		t.Fatalf("%+v: want %s", d, want)
	}
}

// TestEMQXDocumentedLayout: the users and rules of EMQX's documentation,
// laid out with its own commands, decided by the emqx schema with its
// defaults.
func TestEMQXDocumentedLayout(t *testing.T) {
	srv := testenv.Redis(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { admin.Close() })
	// EMQX's "Integrate with Redis" (authentication), whose example user
	// is hashed with sha256 and its salt as a suffix:
	//   HSET mqtt_user:emqx_u is_superuser 1 salt slat_foo123 password_hash 44edc2d57cde8d79c98145003e105b90a14f1460b79186ea9cfe83942fc5abb5
	//   password hash sha256, salt position suffix, command HMGET mqtt_user:${username} password_hash salt is_superuser
	// (its other example, HSET mqtt:user123 ... password_hash ac63a624...
	// for "secret" with the prefix "salt", is not sha256 of either order
	// of the two: Python's hashlib gives bede9038... for "saltsecret", so
	// it is not used here.)
	storetest.RedisCLI(t, admin,
		[]any{"HSET", "mqtt_user:emqx_u", "is_superuser", "1", "salt", "slat_foo123", "password_hash", "44edc2d57cde8d79c98145003e105b90a14f1460b79186ea9cfe83942fc5abb5"},
		// The same user, not a superuser, as "member".
		[]any{"HSET", "mqtt_user:member", "is_superuser", "0", "salt", "slat_foo123", "password_hash", "44edc2d57cde8d79c98145003e105b90a14f1460b79186ea9cfe83942fc5abb5"},
		// EMQX's "Integrate with Redis" (authorization):
		//   HSET mqtt_acl:emqx_u t/1 subscribe
		//   HSET mqtt_acl:emqx_u t/2 '{ "action": "subscribe", "qos": [1, 2] }'
		//   HSET mqtt_acl:emqx_u t/3 '{ "action": "publish", "retain": false }'
		//   cmd = "HGETALL mqtt_acl:${username}"
		[]any{"HSET", "mqtt_acl:emqx_u", "t/1", "subscribe"},
		[]any{"HSET", "mqtt_acl:emqx_u", "t/2", `{ "action": "subscribe", "qos": [1, 2] }`},
		[]any{"HSET", "mqtt_acl:emqx_u", "t/3", `{ "action": "publish", "retain": false }`},
		[]any{"HSET", "mqtt_acl:member", "t/1", "subscribe", "t/2", `{ "action": "subscribe", "qos": [1, 2] }`,
			"t/3", `{ "action": "publish", "retain": false }`, "t/4", "publish", "t/5/#", "all"},
	)
	s := schemaStore(t, srv, mustEMQX(t, schemas.EMQXOptions{PasswordHash: "sha256", SaltPosition: "suffix"}))

	d := decide(t, s, storetest.Req("emqx_u", "public"))
	wantOutcome(t, d, policy.Accepted)
	if d.Topics == nil || !d.Topics.All {
		t.Fatalf("is_superuser 1: topic rules %+v, want all", d.Topics)
	}
	for _, topic := range []string{"t/3", "anything/at/all", "$SYS/x"} {
		if _, ok := d.Topics.CanPublish(topic); !ok {
			t.Errorf("the superuser may not publish to %s", topic)
		}
	}
	if _, ok := d.Topics.CanSubscribe("#"); !ok {
		t.Error("the superuser may not subscribe to #")
	}

	v5 := storetest.Req("emqx_u", "Public")
	v5.Protocol = packets.V5
	wantOutcome(t, decide(t, s, v5), policy.BadCredentials)
	wantOutcome(t, decide(t, s, storetest.Req("emqx_u", "public ")), policy.BadCredentials)
	wantOutcome(t, decide(t, s, storetest.Req("nobody", "public")), policy.BadCredentials)

	d = decide(t, s, storetest.Req("member", "public"))
	wantOutcome(t, d, policy.Accepted)
	if d.Topics.All {
		t.Fatal("is_superuser 0 passes every rule")
	}
	for _, c := range []struct {
		topic    string
		pub, sub bool
	}{
		{"t/1", false, true},
		{"t/2", false, true}, // subscribe at QoS 1 or 2 only: the condition below
		{"t/3", true, false}, // publish without retain only: likewise
		{"t/4", true, false},
		{"t/5", true, true}, // all: publish and subscribe; t/5/# covers t/5
		{"t/5/x/y", true, true},
		{"t/6", false, false},
	} {
		if _, ok := d.Topics.CanPublish(c.topic); ok != c.pub {
			t.Errorf("CanPublish(%s) = %v, want %v", c.topic, ok, c.pub)
		}
		if _, ok := d.Topics.CanSubscribe(c.topic); ok != c.sub {
			t.Errorf("CanSubscribe(%s) = %v, want %v", c.topic, ok, c.sub)
		}
	}
	// The rules' conditions hold: t/2 at QoS 1 or 2 only, t/3 without
	// retain only.
	for _, c := range []struct {
		what string
		ok   bool
		want bool
	}{
		{"subscribe t/2 at QoS 0", second(d.Topics.CanSubscribeAs("t/2", 0)), false},
		{"subscribe t/2 at QoS 2", second(d.Topics.CanSubscribeAs("t/2", 2)), true},
		{"publish t/3 retained", second(d.Topics.CanPublishAs("t/3", 1, true)), false},
		{"publish t/3 not retained", second(d.Topics.CanPublishAs("t/3", 1, false)), true},
	} {
		if c.ok != c.want {
			t.Errorf("%s: %v, want %v", c.what, c.ok, c.want)
		}
	}
	if _, ok := d.Topics.CanSubscribe("t/5/#"); !ok {
		t.Error("all t/5/# does not cover its own filter")
	}
	if _, ok := d.Topics.CanSubscribe("t/+"); ok {
		t.Error("t/+ is covered by no rule but passes")
	}
}

// TestEMQXPasswordHashes: a user of every password_hash_algorithm EMQX
// has authenticates with its password and not with another.
func TestEMQXPasswordHashes(t *testing.T) {
	srv := testenv.Redis(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { admin.Close() })
	for _, c := range []struct {
		name, user, hash, password string
		o                          schemas.EMQXOptions
	}{
		{"md5 prefix", "u-md5", storetest.EMQXMD5Prefix, "md5-pass", schemas.EMQXOptions{PasswordHash: "md5", SaltPosition: "prefix"}},
		{"sha prefix", "u-sha", storetest.EMQXSHAPrefix, "sha-pass", schemas.EMQXOptions{PasswordHash: "sha", SaltPosition: "prefix"}},
		{"sha256 prefix (EMQX's default)", "u-sha256", storetest.EMQXSHA256Prefix, "sha256-pass", schemas.EMQXOptions{PasswordHash: "sha256", SaltPosition: "prefix"}},
		{"sha256 in capitals", "u-sha256-caps", strings.ToUpper(storetest.EMQXSHA256Prefix), "sha256-pass", schemas.EMQXOptions{PasswordHash: "sha256", SaltPosition: "prefix"}},
		{"sha512 suffix", "u-sha512", storetest.EMQXSHA512Suffix, "sha512-pass", schemas.EMQXOptions{PasswordHash: "sha512", SaltPosition: "suffix"}},
		{"sha256 salt disabled", "u-nosalt", storetest.EMQXSHA256NoSalt, "nosalt-pass", schemas.EMQXOptions{PasswordHash: "sha256", SaltPosition: "disable"}},
		{"bcrypt", "u-bcrypt", storetest.EMQXBcrypt, "bcrypt-pass", schemas.EMQXOptions{PasswordHash: "bcrypt"}},
		{"pbkdf2 sha256", "u-pbkdf2", storetest.EMQXPBKDF2SHA256, "pbkdf2-pass", schemas.EMQXOptions{PasswordHash: "pbkdf2", PBKDF2MacFun: "sha256", PBKDF2Iterations: 4096, PBKDF2DKLength: 32}},
		{"pbkdf2 sha, dk_length unset", "u-pbkdf2-sha", storetest.EMQXPBKDF2SHA1, "pbkdf2-pass", schemas.EMQXOptions{PasswordHash: "pbkdf2", PBKDF2MacFun: "sha", PBKDF2Iterations: 1000}},
		{"pbkdf2 sha512, dk_length 16", "u-pbkdf2-512", storetest.EMQXPBKDF2SHA512, "pbkdf2-pass", schemas.EMQXOptions{PasswordHash: "pbkdf2", PBKDF2MacFun: "sha512", PBKDF2Iterations: 1000, PBKDF2DKLength: 16}},
		{"plain prefix, allowed", "u-plain", "s4ltplain-pass", "plain-pass", schemas.EMQXOptions{PasswordHash: "plain", SaltPosition: "prefix", AllowPlain: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			storetest.RedisCLI(t, admin, []any{"HSET", "mqtt_user:" + c.user, "password_hash", c.hash, "salt", "s4lt"})
			s := schemaStore(t, srv, mustEMQX(t, c.o))
			wantOutcome(t, decide(t, s, storetest.Req(c.user, c.password)), policy.Accepted)
			wantOutcome(t, decide(t, s, storetest.Req(c.user, c.password+"x")), policy.BadCredentials)
			wantOutcome(t, decide(t, s, storetest.Req(c.user, strings.ToUpper(c.password))), policy.BadCredentials)
			wantOutcome(t, decide(t, s, storetest.Req(c.user+"-gone", c.password)), policy.BadCredentials)
		})
	}
	t.Run("a hash of another algorithm than the configured one", func(t *testing.T) {
		storetest.RedisCLI(t, admin, []any{"HSET", "mqtt_user:mixed", "password_hash", storetest.EMQXBcrypt})
		s := schemaStore(t, srv, mustEMQX(t, schemas.EMQXOptions{PasswordHash: "sha256", SaltPosition: "prefix"}))
		wantOutcome(t, decide(t, s, storetest.Req("mixed", "bcrypt-pass")), policy.BadCredentials)
		s = schemaStore(t, srv, mustEMQX(t, schemas.EMQXOptions{PasswordHash: "bcrypt"}))
		storetest.RedisCLI(t, admin, []any{"HSET", "mqtt_user:mixed", "password_hash", storetest.EMQXSHA256NoSalt})
		wantOutcome(t, decide(t, s, storetest.Req("mixed", "nosalt-pass")), policy.BadCredentials)
	})
	t.Run("plain is refused unless allowed", func(t *testing.T) {
		_, err := schemas.NewEMQX(schemas.EMQXOptions{AuthnCmd: schemas.DefaultEMQXAuthnCmd, AuthzCmd: schemas.DefaultEMQXAuthzCmd, PasswordHash: "plain", SaltPosition: "disable"})
		var oe *schemas.OptionError
		if !errors.As(err, &oe) || oe.Option != "PasswordHash" {
			t.Fatalf("plain without AllowPlain: %v", err)
		}
	})
	t.Run("a user without password_hash", func(t *testing.T) {
		storetest.RedisCLI(t, admin, []any{"HSET", "mqtt_user:nohash", "salt", "s4lt", "is_superuser", "1"})
		s := schemaStore(t, srv, mustEMQX(t, schemas.EMQXOptions{}))
		wantOutcome(t, decide(t, s, storetest.Req("nohash", "")), policy.BadCredentials)
	})
	t.Run("the native schema does not read the emqx form", func(t *testing.T) {
		s := schemaStore(t, srv, nil)
		storetest.RedisCLI(t, admin, []any{"HSET", s.UserKey("sneaky"), "password", passwords.EMQXHash("plain", "disable", "", "secret")})
		wantOutcome(t, decide(t, s, storetest.Req("sneaky", "secret")), policy.BadCredentials)
	})
}

// TestEMQXCommands: the authenticator's command with its fields in any
// order, HGET, the field password, other key templates; and the commands
// and options that cannot be used, each named.
func TestEMQXCommands(t *testing.T) {
	srv := testenv.Redis(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { admin.Close() })
	storetest.RedisCLI(t, admin,
		// EMQX's documentation also has: cmd = HMGET mqtt:${username} password salt is_superuser
		[]any{"HSET", "mqtt:user123", "is_superuser", "1", "salt", "s4lt", "password", storetest.EMQXSHA256Prefix},
		[]any{"HSET", "mqtt:nosalt", "password", storetest.EMQXSHA256NoSalt},
		[]any{"HSET", "devices:dev:1", "password_hash", storetest.EMQXSHA256Prefix, "salt", "s4lt"},
		[]any{"HSET", "acl", "shared/#", "all"},
	)
	for _, c := range []struct {
		name, authn, authz string
		r                  policy.Request
		super              bool
	}{
		{"password field, reordered", "HMGET mqtt:${username} is_superuser password salt", "", storetest.Req("user123", "sha256-pass"), true},
		{"hget, no salt", "HGET mqtt:${username} password", "", storetest.Req("nosalt", "nosalt-pass"), false},
		{"by client id, lower case", "hmget devices:${clientid} salt password_hash", "hgetall acl", withClientID(storetest.Req("dev", "sha256-pass"), "dev:1"), false},
		{"quoted arguments", `HMGET "mqtt:${username}" 'password' salt`, "", storetest.Req("user123", "sha256-pass"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := schemaStore(t, srv, mustEMQX(t, schemas.EMQXOptions{AuthnCmd: c.authn, AuthzCmd: c.authz}))
			d := decide(t, s, c.r)
			wantOutcome(t, d, policy.Accepted)
			if d.Topics.All != c.super {
				t.Fatalf("superuser %v, want %v", d.Topics.All, c.super)
			}
			wrong := c.r
			wrong.Password = "x"
			wantOutcome(t, decide(t, s, wrong), policy.BadCredentials)
		})
	}
	t.Run("a shared rule hash", func(t *testing.T) {
		s := schemaStore(t, srv, mustEMQX(t, schemas.EMQXOptions{AuthnCmd: "HMGET devices:${clientid} password_hash salt", AuthzCmd: "HGETALL acl"}))
		d := decide(t, s, withClientID(storetest.Req("dev", "sha256-pass"), "dev:1"))
		if _, ok := d.Topics.CanPublish("shared/x"); !ok {
			t.Fatal("the shared rule does not apply")
		}
	})
}

func withClientID(r policy.Request, id string) policy.Request { r.ClientID = id; return r }

// TestEMQXTopicRules: the authorizer's values and their edge cases:
// publish, subscribe, all, the JSON forms with and without conditions,
// eq, placeholders (a name holding + # / fills nothing), v4 values and
// %u/%c, rules EMQX would not read.
func TestEMQXTopicRules(t *testing.T) {
	srv := testenv.Redis(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { admin.Close() })
	rules := []any{
		"pub/only", "publish",
		"sub/only", "subscribe",
		"both/#", "all",
		"json/pub", `{"action":"pub"}`,
		"json/sub", `{"action":"sub","qos":[0,1,2]}`, // every level: no condition
		"json/all", `{"action":"all","qos":"0,1,2","retain":"all"}`,
		"json/retain", `{"action":"all","retain":false}`, // subscribe has no retain: only the publish half is limited
		"json/qos", `{"action":"all","qos":1}`, // both halves limited
		"json/deny", `{"action":"all","permission":"deny"}`,
		"json/bad-action", `{"action":"read"}`,
		"json/bad-qos", `{"action":"all","qos":3}`,
		"not/a/rule", "pub",
		"eq exact/#", "subscribe",
		"eq exact/pub", "publish",
		"users/${username}/#", "all",
		"clients/${clientid}", "publish",
		"certs/${cert_common_name}", "publish",
		"hosts/${peerhost}", "publish",
		"subjects/${cert_subject}", "publish",
		"lit/${nope}", "publish",
		"pre-${username}/x", "publish",
		"dollar/${$}x", "publish",
		"percent/%u", "publish",
		"bad/#/filter", "all",
	}
	for _, user := range []string{"alice", "a+b", "x/y", "#"} {
		storetest.RedisCLI(t, admin,
			[]any{"HSET", "mqtt_user:" + user, "password_hash", storetest.EMQXSHA256Prefix, "salt", "s4lt"},
			append([]any{"HSET", "mqtt_acl:" + user}, rules...))
	}
	s := schemaStore(t, srv, mustEMQX(t, schemas.EMQXOptions{}))
	alice := storetest.Req("alice", "sha256-pass")
	alice.CertSHA256, alice.CertCN = storetest.FpA[:], "dev-a"
	alice.Explain = &policy.Explanation{}
	d := decide(t, s, alice)
	wantOutcome(t, d, policy.Accepted)
	for _, c := range []struct {
		topic    string
		pub, sub bool
	}{
		{"pub/only", true, false},
		{"sub/only", false, true},
		{"both/x", true, true},
		{"json/pub", true, false},
		{"json/sub", false, true},
		{"json/all", true, true},
		{"json/retain", true, true}, // publish only without retain: checked below
		{"json/qos", true, true},    // publish and subscribe at QoS 1 only: checked below
		{"json/deny", false, false},
		{"json/bad-action", false, false},
		{"json/bad-qos", false, false},
		{"not/a/rule", false, false},
		{"exact/#", false, true},
		{"exact/x", false, false}, // eq exact/#: that filter only
		{"exact/pub", true, false},
		{"users/alice/x", true, true},
		{"users/bob/x", false, false},
		{"clients/alice:dev-1", true, false},
		{"certs/dev-a", true, false},
		{"hosts/192.0.2.10", true, false},
		{"subjects/x", false, false},
		{"lit/${nope}", true, false}, // an unknown placeholder is text, as in EMQX
		{"pre-alice/x", true, false},
		{"dollar/$x", true, false},
		{"percent/%u", true, false}, // %u is text outside compatibility mode v4
		{"percent/alice", false, false},
	} {
		if _, ok := d.Topics.CanPublish(c.topic); ok != c.pub {
			t.Errorf("alice: CanPublish(%s) = %v, want %v", c.topic, ok, c.pub)
		}
		if _, ok := d.Topics.CanSubscribe(c.topic); ok != c.sub {
			t.Errorf("alice: CanSubscribe(%s) = %v, want %v", c.topic, ok, c.sub)
		}
	}
	for _, c := range []struct {
		what string
		ok   bool
		want bool
	}{
		{"json/retain retained", second(d.Topics.CanPublishAs("json/retain", 0, true)), false},
		{"json/retain plain", second(d.Topics.CanPublishAs("json/retain", 2, false)), true},
		{"json/qos publish QoS 1", second(d.Topics.CanPublishAs("json/qos", 1, true)), true},
		{"json/qos publish QoS 0", second(d.Topics.CanPublishAs("json/qos", 0, false)), false},
		{"json/qos subscribe QoS 1", second(d.Topics.CanSubscribeAs("json/qos", 1)), true},
		{"json/qos subscribe QoS 2", second(d.Topics.CanSubscribeAs("json/qos", 2)), false},
		{"json/all any", second(d.Topics.CanPublishAs("json/all", 2, true)), true},
	} {
		if c.ok != c.want {
			t.Errorf("alice: %s: %v, want %v", c.what, c.ok, c.want)
		}
	}
	var rulesStep string
	for _, st := range alice.Explain.Steps {
		if st.Check == "topic rules" {
			rulesStep = st.Detail
		}
	}
	for _, says := range []string{"json/qos", "qos 1", "retain false", "permission deny", "json/bad-action", "not/a/rule", "${cert_subject} has no equivalent", "bad/#/filter"} {
		if !strings.Contains(rulesStep, says) {
			t.Errorf("explain's topic rules step does not say %q: %s", says, rulesStep)
		}
	}

	// A name holding + # / fills no placeholder: those rules grant
	// nothing, the others stand, and the user still connects.
	for _, user := range []string{"a+b", "x/y", "#"} {
		r := storetest.Req(user, "sha256-pass")
		r.ClientID = "plain-id"
		s := schemaStore(t, srv, mustEMQX(t, schemas.EMQXOptions{}))
		sOpen := New(s.rdb, Options{Timeout: time.Second, Schema: s.schema, ClientIDsDefault: []string{"*"}})
		d := decide(t, sOpen, r)
		wantOutcome(t, d, policy.Accepted)
		for _, topic := range []string{"users/a/x", "users/x/y/z", "users/" + strings.Trim(user, "#+") + "/x", "pre-x/x", "pre-a/x"} {
			if _, ok := d.Topics.CanPublish(topic); ok {
				t.Errorf("%q may publish to %s", user, topic)
			}
		}
		if _, ok := d.Topics.CanSubscribe("users/#"); ok {
			t.Errorf("%q may subscribe to users/#", user)
		}
		if _, ok := d.Topics.CanPublish("pub/only"); !ok {
			t.Errorf("%q lost its rules without placeholders", user)
		}
	}

	// Compatibility mode v4: 1 subscribe, 2 publish, 3 all; %u and %c
	// are the user name and the client id.
	storetest.RedisCLI(t, admin, []any{"HSET", "mqtt_acl:old", "v4/sub", "1", "v4/pub", "2", "v4/%u/%c/#", "3", "v4/x", "4"},
		[]any{"HSET", "mqtt_user:old", "password_hash", storetest.EMQXSHA256Prefix, "salt", "s4lt"})
	v4 := schemaStore(t, srv, mustEMQX(t, schemas.EMQXOptions{AuthzCompatibilityMode: "v4"}))
	d = decide(t, v4, storetest.Req("old", "sha256-pass"))
	for _, c := range []struct {
		topic    string
		pub, sub bool
	}{{"v4/sub", false, true}, {"v4/pub", true, false}, {"v4/old/old:dev-1/x", true, true}, {"v4/x", false, false}} {
		_, pub := d.Topics.CanPublish(c.topic)
		_, sub := d.Topics.CanSubscribe(c.topic)
		if pub != c.pub || sub != c.sub {
			t.Errorf("v4 %s: publish %v subscribe %v, want %v %v", c.topic, pub, sub, c.pub, c.sub)
		}
	}
	// Without v4 the same values are not rules.
	d = decide(t, s, storetest.Req("old", "sha256-pass"))
	if _, ok := d.Topics.CanSubscribe("v4/sub"); ok {
		t.Error("value 1 is a rule outside compatibility mode v4")
	}

	// A rule key of another type grants nothing and is no error.
	storetest.RedisCLI(t, admin, []any{"SET", "mqtt_acl:alice", "not a hash"})
	d = decide(t, s, storetest.Req("alice", "sha256-pass"))
	wantOutcome(t, d, policy.Accepted)
	if _, ok := d.Topics.CanPublish("pub/only"); ok {
		t.Error("a string key holds rules")
	}
	// So does a user key of another type: no such user.
	storetest.RedisCLI(t, admin, []any{"DEL", "mqtt_user:alice"}, []any{"SADD", "mqtt_user:alice", "x"})
	wantOutcome(t, decide(t, s, storetest.Req("alice", "sha256-pass")), policy.BadCredentials)
}

// TestGoAuthDocumentedLayout: users and rules laid out as
// mosquitto-go-auth's README describes its Redis backend, decided by the
// mosquitto-go-auth schema.
func TestGoAuthDocumentedLayout(t *testing.T) {
	srv := testenv.Redis(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { admin.Close() })
	// mosquitto-go-auth's README, "Redis":
	//   "For user check, Redis must contain the KEY username and the
	//   password hash as value."
	//   "For superuser check, a user will be a superuser if there exists a
	//   KEY username:su and it returns a string value "true"."
	//   "SETS with KEYS "username:sacls", "username:racls",
	//   "username:wacls" and "username:rwacls" ... for subscribe, read,
	//   write and readwrite topics", "readwrite (MOSQ_ACL_READ |
	//   MOSQ_ACL_WRITE, **not** MOSQ_ACL_SUBSCRIBE)", and common rules in
	//   "common:sacls", "common:racls", "common:wacls", "common:rwacls"
	//   (its backend fills %u and %c in the common rules only).
	storetest.RedisCLI(t, admin,
		[]any{"SET", "alice", storetest.GoAuthPBKDF2},
		[]any{"SET", "bob", storetest.GoAuthBcrypt},
		[]any{"SET", "carol", storetest.GoAuthArgon2id},
		[]any{"SET", "dave", storetest.GoAuthPBKDF2PHC},
		[]any{"SET", "root", storetest.GoAuthBcrypt},
		[]any{"SET", "root:su", "true"},
		[]any{"SET", "bob:su", "yes"}, // only "true" is
		[]any{"SADD", "alice:sacls", "alice/in/#", "both/#", "narrow/#", "lonely/#"},
		[]any{"SADD", "alice:racls", "alice/in/#", "narrow/a/#", "narrow/b"},
		[]any{"SADD", "alice:wacls", "alice/out/#"},
		[]any{"SADD", "alice:rwacls", "both/#", "rw/only/#", "alice/%u"},
		[]any{"SADD", "common:sacls", "devices/%u/#", "clients/%c", "x/dev-%u/y"},
		[]any{"SADD", "common:racls", "devices/%u/#", "clients/%c"},
		[]any{"SADD", "common:rwacls", "x/dev-%u/y"},
		[]any{"SADD", "common:wacls", "status/%u", "bad/#/acl"},
	)
	s := schemaStore(t, srv, mustGoAuth(t, schemas.GoAuthOptions{}))

	for _, c := range []struct{ user, password string }{
		{"alice", "goauth-pass"}, {"bob", "bcrypt-pass"}, {"carol", "argon-pass"}, {"dave", "phc-pass"}, {"root", "bcrypt-pass"},
	} {
		wantOutcome(t, decide(t, s, storetest.Req(c.user, c.password)), policy.Accepted)
		wantOutcome(t, decide(t, s, storetest.Req(c.user, c.password+"!")), policy.BadCredentials)
	}
	wantOutcome(t, decide(t, s, storetest.Req("nobody", "goauth-pass")), policy.BadCredentials)
	// A key of another type is no user (and no error).
	wantOutcome(t, decide(t, s, storetest.Req("alice:sacls", "goauth-pass")), policy.BadCredentials)

	root := decide(t, s, storetest.Req("root", "bcrypt-pass"))
	if !root.Topics.All {
		t.Fatal("root:su true is no superuser")
	}
	if _, ok := root.Topics.CanSubscribe("#"); !ok {
		t.Fatal("the superuser may not subscribe to #")
	}
	if bob := decide(t, s, storetest.Req("bob", "bcrypt-pass")); bob.Topics.All {
		t.Fatal("bob:su yes is a superuser")
	}

	alice := storetest.Req("alice", "goauth-pass")
	alice.ClientID = "alice-7"
	alice.Explain = &policy.Explanation{}
	d := decide(t, s, alice)
	for _, c := range []struct {
		topic    string
		pub, sub bool
	}{
		{"alice/in/x", false, true},  // sacls and racls
		{"alice/out/x", true, false}, // wacls
		{"both/x", true, true},       // sacls, and rwacls for reading and writing
		{"rw/only/x", true, false},   // rwacls: readwrite does not include subscribe
		{"alice/%u", true, false},    // a user's own rules hold %u as text
		{"alice/alice", false, false},
		{"narrow/a/x", false, true}, // sacls narrow/# read only where racls allow
		{"narrow/b", false, true},
		{"narrow/c", false, false},
		{"lonely/x", false, false}, // sacls without any read rule: nothing
		{"devices/alice/t", false, true},
		{"devices/bob/t", false, false},
		{"clients/alice-7", false, true},
		{"x/dev-alice/y", true, true}, // %u inside a level, as its backend fills it
		{"status/alice", true, false},
		{"bad/x/acl", false, false},
	} {
		if _, ok := d.Topics.CanPublish(c.topic); ok != c.pub {
			t.Errorf("alice: CanPublish(%s) = %v, want %v", c.topic, ok, c.pub)
		}
		if _, ok := d.Topics.CanSubscribe(c.topic); ok != c.sub {
			t.Errorf("alice: CanSubscribe(%s) = %v, want %v", c.topic, ok, c.sub)
		}
	}
	for _, f := range []string{"narrow/#", "narrow/+"} {
		if _, ok := d.Topics.CanSubscribe(f); ok {
			t.Errorf("alice may subscribe to %s, where racls allow only part of it", f)
		}
	}
	if _, ok := d.Topics.CanSubscribe("narrow/a/#"); !ok {
		t.Error("alice may not subscribe to narrow/a/#, which sacls and racls allow")
	}
	var rulesStep string
	for _, st := range alice.Explain.Steps {
		if st.Check == "topic rules" {
			rulesStep = st.Detail
		}
	}
	for _, says := range []string{"lonely/#", "no read rule", "bad/#/acl"} {
		if !strings.Contains(rulesStep, says) {
			t.Errorf("explain's topic rules step does not say %q: %s", says, rulesStep)
		}
	}

	// A name holding + # / fills no common rule: they grant nothing;
	// the user's own stand.
	for _, name := range []string{"a+b", "x/y", "#"} {
		storetest.RedisCLI(t, admin, []any{"SET", name, storetest.GoAuthBcrypt}, []any{"SADD", name + ":wacls", "own/topic"})
		r := storetest.Req(name, "bcrypt-pass")
		r.ClientID = "cid"
		open := New(s.rdb, Options{Timeout: time.Second, Schema: s.schema, ClientIDsDefault: []string{"*"}})
		d := decide(t, open, r)
		wantOutcome(t, d, policy.Accepted)
		if _, ok := d.Topics.CanSubscribe("devices/#"); ok {
			t.Errorf("%q may subscribe to devices/#", name)
		}
		for _, topic := range []string{"status/a", "status/x", "status/x/y", "x/dev-a/y"} {
			if _, ok := d.Topics.CanPublish(topic); ok {
				t.Errorf("%q may publish to %s", name, topic)
			}
		}
		if _, ok := d.Topics.CanPublish("own/topic"); !ok {
			t.Errorf("%q lost its own rule", name)
		}
	}

	// Options: superuser checks off; a utf-8 salt.
	off := schemaStore(t, srv, mustGoAuth(t, schemas.GoAuthOptions{DisableSuperuser: true}))
	if d := decide(t, off, storetest.Req("root", "bcrypt-pass")); d.Topics.All {
		t.Fatal("root is a superuser with superuser checks off")
	}
	storetest.RedisCLI(t, admin, []any{"SET", "utf", storetest.GoAuthPBKDF2UTF})
	wantOutcome(t, decide(t, s, storetest.Req("utf", "utf8-pass")), policy.BadCredentials) // base64 salt by default
	utf := schemaStore(t, srv, mustGoAuth(t, schemas.GoAuthOptions{SaltEncoding: "utf-8"}))
	wantOutcome(t, decide(t, utf, storetest.Req("utf", "utf8-pass")), policy.Accepted)
	wantOutcome(t, decide(t, utf, storetest.Req("utf", "utf8-pas")), policy.BadCredentials)
	if _, err := schemas.NewGoAuth(schemas.GoAuthOptions{SaltEncoding: "latin-1"}); err == nil {
		t.Fatal("salt encoding latin-1 accepted")
	}
}

func mustGoAuth(t *testing.T, o schemas.GoAuthOptions) schemas.Schema {
	t.Helper()
	sc, err := schemas.NewGoAuth(o)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// TestSchemaOneRoundTrip: a CONNECT's decision with another schema is
// one pipeline, the native keys included: a ban queued beside the
// schema's reads refuses without a hash.
func TestSchemaOneRoundTrip(t *testing.T) {
	srv := testenv.Redis(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { admin.Close() })
	storetest.RedisCLI(t, admin, []any{"SET", "alice", storetest.GoAuthBcrypt}, []any{"SADD", "alice:wacls", "a/#"}, []any{"SADD", "common:sacls", "c/#"})
	rdb := storetest.Client(t, testenv.RedisURL(srv))
	count := &sentCounter{}
	rdb.AddHook(count)
	s := New(rdb, Options{Timeout: time.Second, Schema: mustGoAuth(t, schemas.GoAuthOptions{})})
	wantOutcome(t, decide(t, s, storetest.Req("alice", "bcrypt-pass")), policy.Accepted)
	if count.pipelines.Load() != 1 || count.commands.Load() != 0 {
		t.Fatalf("a decision made %d pipelines and %d single commands, want one pipeline", count.pipelines.Load(), count.commands.Load())
	}
	if _, err := s.AddBan(context.Background(), rules.BanUser, "alice", time.Hour, "test"); err != nil {
		t.Fatal(err)
	}
	hashes := s.HashCount()
	count.pipelines.Store(0)
	count.commands.Store(0)
	wantOutcome(t, decide(t, s, storetest.Req("alice", "bcrypt-pass")), policy.Banned)
	if count.pipelines.Load() != 1 || count.commands.Load() != 0 || s.HashCount() != hashes {
		t.Fatalf("a banned user: %d pipelines, %d commands, %d hashes", count.pipelines.Load(), count.commands.Load(), s.HashCount()-hashes)
	}
}

// sentCounter is a go-redis hook counting what a client sends, but for a
// new connection's handshake.
type sentCounter struct{ pipelines, commands atomic.Int64 } // atomic: Watch's refreshes run beside the test

// setup are the commands of a connection's handshake.
var setup = []string{"hello", "client", "auth", "select", "ping", "readonly"}

func (c *sentCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *sentCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !slices.Contains(setup, cmd.Name()) {
			c.commands.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (c *sentCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if slices.ContainsFunc(cmds, func(cmd redis.Cmder) bool { return !slices.Contains(setup, cmd.Name()) }) {
			c.pipelines.Add(1)
		}
		return next(ctx, cmds)
	}
}

// TestSchemaExplain: explain says, step by step, what applies in another
// schema: where the user is, that enabled, not_after, certs and cidrs
// are not part of its layout, the superuser flag, the topic rules.
func TestSchemaExplain(t *testing.T) {
	srv := testenv.Redis(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { admin.Close() })
	storetest.RedisCLI(t, admin, []any{"HSET", "mqtt_user:alice", "password_hash", storetest.EMQXSHA256Prefix, "salt", "s4lt", "is_superuser", "true"})
	s := schemaStore(t, srv, mustEMQX(t, schemas.EMQXOptions{}))
	r := storetest.Req("alice", "")
	r.HasPassword = false
	r.Explain = &policy.Explanation{NoPassword: true}
	d := decide(t, s, r)
	wantOutcome(t, d, policy.Accepted)
	steps := map[string]policy.Step{}
	for _, st := range r.Explain.Steps {
		steps[st.Check] = st
	}
	for _, c := range []struct{ check, verdict, says string }{
		{"user", policy.Pass, "emqx: mqtt_user:alice"},
		{"password", policy.NotChecked, ""},
		{"superuser", policy.Pass, "is_superuser true"},
		{"topic rules", policy.Pass, "mqtt_acl:alice"},
		{"enabled", policy.NotApplied, "not part of the emqx layout"},
		{"not_after", policy.NotApplied, "not part of the emqx layout"},
		{"certs", policy.NotApplied, "not part of the emqx layout"},
		{"cidrs", policy.NotApplied, "not part of the emqx layout"},
		{"clientids", policy.Pass, "alice:dev-1"},
	} {
		st, ok := steps[c.check]
		if !ok || st.Verdict != c.verdict || !strings.Contains(st.Detail, c.says) {
			t.Errorf("step %s: %+v, want %s saying %q", c.check, st, c.verdict, c.says)
		}
	}
	r = storetest.Req("ghost", "x")
	r.Explain = &policy.Explanation{}
	wantOutcome(t, decide(t, s, r), policy.BadCredentials)
	if st := r.Explain.Steps[len(r.Explain.Steps)-1]; st.Check != "user" || !strings.Contains(st.Detail, "mqtt_user:ghost") {
		t.Errorf("unknown user's step: %+v", st)
	}
}

// TestSchemaDummyTakesTheFleetsShape: the unknown-user path of another
// schema verifies against a hash of the shape (format and cost) of the
// stored hashes the store reads, so an unknown user costs what a wrong
// password costs; it starts with the layout's usual shape.
func TestSchemaDummyTakesTheFleetsShape(t *testing.T) {
	srv := testenv.Redis(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { admin.Close() })
	s := schemaStore(t, srv, mustGoAuth(t, schemas.GoAuthOptions{}))
	shape := func(h string) string {
		sh, ok := passwords.Shape(h)
		if !ok {
			t.Fatalf("no shape for %q", h)
		}
		return sh
	}
	if got := shape(s.dummy.Hash()); got != shape(storetest.GoAuthPBKDF2) { // made with mosquitto-go-auth's defaults
		t.Fatalf("first dummy's shape %q", got)
	}
	storetest.RedisCLI(t, admin, []any{"SET", "bob", storetest.GoAuthBcrypt}, []any{"SET", "carol", storetest.GoAuthArgon2id})
	for _, c := range []struct{ user, pass, stored string }{{"bob", "x", storetest.GoAuthBcrypt}, {"carol", "y", storetest.GoAuthArgon2id}} {
		hashes := s.HashCount()
		wantOutcome(t, decide(t, s, storetest.Req(c.user, c.pass)), policy.BadCredentials)
		if shape(s.dummy.Hash()) != shape(c.stored) {
			t.Fatalf("after %s: dummy %q, want the shape of %q", c.user, s.dummy.Hash(), c.stored)
		}
		wantOutcome(t, decide(t, s, storetest.Req("nobody", c.pass)), policy.BadCredentials)
		if s.HashCount() != hashes+2 {
			t.Fatalf("an unknown user computed %d hashes, want one as a wrong password does", s.HashCount()-hashes-1)
		}
		if ok, _, err := passwords.NewChecker(passwords.Options{}).Check(context.Background(), s.dummy.Hash(), c.pass, false); ok || err != nil {
			t.Fatalf("the dummy verifies: %v %v", ok, err)
		}
	}
	e := schemaStore(t, srv, mustEMQX(t, schemas.EMQXOptions{PasswordHash: "pbkdf2", PBKDF2MacFun: "sha256", PBKDF2Iterations: 4096}))
	if want := shape(passwords.EMQXHash("pbkdf2", "sha256,4096,0", strings.Repeat("x", 32), storetest.EMQXPBKDF2SHA256)); shape(e.dummy.Hash()) != want {
		t.Fatalf("emqx dummy %q, want shape %q", e.dummy.Hash(), want)
	}
}

// TestSchemaOnCluster: on a Redis Cluster, the schemas' keys spread over
// the nodes (a user's keys, the common sets, the native bans) are read by
// one pipeline sent to the nodes in parallel, and the keyspace
// notifications of every master are watched.
func TestSchemaOnCluster(t *testing.T) {
	nodes := testenv.RedisCluster(t, 3, 0, "--notify-keyspace-events", "K$sghx")
	rdb := storetest.Client(t, "redis://"+nodes[0].Addr()+"/0?cluster=true&addr="+nodes[1].Addr()+"&addr="+nodes[2].Addr())
	cc := rdb.(*redis.ClusterClient)
	ctx := testenv.Context(t)
	owners := map[string]bool{}
	for _, key := range []string{"alice", "alice:sacls", "alice:racls", "common:rwacls", "mqtt:ban:user"} {
		addr, err := storetest.SlotOwner(ctx, cc, key)
		if err != nil {
			t.Fatal(err)
		}
		owners[addr] = true
	}
	if len(owners) < 2 {
		t.Fatalf("the keys are on %d node(s); the test needs them spread", len(owners))
	}
	for _, err := range []error{cc.Set(ctx, "alice", storetest.GoAuthBcrypt, 0).Err(), cc.SAdd(ctx, "alice:sacls", "a/#").Err(),
		cc.SAdd(ctx, "alice:racls", "a/#").Err(), cc.SAdd(ctx, "common:rwacls", "c/%u").Err()} {
		if err != nil {
			t.Fatal(err)
		}
	}
	count := &sentCounter{}
	cc.AddHook(count)
	s := New(rdb, Options{Timeout: 2 * time.Second, Schema: mustGoAuth(t, schemas.GoAuthOptions{})})
	d := decide(t, s, storetest.Req("alice", "bcrypt-pass"))
	wantOutcome(t, d, policy.Accepted)
	if count.pipelines.Load() != 1 || count.commands.Load() != 0 {
		t.Fatalf("%d pipelines, %d commands; want one pipeline", count.pipelines.Load(), count.commands.Load())
	}
	if _, ok := d.Topics.CanSubscribe("a/b"); !ok {
		t.Error("alice's sacls and racls do not apply")
	}
	if _, ok := d.Topics.CanPublish("c/alice"); !ok {
		t.Error("common:rwacls does not apply")
	}
	feed := storetest.Watch(t, ctx, s)
	feed.Await(20*time.Second, "SREM alice:sacls on its node", func() {
		_ = cc.SAdd(ctx, "alice:sacls", "tmp").Err()
		_ = cc.SRem(ctx, "alice:sacls", "tmp").Err()
	}, storetest.ForUser("alice"))
	feed.Await(10*time.Second, "SADD common:rwacls on its node", func() { _ = cc.SAdd(ctx, "common:rwacls", "d/%u").Err() },
		func(c policy.Change) bool { return c.Role == rules.DefaultRole })
}

// second is the second of two results (a grant's verdict).
func second[A, B any](_ A, b B) B { return b }
