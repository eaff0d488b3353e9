package changefeed

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/internal/storetest"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/schemas"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// TestWatchDeliversExpiry: with Kghx, a user hash that expires (EXPIRE, as
// redis-cli would set it) is delivered by Watch once it is gone, so that
// live connections are decided again at once.
func TestWatchDeliversExpiry(t *testing.T) {
	rdb, admin, _ := storetest.Redis(t, "--notify-keyspace-events", "Kghx")
	s := New(rdb, Options{Timeout: 300 * time.Millisecond})
	ctx := testenv.Context(t)
	changes := storetest.Watch(t, ctx, s)
	key := s.keys.UserKey("temp")
	changes.Await(10*time.Second, "Watch to subscribe", func() { admin.HSet(ctx, key, "enabled", "true") }, storetest.ForUser("temp"))
	if err := admin.PExpire(ctx, key, 300*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	changes.Await(2*time.Second, "a change for the expired user", nil, func(c policy.Change) bool {
		return storetest.ForUser("temp")(c) && admin.Exists(ctx, key).Val() == 0
	})
}

// TestSchemaWatch: keyspace notifications of the schemas' keys reach
// Watch as the changes they mean: a user's keys its user, shared keys
// every session; writes made the way an operator of that product makes
// them.
func TestSchemaWatch(t *testing.T) {
	rdb, admin, _ := storetest.Redis(t, "--notify-keyspace-events", "K$sghx")
	ctx := testenv.Context(t)
	every := func(c policy.Change) bool { return c.Role == rules.DefaultRole }

	emqx := schemaFeed(rdb, must(t)(schemas.NewEMQX(emqxOptions(schemas.EMQXOptions{}))))
	if missing, err := emqx.CheckNotifications(ctx); err != nil || missing != "" {
		t.Fatalf("emqx: notifications missing %q, %v", missing, err)
	}
	feed := storetest.Watch(t, ctx, emqx)
	feed.Await(10*time.Second, "HSET mqtt_user:alice", func() { storetest.RedisCLI(t, admin, []any{"HSET", "mqtt_user:alice", "password_hash", "x"}) }, storetest.ForUser("alice"))
	feed.Await(5*time.Second, "HDEL mqtt_acl:bob", func() {
		storetest.RedisCLI(t, admin, []any{"HSET", "mqtt_acl:bob", "t/1", "all"}, []any{"HDEL", "mqtt_acl:bob", "t/1"})
	}, storetest.ForUser("bob"))
	feed.Await(5*time.Second, "DEL mqtt_user:alice", func() {
		storetest.RedisCLI(t, admin, []any{"HSET", "mqtt_user:alice", "salt", "x"}, []any{"DEL", "mqtt_user:alice"})
	}, storetest.ForUser("alice"))

	shared := schemaFeed(rdb, must(t)(schemas.NewEMQX(emqxOptions(schemas.EMQXOptions{AuthzCmd: "HGETALL acl", AuthnCmd: "HMGET dev:${clientid} password_hash"}))))
	feed = storetest.Watch(t, ctx, shared)
	feed.Await(10*time.Second, "HSET acl (shared)", func() { storetest.RedisCLI(t, admin, []any{"HSET", "acl", "t/1", "all"}) }, every)
	feed.Await(5*time.Second, "HSET dev:<client id>", func() { storetest.RedisCLI(t, admin, []any{"HSET", "dev:c1", "password_hash", "x"}) }, every)

	goauth := schemaFeed(rdb, must(t)(schemas.NewGoAuth(schemas.GoAuthOptions{})))
	if missing, err := goauth.CheckNotifications(ctx); err != nil || missing != "" {
		t.Fatalf("mosquitto-go-auth: notifications missing %q, %v", missing, err)
	}
	feed = storetest.Watch(t, ctx, goauth)
	feed.Await(10*time.Second, "SET carol", func() { storetest.RedisCLI(t, admin, []any{"SET", "carol", "x"}) }, storetest.ForUser("carol"))
	feed.Await(5*time.Second, "SREM carol:racls", func() {
		storetest.RedisCLI(t, admin, []any{"SADD", "carol:racls", "a", "b"}, []any{"SREM", "carol:racls", "a"})
	}, storetest.ForUser("carol"))
	feed.Await(5*time.Second, "DEL dan:su", func() { storetest.RedisCLI(t, admin, []any{"SET", "dan:su", "true"}, []any{"DEL", "dan:su"}) }, storetest.ForUser("dan"))
	feed.Await(5*time.Second, "SREM common:racls", func() {
		storetest.RedisCLI(t, admin, []any{"SADD", "common:racls", "a", "b"}, []any{"SREM", "common:racls", "a"})
	}, every)
	if got := goauth.NotifyFlags(); got != "K$sgx" {
		t.Fatalf("mosquitto-go-auth needs %q", got)
	}
	// Without the string and set classes the check says what is missing.
	storetest.RedisCLI(t, admin, []any{"CONFIG", "SET", "notify-keyspace-events", "Kghx"})
	if missing, err := goauth.CheckNotifications(ctx); err != nil || missing != "$s" {
		t.Fatalf("with Kghx: missing %q, %v; want $s", missing, err)
	}
}

// schemaFeed is the feed of sc's keys.
func schemaFeed(rdb redis.UniversalClient, sc schemas.Schema) *Feed {
	return New(rdb, Options{Timeout: time.Second, Schema: sc})
}

// emqxOptions are o with EMQX's default commands and sha256 with a
// prefix salt where o sets none.
func emqxOptions(o schemas.EMQXOptions) schemas.EMQXOptions {
	if o.AuthnCmd == "" {
		o.AuthnCmd = schemas.DefaultEMQXAuthnCmd
	}
	if o.AuthzCmd == "" {
		o.AuthzCmd = schemas.DefaultEMQXAuthzCmd
	}
	if o.PasswordHash == "" {
		o.PasswordHash, o.SaltPosition = "sha256", "prefix"
	}
	return o
}

// must fails the test on a schema that cannot be made.
func must(t *testing.T) func(schemas.Schema, error) schemas.Schema {
	return func(sc schemas.Schema, err error) schemas.Schema {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return sc
	}
}
