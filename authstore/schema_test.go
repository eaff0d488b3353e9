package authstore

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Hashes of other products' layouts, made outside this code base (the
// commands that made them are in schemaVectorCommands, which
// TestSchemaVectorsAreIndependent runs again when the tools are there):
// Python 3's hashlib (md5, sha1, sha256, sha512, pbkdf2_hmac), its crypt
// module (libxcrypt's bcrypt), and the Argon2 reference implementation's
// argon2 command (Debian's argon2 package).
var (
	// EMQX: hex digests of the salted password, as its
	// password_hash_algorithm computes them; salt "s4lt".
	emqxMD5Prefix    = "8b9b149e520e5bb006f722e08bd335e8"                                                                                                 // md5("s4lt" + "md5-pass")
	emqxSHAPrefix    = "e3db994026f36a68d920a1ad82e6c794ca0b8533"                                                                                         // sha1("s4lt" + "sha-pass")
	emqxSHA256Prefix = "e222730a3efebea28fd0bc3c138cdbb69377388d0cd1de3f6b8ec96450fe3dc5"                                                                 // sha256("s4lt" + "sha256-pass")
	emqxSHA512Suffix = "49fcfb3d0f275278f8d9de5f34f5a1fbd8cf50028c37103a6b6bad142687ffde22068d1933562d2a6a9066ac7cccae7e287ef43aec32d91a695ce67684f30e11" // sha512("sha512-pass" + "s4lt")
	emqxSHA256NoSalt = "97780b67166efd934e75d8a9556980067f505d26dcc9997972eecc8594a9a244"                                                                 // sha256("nosalt-pass")
	emqxBcrypt       = "$2b$05$CCCCCCCCCCCCCCCCCCCCC.RAnASC3Zt8Cdzj6FJfrRtkBlq1blJzS"                                                                     // "bcrypt-pass"
	emqxPBKDF2SHA256 = "1109007a132eb304456dba5a7f80733a432f24243b7a513ac30cc949ba16f095"                                                                 // pbkdf2_hmac(sha256, "pbkdf2-pass", "s4lt", 4096), 32 bytes
	emqxPBKDF2SHA1   = "215737cbc6995db15e6c598c4768975aac453ea3"                                                                                         // pbkdf2_hmac(sha1, ..., 1000): dk_length unset, 20 bytes
	emqxPBKDF2SHA512 = "831fbb5d7b2a6febf4007688101e77b8"                                                                                                 // pbkdf2_hmac(sha512, ..., 1000, 16)

	// mosquitto-go-auth: its hashers' formats.
	goauthPBKDF2    = "PBKDF2$sha512$100000$MDEyMzQ1Njc4OWFiY2RlZg==$ZZcyTkb9jJdWxCWxyq8jDJ23R3dj7nY7TlS0u2KHH/g="       // "goauth-pass", its default hasher
	goauthPBKDF2UTF = "PBKDF2$sha256$1000$plainsalt$ae/HPMcXCq3iUfYayxN369BCFGzoN9qj3FhhvI+MiSw="                        // "utf8-pass", salt_encoding utf-8
	goauthPBKDF2PHC = "$pbkdf2-sha512$i=1000,l=32$MDEyMzQ1Njc4OWFiY2RlZg$U3puKzuFRIYghRRKVkOEoQkUWk1k2mHn1m6IFRh1Io8"    // "phc-pass"
	goauthBcrypt    = "$2a$05$DDDDDDDDDDDDDDDDDDDDD.m9iDMKbZP6JE6aXIzVn3VC8Xze48S/m"                                     // "bcrypt-pass"
	goauthArgon2id  = "$argon2id$v=19$m=4096,t=3,p=2$c2FsdHNhbHRzYWx0MTIzNA$C3Pd//LSksBD9VD+L1Wv7pmyrMx/7UIe+Kr+/LBOrGQ" // "argon-pass", its argon2id defaults
)

// schemaVectorCommands make the vectors above again: deterministic, as
// their salts are fixed.
var schemaVectorCommands = []struct {
	want string
	cmd  []string
}{
	{emqxMD5Prefix, []string{"python3", "-c", `import hashlib; print(hashlib.md5(b"s4lt"+b"md5-pass").hexdigest())`}},
	{emqxSHAPrefix, []string{"python3", "-c", `import hashlib; print(hashlib.sha1(b"s4lt"+b"sha-pass").hexdigest())`}},
	{emqxSHA256Prefix, []string{"python3", "-c", `import hashlib; print(hashlib.sha256(b"s4lt"+b"sha256-pass").hexdigest())`}},
	{emqxSHA512Suffix, []string{"python3", "-c", `import hashlib; print(hashlib.sha512(b"sha512-pass"+b"s4lt").hexdigest())`}},
	{emqxSHA256NoSalt, []string{"python3", "-c", `import hashlib; print(hashlib.sha256(b"nosalt-pass").hexdigest())`}},
	{emqxBcrypt, []string{"python3", "-W", "ignore", "-c", `import crypt; print(crypt.crypt("bcrypt-pass", "$2b$05$CCCCCCCCCCCCCCCCCCCCC."))`}},
	{emqxPBKDF2SHA256, []string{"python3", "-c", `import hashlib; print(hashlib.pbkdf2_hmac("sha256", b"pbkdf2-pass", b"s4lt", 4096).hex())`}},
	{emqxPBKDF2SHA1, []string{"python3", "-c", `import hashlib; print(hashlib.pbkdf2_hmac("sha1", b"pbkdf2-pass", b"s4lt", 1000).hex())`}},
	{emqxPBKDF2SHA512, []string{"python3", "-c", `import hashlib; print(hashlib.pbkdf2_hmac("sha512", b"pbkdf2-pass", b"s4lt", 1000, 16).hex())`}},
	{goauthPBKDF2, []string{"python3", "-c", `import hashlib, base64; s=b"0123456789abcdef"; ` +
		`print("PBKDF2$sha512$100000$"+base64.b64encode(s).decode()+"$"+base64.b64encode(hashlib.pbkdf2_hmac("sha512", b"goauth-pass", s, 100000, 32)).decode())`}},
	{goauthPBKDF2UTF, []string{"python3", "-c", `import hashlib, base64; ` +
		`print("PBKDF2$sha256$1000$plainsalt$"+base64.b64encode(hashlib.pbkdf2_hmac("sha256", b"utf8-pass", b"plainsalt", 1000, 32)).decode())`}},
	{goauthPBKDF2PHC, []string{"python3", "-c", `import hashlib, base64; s=b"0123456789abcdef"; b=lambda x: base64.b64encode(x).decode().rstrip("="); ` +
		`print("$pbkdf2-sha512$i=1000,l=32$"+b(s)+"$"+b(hashlib.pbkdf2_hmac("sha512", b"phc-pass", s, 1000, 32)))`}},
	{goauthBcrypt, []string{"python3", "-W", "ignore", "-c", `import crypt; print(crypt.crypt("bcrypt-pass", "$2a$05$DDDDDDDDDDDDDDDDDDDDD."))`}},
	{goauthArgon2id, []string{"sh", "-c", `printf %s argon-pass | argon2 saltsaltsalt1234 -id -t 3 -m 12 -p 2 -l 32 -e`}},
}

// TestSchemaVectorsAreIndependent makes every vector again with the tool
// that made it, where that tool is installed (Python 3.11's crypt module,
// the argon2 command); the vectors are the tools', not this package's.
func TestSchemaVectorsAreIndependent(t *testing.T) {
	ran := 0
	for _, v := range schemaVectorCommands {
		bin := v.cmd[0]
		if bin == "sh" {
			bin = "argon2"
		}
		if _, err := exec.LookPath(bin); err != nil {
			continue
		}
		out, err := exec.Command(v.cmd[0], v.cmd[1:]...).Output()
		if err != nil {
			continue // e.g. a Python without the crypt module (3.13)
		}
		ran++
		if got := strings.TrimSpace(string(out)); got != v.want {
			t.Errorf("%v made %q, the vector is %q", v.cmd, got, v.want)
		}
	}
	if ran == 0 {
		t.Skip("neither python3 nor argon2 is installed")
	}
	t.Logf("%d of %d vectors made again", ran, len(schemaVectorCommands))
}

// schemaStore is a store of the schema over srv's Redis, without limits
// on failed attempts (a decision is then one pipeline and nothing more).
func schemaStore(t *testing.T, srv *testenv.Server, sc Schema) *Store {
	t.Helper()
	rdb, err := NewClient(testenv.RedisURL(srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return New(rdb, Options{Timeout: time.Second, Schema: sc})
}

func mustEMQX(t *testing.T, o EMQXOptions) Schema {
	t.Helper()
	if o.AuthnCmd == "" {
		o.AuthnCmd = DefaultEMQXAuthnCmd
	}
	if o.AuthzCmd == "" {
		o.AuthzCmd = DefaultEMQXAuthzCmd
	}
	if o.PasswordHash == "" {
		o.PasswordHash, o.SaltPosition = "sha256", "prefix"
	}
	sc, err := NewEMQXSchema(o)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// redisCLI runs commands as an operator would with redis-cli.
func redisCLI(t *testing.T, admin *redis.Client, cmds ...[]any) {
	t.Helper()
	for _, c := range cmds {
		if err := admin.Do(context.Background(), c...).Err(); err != nil {
			t.Fatalf("%v: %v", c, err)
		}
	}
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

// wantOutcome checks a decision's outcome and its CONNACK codes (3.1.1
// and 5).
func wantOutcome(t *testing.T, d policy.Decision, want policy.Outcome, v3, v5 byte) {
	t.Helper()
	got3, _ := d.Code().V3()
	if d.Outcome != want || got3 != v3 || byte(d.Code()) != v5 {
		t.Fatalf("%+v: codes 0x%02X / 0x%02X, want %s 0x%02X / 0x%02X", d, got3, byte(d.Code()), want, v3, v5)
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
	redisCLI(t, admin,
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
	s := schemaStore(t, srv, mustEMQX(t, EMQXOptions{PasswordHash: "sha256", SaltPosition: "suffix"}))

	d := decide(t, s, req("emqx_u", "public"))
	wantOutcome(t, d, policy.Accepted, 0, 0)
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

	v5 := req("emqx_u", "Public")
	v5.Protocol = packets.V5
	wantOutcome(t, decide(t, s, v5), policy.BadCredentials, 0x04, 0x86)
	wantOutcome(t, decide(t, s, req("emqx_u", "public ")), policy.BadCredentials, 0x04, 0x86)
	wantOutcome(t, decide(t, s, req("nobody", "public")), policy.BadCredentials, 0x04, 0x86)

	d = decide(t, s, req("member", "public"))
	wantOutcome(t, d, policy.Accepted, 0, 0)
	if d.Topics.All {
		t.Fatal("is_superuser 0 passes every rule")
	}
	for _, c := range []struct {
		topic    string
		pub, sub bool
	}{
		{"t/1", false, true},
		{"t/2", false, false}, // subscribe at QoS 1 or 2 only: a condition the proxy does not check
		{"t/3", false, false}, // publish without retain only: likewise
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
		o                          EMQXOptions
	}{
		{"md5 prefix", "u-md5", emqxMD5Prefix, "md5-pass", EMQXOptions{PasswordHash: "md5", SaltPosition: "prefix"}},
		{"sha prefix", "u-sha", emqxSHAPrefix, "sha-pass", EMQXOptions{PasswordHash: "sha", SaltPosition: "prefix"}},
		{"sha256 prefix (EMQX's default)", "u-sha256", emqxSHA256Prefix, "sha256-pass", EMQXOptions{PasswordHash: "sha256", SaltPosition: "prefix"}},
		{"sha256 in capitals", "u-sha256-caps", strings.ToUpper(emqxSHA256Prefix), "sha256-pass", EMQXOptions{PasswordHash: "sha256", SaltPosition: "prefix"}},
		{"sha512 suffix", "u-sha512", emqxSHA512Suffix, "sha512-pass", EMQXOptions{PasswordHash: "sha512", SaltPosition: "suffix"}},
		{"sha256 salt disabled", "u-nosalt", emqxSHA256NoSalt, "nosalt-pass", EMQXOptions{PasswordHash: "sha256", SaltPosition: "disable"}},
		{"bcrypt", "u-bcrypt", emqxBcrypt, "bcrypt-pass", EMQXOptions{PasswordHash: "bcrypt"}},
		{"pbkdf2 sha256", "u-pbkdf2", emqxPBKDF2SHA256, "pbkdf2-pass", EMQXOptions{PasswordHash: "pbkdf2", PBKDF2MacFun: "sha256", PBKDF2Iterations: 4096, PBKDF2DKLength: 32}},
		{"pbkdf2 sha, dk_length unset", "u-pbkdf2-sha", emqxPBKDF2SHA1, "pbkdf2-pass", EMQXOptions{PasswordHash: "pbkdf2", PBKDF2MacFun: "sha", PBKDF2Iterations: 1000}},
		{"pbkdf2 sha512, dk_length 16", "u-pbkdf2-512", emqxPBKDF2SHA512, "pbkdf2-pass", EMQXOptions{PasswordHash: "pbkdf2", PBKDF2MacFun: "sha512", PBKDF2Iterations: 1000, PBKDF2DKLength: 16}},
		{"plain prefix, allowed", "u-plain", "s4ltplain-pass", "plain-pass", EMQXOptions{PasswordHash: "plain", SaltPosition: "prefix", AllowPlain: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			redisCLI(t, admin, []any{"HSET", "mqtt_user:" + c.user, "password_hash", c.hash, "salt", "s4lt"})
			s := schemaStore(t, srv, mustEMQX(t, c.o))
			wantOutcome(t, decide(t, s, req(c.user, c.password)), policy.Accepted, 0, 0)
			wantOutcome(t, decide(t, s, req(c.user, c.password+"x")), policy.BadCredentials, 0x04, 0x86)
			wantOutcome(t, decide(t, s, req(c.user, strings.ToUpper(c.password))), policy.BadCredentials, 0x04, 0x86)
			wantOutcome(t, decide(t, s, req(c.user+"-gone", c.password)), policy.BadCredentials, 0x04, 0x86)
		})
	}
	t.Run("a hash of another algorithm than the configured one", func(t *testing.T) {
		redisCLI(t, admin, []any{"HSET", "mqtt_user:mixed", "password_hash", emqxBcrypt})
		s := schemaStore(t, srv, mustEMQX(t, EMQXOptions{PasswordHash: "sha256", SaltPosition: "prefix"}))
		wantOutcome(t, decide(t, s, req("mixed", "bcrypt-pass")), policy.BadCredentials, 0x04, 0x86)
		s = schemaStore(t, srv, mustEMQX(t, EMQXOptions{PasswordHash: "bcrypt"}))
		redisCLI(t, admin, []any{"HSET", "mqtt_user:mixed", "password_hash", emqxSHA256NoSalt})
		wantOutcome(t, decide(t, s, req("mixed", "nosalt-pass")), policy.BadCredentials, 0x04, 0x86)
	})
	t.Run("plain is refused unless allowed", func(t *testing.T) {
		_, err := NewEMQXSchema(EMQXOptions{AuthnCmd: DefaultEMQXAuthnCmd, AuthzCmd: DefaultEMQXAuthzCmd, PasswordHash: "plain", SaltPosition: "disable"})
		var oe *OptionError
		if !errors.As(err, &oe) || oe.Option != "PasswordHash" {
			t.Fatalf("plain without AllowPlain: %v", err)
		}
	})
	t.Run("a user without password_hash", func(t *testing.T) {
		redisCLI(t, admin, []any{"HSET", "mqtt_user:nohash", "salt", "s4lt", "is_superuser", "1"})
		s := schemaStore(t, srv, mustEMQX(t, EMQXOptions{}))
		wantOutcome(t, decide(t, s, req("nohash", "")), policy.BadCredentials, 0x04, 0x86)
	})
	t.Run("the native schema does not read the emqx form", func(t *testing.T) {
		s := schemaStore(t, srv, nil)
		redisCLI(t, admin, []any{"HSET", s.UserKey("sneaky"), "password", emqxHash("plain", "disable", "", "secret")})
		wantOutcome(t, decide(t, s, req("sneaky", "secret")), policy.BadCredentials, 0x04, 0x86)
	})
}

// TestEMQXCommands: the authenticator's command with its fields in any
// order, HGET, the field password, other key templates; and the commands
// and options that cannot be used, each named.
func TestEMQXCommands(t *testing.T) {
	srv := testenv.Redis(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { admin.Close() })
	redisCLI(t, admin,
		// EMQX's documentation also has: cmd = HMGET mqtt:${username} password salt is_superuser
		[]any{"HSET", "mqtt:user123", "is_superuser", "1", "salt", "s4lt", "password", emqxSHA256Prefix},
		[]any{"HSET", "mqtt:nosalt", "password", emqxSHA256NoSalt},
		[]any{"HSET", "devices:dev:1", "password_hash", emqxSHA256Prefix, "salt", "s4lt"},
		[]any{"HSET", "acl", "shared/#", "all"},
	)
	for _, c := range []struct {
		name, authn, authz string
		r                  policy.Request
		super              bool
	}{
		{"password field, reordered", "HMGET mqtt:${username} is_superuser password salt", "", req("user123", "sha256-pass"), true},
		{"hget, no salt", "HGET mqtt:${username} password", "", req("nosalt", "nosalt-pass"), false},
		{"by client id, lower case", "hmget devices:${clientid} salt password_hash", "hgetall acl", withClientID(req("dev", "sha256-pass"), "dev:1"), false},
		{"quoted arguments", `HMGET "mqtt:${username}" 'password' salt`, "", req("user123", "sha256-pass"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := schemaStore(t, srv, mustEMQX(t, EMQXOptions{AuthnCmd: c.authn, AuthzCmd: c.authz}))
			d := decide(t, s, c.r)
			wantOutcome(t, d, policy.Accepted, 0, 0)
			if d.Topics.All != c.super {
				t.Fatalf("superuser %v, want %v", d.Topics.All, c.super)
			}
			wrong := c.r
			wrong.Password = "x"
			wantOutcome(t, decide(t, s, wrong), policy.BadCredentials, 0x04, 0x86)
		})
	}
	t.Run("a shared rule hash", func(t *testing.T) {
		s := schemaStore(t, srv, mustEMQX(t, EMQXOptions{AuthnCmd: "HMGET devices:${clientid} password_hash salt", AuthzCmd: "HGETALL acl"}))
		d := decide(t, s, withClientID(req("dev", "sha256-pass"), "dev:1"))
		if _, ok := d.Topics.CanPublish("shared/x"); !ok {
			t.Fatal("the shared rule does not apply")
		}
	})
	for _, c := range []struct {
		o      EMQXOptions
		option string
		says   string
	}{
		{EMQXOptions{AuthnCmd: "GET mqtt_user:${username}"}, "AuthnCmd", "HGET or HMGET"},
		{EMQXOptions{AuthnCmd: "HMGET mqtt_user:${username} salt is_superuser"}, "AuthnCmd", "neither password_hash nor password"},
		{EMQXOptions{AuthnCmd: "HMGET mqtt_user:${username} password_hash clientid_override"}, "AuthnCmd", "no equivalent"},
		{EMQXOptions{AuthnCmd: "HMGET mqtt_user:${username} password_hash enabled"}, "AuthnCmd", `"enabled"`},
		{EMQXOptions{AuthnCmd: "HGET mqtt_user:${username} password_hash salt"}, "AuthnCmd", "one field"},
		{EMQXOptions{AuthnCmd: "HMGET mqtt_user:${cert_subject} password_hash"}, "AuthnCmd", "${cert_subject} has no equivalent"},
		{EMQXOptions{AuthnCmd: "HMGET mqtt_user:${nope} password_hash"}, "AuthnCmd", "unknown placeholder ${nope}"},
		{EMQXOptions{AuthnCmd: `HMGET "mqtt_user:${username} password_hash`}, "AuthnCmd", "unbalanced quotes"},
		{EMQXOptions{AuthzCmd: "HMGET mqtt_acl:${username} t/1"}, "AuthzCmd", "HGETALL"},
		{EMQXOptions{AuthzCmd: "HGETALL mqtt_acl:${peerport}"}, "AuthzCmd", "${peerport} has no equivalent"},
		{EMQXOptions{AuthzCmd: " "}, "AuthzCmd", "ACL=off"},
		{EMQXOptions{AuthzCompatibilityMode: "v3"}, "AuthzCompatibilityMode", "v4"},
		{EMQXOptions{PasswordHash: "sha1", SaltPosition: "prefix"}, "PasswordHash", "sha256"},
		{EMQXOptions{PasswordHash: "sha256", SaltPosition: "middle"}, "SaltPosition", "prefix, suffix or disable"},
		{EMQXOptions{PasswordHash: "pbkdf2", PBKDF2MacFun: "md4", PBKDF2Iterations: 1}, "PBKDF2MacFun", "no equivalent"},
		{EMQXOptions{PasswordHash: "pbkdf2", PBKDF2Iterations: 1}, "PBKDF2MacFun", "required"},
		{EMQXOptions{PasswordHash: "pbkdf2", PBKDF2MacFun: "sha256"}, "PBKDF2Iterations", "out of range"},
		{EMQXOptions{PasswordHash: "pbkdf2", PBKDF2MacFun: "sha256", PBKDF2Iterations: 1, PBKDF2DKLength: -1}, "PBKDF2DKLength", "out of range"},
	} {
		o := c.o
		if o.AuthnCmd == "" {
			o.AuthnCmd = DefaultEMQXAuthnCmd
		}
		if o.AuthzCmd == "" {
			o.AuthzCmd = DefaultEMQXAuthzCmd
		}
		if o.PasswordHash == "" {
			o.PasswordHash, o.SaltPosition = "sha256", "prefix"
		}
		_, err := NewEMQXSchema(o)
		var oe *OptionError
		if !errors.As(err, &oe) || oe.Option != c.option || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%+v: %v; want an error of %s saying %q", c.o, err, c.option, c.says)
		}
	}
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
		redisCLI(t, admin,
			[]any{"HSET", "mqtt_user:" + user, "password_hash", emqxSHA256Prefix, "salt", "s4lt"},
			append([]any{"HSET", "mqtt_acl:" + user}, rules...))
	}
	s := schemaStore(t, srv, mustEMQX(t, EMQXOptions{}))
	alice := req("alice", "sha256-pass")
	alice.CertSHA256, alice.CertCN = fpA[:], "dev-a"
	alice.Explain = &policy.Explanation{}
	d := decide(t, s, alice)
	wantOutcome(t, d, policy.Accepted, 0, 0)
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
		{"json/retain", false, true},
		{"json/qos", false, false},
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
		r := req(user, "sha256-pass")
		r.ClientID = "plain-id"
		s := schemaStore(t, srv, mustEMQX(t, EMQXOptions{}))
		sOpen := New(s.rdb, Options{Timeout: time.Second, Schema: s.schema, ClientIDsDefault: []string{"*"}})
		d := decide(t, sOpen, r)
		wantOutcome(t, d, policy.Accepted, 0, 0)
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
	redisCLI(t, admin, []any{"HSET", "mqtt_acl:old", "v4/sub", "1", "v4/pub", "2", "v4/%u/%c/#", "3", "v4/x", "4"},
		[]any{"HSET", "mqtt_user:old", "password_hash", emqxSHA256Prefix, "salt", "s4lt"})
	v4 := schemaStore(t, srv, mustEMQX(t, EMQXOptions{AuthzCompatibilityMode: "v4"}))
	d = decide(t, v4, req("old", "sha256-pass"))
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
	d = decide(t, s, req("old", "sha256-pass"))
	if _, ok := d.Topics.CanSubscribe("v4/sub"); ok {
		t.Error("value 1 is a rule outside compatibility mode v4")
	}

	// A rule key of another type grants nothing and is no error.
	redisCLI(t, admin, []any{"SET", "mqtt_acl:alice", "not a hash"})
	d = decide(t, s, req("alice", "sha256-pass"))
	wantOutcome(t, d, policy.Accepted, 0, 0)
	if _, ok := d.Topics.CanPublish("pub/only"); ok {
		t.Error("a string key holds rules")
	}
	// So does a user key of another type: no such user.
	redisCLI(t, admin, []any{"DEL", "mqtt_user:alice"}, []any{"SADD", "mqtt_user:alice", "x"})
	wantOutcome(t, decide(t, s, req("alice", "sha256-pass")), policy.BadCredentials, 0x04, 0x86)
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
	redisCLI(t, admin,
		[]any{"SET", "alice", goauthPBKDF2},
		[]any{"SET", "bob", goauthBcrypt},
		[]any{"SET", "carol", goauthArgon2id},
		[]any{"SET", "dave", goauthPBKDF2PHC},
		[]any{"SET", "root", goauthBcrypt},
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
	s := schemaStore(t, srv, mustGoAuth(t, GoAuthOptions{}))

	for _, c := range []struct{ user, password string }{
		{"alice", "goauth-pass"}, {"bob", "bcrypt-pass"}, {"carol", "argon-pass"}, {"dave", "phc-pass"}, {"root", "bcrypt-pass"},
	} {
		wantOutcome(t, decide(t, s, req(c.user, c.password)), policy.Accepted, 0, 0)
		wantOutcome(t, decide(t, s, req(c.user, c.password+"!")), policy.BadCredentials, 0x04, 0x86)
	}
	wantOutcome(t, decide(t, s, req("nobody", "goauth-pass")), policy.BadCredentials, 0x04, 0x86)
	// A key of another type is no user (and no error).
	wantOutcome(t, decide(t, s, req("alice:sacls", "goauth-pass")), policy.BadCredentials, 0x04, 0x86)

	root := decide(t, s, req("root", "bcrypt-pass"))
	if !root.Topics.All {
		t.Fatal("root:su true is no superuser")
	}
	if _, ok := root.Topics.CanSubscribe("#"); !ok {
		t.Fatal("the superuser may not subscribe to #")
	}
	if bob := decide(t, s, req("bob", "bcrypt-pass")); bob.Topics.All {
		t.Fatal("bob:su yes is a superuser")
	}

	alice := req("alice", "goauth-pass")
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
		redisCLI(t, admin, []any{"SET", name, goauthBcrypt}, []any{"SADD", name + ":wacls", "own/topic"})
		r := req(name, "bcrypt-pass")
		r.ClientID = "cid"
		open := New(s.rdb, Options{Timeout: time.Second, Schema: s.schema, ClientIDsDefault: []string{"*"}})
		d := decide(t, open, r)
		wantOutcome(t, d, policy.Accepted, 0, 0)
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
	off := schemaStore(t, srv, mustGoAuth(t, GoAuthOptions{DisableSuperuser: true}))
	if d := decide(t, off, req("root", "bcrypt-pass")); d.Topics.All {
		t.Fatal("root is a superuser with superuser checks off")
	}
	redisCLI(t, admin, []any{"SET", "utf", goauthPBKDF2UTF})
	wantOutcome(t, decide(t, s, req("utf", "utf8-pass")), policy.BadCredentials, 0x04, 0x86) // base64 salt by default
	utf := schemaStore(t, srv, mustGoAuth(t, GoAuthOptions{SaltEncoding: "utf-8"}))
	wantOutcome(t, decide(t, utf, req("utf", "utf8-pass")), policy.Accepted, 0, 0)
	wantOutcome(t, decide(t, utf, req("utf", "utf8-pas")), policy.BadCredentials, 0x04, 0x86)
	if _, err := NewGoAuthSchema(GoAuthOptions{SaltEncoding: "latin-1"}); err == nil {
		t.Fatal("salt encoding latin-1 accepted")
	}
}

func mustGoAuth(t *testing.T, o GoAuthOptions) Schema {
	t.Helper()
	sc, err := NewGoAuthSchema(o)
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
	redisCLI(t, admin, []any{"SET", "alice", goauthBcrypt}, []any{"SADD", "alice:wacls", "a/#"}, []any{"SADD", "common:sacls", "c/#"})
	rdb, err := NewClient(testenv.RedisURL(srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	count := &sentCounter{}
	rdb.AddHook(count)
	s := New(rdb, Options{Timeout: time.Second, Schema: mustGoAuth(t, GoAuthOptions{})})
	wantOutcome(t, decide(t, s, req("alice", "bcrypt-pass")), policy.Accepted, 0, 0)
	if count.pipelines != 1 || count.commands != 0 {
		t.Fatalf("a decision made %d pipelines and %d single commands, want one pipeline", count.pipelines, count.commands)
	}
	if _, err := s.AddBan(context.Background(), BanUser, "alice", time.Hour, "test"); err != nil {
		t.Fatal(err)
	}
	hashes := s.HashCount()
	*count = sentCounter{}
	wantOutcome(t, decide(t, s, req("alice", "bcrypt-pass")), policy.Banned, 0x05, 0x87)
	if count.pipelines != 1 || count.commands != 0 || s.HashCount() != hashes {
		t.Fatalf("a banned user: %d pipelines, %d commands, %d hashes", count.pipelines, count.commands, s.HashCount()-hashes)
	}
}

// sentCounter is a go-redis hook counting what a client sends, but for a
// new connection's handshake.
type sentCounter struct{ pipelines, commands int }

// setup are the commands of a connection's handshake.
var setup = []string{"hello", "client", "auth", "select", "ping", "readonly"}

func (c *sentCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *sentCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !slices.Contains(setup, cmd.Name()) {
			c.commands++
		}
		return next(ctx, cmd)
	}
}
func (c *sentCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if slices.ContainsFunc(cmds, func(cmd redis.Cmder) bool { return !slices.Contains(setup, cmd.Name()) }) {
			c.pipelines++
		}
		return next(ctx, cmds)
	}
}

// TestSchemaWatch: keyspace notifications of the schemas' keys reach
// Watch as the changes they mean: a user's keys its user, shared keys
// every session; writes made the way an operator of that product makes
// them.
func TestSchemaWatch(t *testing.T) {
	srv := testenv.Redis(t, "--notify-keyspace-events", "K$sghx")
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { admin.Close() })
	ctx := testenv.Context(t)
	every := func(c policy.Change) bool { return c.Role == DefaultRole }

	emqx := schemaStore(t, srv, mustEMQX(t, EMQXOptions{}))
	if missing, err := emqx.CheckNotifications(ctx); err != nil || missing != "" {
		t.Fatalf("emqx: notifications missing %q, %v", missing, err)
	}
	feed := watchChanges(t, ctx, emqx)
	feed.await(10*time.Second, "HSET mqtt_user:alice", func() { redisCLI(t, admin, []any{"HSET", "mqtt_user:alice", "password_hash", "x"}) }, forUser("alice"))
	feed.await(5*time.Second, "HDEL mqtt_acl:bob", func() {
		redisCLI(t, admin, []any{"HSET", "mqtt_acl:bob", "t/1", "all"}, []any{"HDEL", "mqtt_acl:bob", "t/1"})
	}, forUser("bob"))
	feed.await(5*time.Second, "DEL mqtt_user:alice", func() {
		redisCLI(t, admin, []any{"HSET", "mqtt_user:alice", "salt", "x"}, []any{"DEL", "mqtt_user:alice"})
	}, forUser("alice"))

	shared := schemaStore(t, srv, mustEMQX(t, EMQXOptions{AuthzCmd: "HGETALL acl", AuthnCmd: "HMGET dev:${clientid} password_hash"}))
	feed = watchChanges(t, ctx, shared)
	feed.await(10*time.Second, "HSET acl (shared)", func() { redisCLI(t, admin, []any{"HSET", "acl", "t/1", "all"}) }, every)
	feed.await(5*time.Second, "HSET dev:<client id>", func() { redisCLI(t, admin, []any{"HSET", "dev:c1", "password_hash", "x"}) }, every)

	goauth := schemaStore(t, srv, mustGoAuth(t, GoAuthOptions{}))
	if missing, err := goauth.CheckNotifications(ctx); err != nil || missing != "" {
		t.Fatalf("mosquitto-go-auth: notifications missing %q, %v", missing, err)
	}
	feed = watchChanges(t, ctx, goauth)
	feed.await(10*time.Second, "SET carol", func() { redisCLI(t, admin, []any{"SET", "carol", "x"}) }, forUser("carol"))
	feed.await(5*time.Second, "SREM carol:racls", func() {
		redisCLI(t, admin, []any{"SADD", "carol:racls", "a", "b"}, []any{"SREM", "carol:racls", "a"})
	}, forUser("carol"))
	feed.await(5*time.Second, "DEL dan:su", func() { redisCLI(t, admin, []any{"SET", "dan:su", "true"}, []any{"DEL", "dan:su"}) }, forUser("dan"))
	feed.await(5*time.Second, "SREM common:racls", func() {
		redisCLI(t, admin, []any{"SADD", "common:racls", "a", "b"}, []any{"SREM", "common:racls", "a"})
	}, every)
	if got := goauth.NotifyFlags(); got != "K$sgx" {
		t.Fatalf("mosquitto-go-auth needs %q", got)
	}
	// Without the string and set classes the check says what is missing.
	redisCLI(t, admin, []any{"CONFIG", "SET", "notify-keyspace-events", "Kghx"})
	if missing, err := goauth.CheckNotifications(ctx); err != nil || missing != "$s" {
		t.Fatalf("with Kghx: missing %q, %v; want $s", missing, err)
	}
}

// TestSchemaChangesMapping: which change each written key means.
func TestSchemaChangesMapping(t *testing.T) {
	g := mustGoAuth(t, GoAuthOptions{})
	for key, want := range map[string][]policy.Change{
		"alice":        {{Username: "alice"}},
		"alice:su":     {{Username: "alice"}, {Username: "alice:su"}},
		"alice:rwacls": {{Username: "alice"}, {Username: "alice:rwacls"}},
		"a:b:sacls":    {{Username: "a:b"}, {Username: "a:b:sacls"}},
		"common:wacls": {everySession},
		"common:su":    {{Username: "common"}, {Username: "common:su"}},
	} {
		if got := g.changes(key); !slices.Equal(got, want) {
			t.Errorf("mosquitto-go-auth %s: %+v, want %+v", key, got, want)
		}
	}
	e := mustEMQX(t, EMQXOptions{AuthnCmd: "HMGET users:${username}:auth password_hash", AuthzCmd: "HGETALL acl:${clientid}"})
	for key, want := range map[string][]policy.Change{
		"users:alice:auth": {{Username: "alice"}},
		"users:alice":      nil,
		"users::auth":      nil,
		"acl:dev-1":        {everySession},
		"other":            nil,
	} {
		if got := e.changes(key); !slices.Equal(got, want) {
			t.Errorf("emqx %s: %+v, want %+v", key, got, want)
		}
	}
	if got := distinctWatched([]watchedKey{{"a:", true}, {"a:b", false}, {"a:", true}, {"b", false}, {"b", false}, {"", false}}); !slices.Equal(got,
		[]watchedKey{{"a:", true}, {"b", false}, {"", false}}) {
		t.Errorf("distinctWatched: %+v", got)
	}
}

// TestSchemaExplain: explain says, step by step, what applies in another
// schema: where the user is, that enabled, not_after, certs and cidrs
// are not part of its layout, the superuser flag, the topic rules.
func TestSchemaExplain(t *testing.T) {
	srv := testenv.Redis(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { admin.Close() })
	redisCLI(t, admin, []any{"HSET", "mqtt_user:alice", "password_hash", emqxSHA256Prefix, "salt", "s4lt", "is_superuser", "true"})
	s := schemaStore(t, srv, mustEMQX(t, EMQXOptions{}))
	r := req("alice", "")
	r.HasPassword = false
	r.Explain = &policy.Explanation{NoPassword: true}
	d := decide(t, s, r)
	wantOutcome(t, d, policy.Accepted, 0, 0)
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
	r = req("ghost", "x")
	r.Explain = &policy.Explanation{}
	wantOutcome(t, decide(t, s, r), policy.BadCredentials, 0x04, 0x86)
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
	s := schemaStore(t, srv, mustGoAuth(t, GoAuthOptions{}))
	shape := func(h string) string {
		sh, _, ok := dummyLike(h, zeroBytes)
		if !ok {
			t.Fatalf("no shape for %q", h)
		}
		return sh
	}
	if got := shape(s.dummyFor()); got != shape(goauthPBKDF2) { // made with mosquitto-go-auth's defaults
		t.Fatalf("first dummy's shape %q", got)
	}
	redisCLI(t, admin, []any{"SET", "bob", goauthBcrypt}, []any{"SET", "carol", goauthArgon2id})
	for _, c := range []struct{ user, pass, stored string }{{"bob", "x", goauthBcrypt}, {"carol", "y", goauthArgon2id}} {
		hashes := s.HashCount()
		wantOutcome(t, decide(t, s, req(c.user, c.pass)), policy.BadCredentials, 0x04, 0x86)
		if shape(s.dummyFor()) != shape(c.stored) {
			t.Fatalf("after %s: dummy %q, want the shape of %q", c.user, s.dummyFor(), c.stored)
		}
		wantOutcome(t, decide(t, s, req("nobody", c.pass)), policy.BadCredentials, 0x04, 0x86)
		if s.HashCount() != hashes+2 {
			t.Fatalf("an unknown user computed %d hashes, want one as a wrong password does", s.HashCount()-hashes-1)
		}
		if ok, err := verifyPassword(s.dummyFor(), c.pass, false); ok || err != nil {
			t.Fatalf("the dummy verifies: %v %v", ok, err)
		}
	}
	e := schemaStore(t, srv, mustEMQX(t, EMQXOptions{PasswordHash: "pbkdf2", PBKDF2MacFun: "sha256", PBKDF2Iterations: 4096}))
	if want := shape(emqxHash("pbkdf2", "sha256,4096,0", strings.Repeat("x", 32), emqxPBKDF2SHA256)); shape(e.dummyFor()) != want {
		t.Fatalf("emqx dummy %q, want shape %q", e.dummyFor(), want)
	}
}

// TestSchemaOnCluster: on a Redis Cluster, the schemas' keys spread over
// the nodes (a user's keys, the common sets, the native bans) are read by
// one pipeline sent to the nodes in parallel, and the keyspace
// notifications of every master are watched.
func TestSchemaOnCluster(t *testing.T) {
	nodes := testenv.RedisCluster(t, 3, 0, "--notify-keyspace-events", "K$sghx")
	rdb, err := NewClient("redis://" + nodes[0].Addr() + "/0?cluster=true&addr=" + nodes[1].Addr() + "&addr=" + nodes[2].Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	cc := rdb.(*redis.ClusterClient)
	ctx := testenv.Context(t)
	owners := map[string]bool{}
	for _, key := range []string{"alice", "alice:sacls", "alice:racls", "common:rwacls", "mqtt:ban:user"} {
		addr, err := slotOwner(ctx, cc, key)
		if err != nil {
			t.Fatal(err)
		}
		owners[addr] = true
	}
	if len(owners) < 2 {
		t.Fatalf("the keys are on %d node(s); the test needs them spread", len(owners))
	}
	for _, err := range []error{cc.Set(ctx, "alice", goauthBcrypt, 0).Err(), cc.SAdd(ctx, "alice:sacls", "a/#").Err(),
		cc.SAdd(ctx, "alice:racls", "a/#").Err(), cc.SAdd(ctx, "common:rwacls", "c/%u").Err()} {
		if err != nil {
			t.Fatal(err)
		}
	}
	count := &sentCounter{}
	cc.AddHook(count)
	s := New(rdb, Options{Timeout: 2 * time.Second, Schema: mustGoAuth(t, GoAuthOptions{})})
	d := decide(t, s, req("alice", "bcrypt-pass"))
	wantOutcome(t, d, policy.Accepted, 0, 0)
	if count.pipelines != 1 || count.commands != 0 {
		t.Fatalf("%d pipelines, %d commands; want one pipeline", count.pipelines, count.commands)
	}
	if _, ok := d.Topics.CanSubscribe("a/b"); !ok {
		t.Error("alice's sacls and racls do not apply")
	}
	if _, ok := d.Topics.CanPublish("c/alice"); !ok {
		t.Error("common:rwacls does not apply")
	}
	feed := watchChanges(t, ctx, s)
	feed.await(20*time.Second, "SREM alice:sacls on its node", func() {
		_ = cc.SAdd(ctx, "alice:sacls", "tmp").Err()
		_ = cc.SRem(ctx, "alice:sacls", "tmp").Err()
	}, forUser("alice"))
	feed.await(10*time.Second, "SADD common:rwacls on its node", func() { _ = cc.SAdd(ctx, "common:rwacls", "d/%u").Err() },
		func(c policy.Change) bool { return c.Role == DefaultRole })
}

// TestSplitArgs: commands split as redis-cli splits them.
func TestSplitArgs(t *testing.T) {
	for in, want := range map[string][]string{
		"HMGET  k f1\tf2 ":              {"HMGET", "k", "f1", "f2"},
		`HGET "a b" 'c d'`:              {"HGET", "a b", "c d"},
		`x "q\"\n\x41" 'it\'s'`:         {"x", "q\"\nA", "it's"},
		"":                              nil,
		`HMGET "mqtt_user:${username}"`: {"HMGET", "mqtt_user:${username}"},
	} {
		got, err := splitArgs(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("splitArgs(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{`"open`, `'open`, `"a"b`} {
		if _, err := splitArgs(bad); err == nil {
			t.Errorf("splitArgs(%q) accepted", bad)
		}
	}
}

// TestEMQXHashForm: the $emqx$ form verifies as EMQX does and says what
// is wrong with a password_hash that cannot be one of the configured
// algorithm.
func TestEMQXHashForm(t *testing.T) {
	for _, c := range []struct {
		stored   string
		password string
		ok       bool
	}{
		{emqxHash("sha256", "prefix", "s4lt", emqxSHA256Prefix), "sha256-pass", true},
		{emqxHash("sha256", "suffix", "s4lt", emqxSHA256Prefix), "sha256-pass", false},
		{emqxHash("plain", "suffix", "$", "pw$"), "pw", true},
		{emqxHash("plain", "disable", "", "Pw"), "pw", false}, // plain compares with case
		{emqxHash("bcrypt", "", "ignored", emqxBcrypt), "bcrypt-pass", true},
		{emqxHash("pbkdf2", "sha256,4096,32", "s4lt", strings.ToUpper(emqxPBKDF2SHA256)), "pbkdf2-pass", true},
	} {
		if ok, err := verifyPassword(c.stored, c.password, false); ok != c.ok || err != nil {
			t.Errorf("%s with %q: %v %v, want %v", c.stored, c.password, ok, err, c.ok)
		}
	}
	for stored, says := range map[string]string{
		emqxHash("sha256", "prefix", "s", "abc"):                        "sha256 hex digest",
		emqxHash("md5", "prefix", "s", emqxSHA256Prefix):                "md5 hex digest",
		emqxHash("bcrypt", "", "", emqxSHA256Prefix):                    "not a bcrypt hash",
		emqxHash("pbkdf2", "sha256,4096,32", "s", emqxPBKDF2SHA1):       "64 hex digits",
		emqxHash("pbkdf2", "md4,1,0", "s", "00"):                        "parameters",
		emqxHash("sha256", "middle", "s", emqxSHA256Prefix):             "salt position",
		emqxHash("sha224", "prefix", "s", emqxSHA256Prefix[:56]):        "algorithm",
		"$emqx$sha256$prefix$!!$" + emqxSHA256Prefix:                    "base64url",
		"$emqx$sha256$prefix":                                           "want $emqx$",
		emqxHash("pbkdf2", "sha256,99999999,32", "s", emqxPBKDF2SHA256): "parameters",
	} {
		if err := CheckHashFormat(stored); !errors.Is(err, ErrMalformedHash) || !strings.Contains(err.Error(), says) {
			t.Errorf("%s: %v, want ErrMalformedHash saying %q", stored, err, says)
		}
	}
}

// TestDummyLike: a dummy has its model's shape, verifies without error
// and never matches.
func TestDummyLike(t *testing.T) {
	for _, stored := range []string{vectors[0].hash, vectors[1].hash, vectors[4].hash, goauthArgon2id,
		emqxHash("sha512", "suffix", "s4lt", emqxSHA512Suffix), emqxHash("bcrypt", "", "", emqxBcrypt),
		emqxHash("pbkdf2", "sha,1000,0", "s4lt", emqxPBKDF2SHA1), emqxHash("plain", "prefix", "s", "plain")} {
		shape, dummy, ok := dummyLike(stored, randomBytes)
		again, _, _ := dummyLike(dummy, zeroBytes)
		if !ok || again != shape || dummy == stored {
			t.Errorf("%s: dummy %q of shape %q (%q), %v", stored, dummy, shape, again, ok)
			continue
		}
		if ok, err := verifyPassword(dummy, "", false); ok || err != nil {
			t.Errorf("dummy %s: %v %v", dummy, ok, err)
		}
	}
	if _, _, ok := dummyLike("plaintext", zeroBytes); ok {
		t.Error("a shape for plaintext")
	}
}
