package authstore

import (
	"fmt"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
)

func TestNotificationsMissing(t *testing.T) {
	for flags, want := range map[string]string{
		"": "Kghx", "Kgh": "x", "Kghx": "", "ghxK": "", "KEA": "", "AK": "", "AKE": "",
		"E": "Kghx", "EA": "K", "Kg$": "hx", "Khx": "g", "Kx": "gh", "KEg$lshzxetd": "",
	} {
		if got := NotificationsMissing(flags); got != want {
			t.Errorf("NotificationsMissing(%q) = %q, want %q", flags, got, want)
		}
	}
}

// TestCheckNotifications reads notify-keyspace-events from a real Redis:
// Kgh misses x (expiries), Kghx and KEA miss nothing; a Redis that does
// not allow CONFIG gives an error.
func TestCheckNotifications(t *testing.T) {
	s, admin, _ := realStoreWith(t, "--notify-keyspace-events", "Kgh")
	ctx := testenv.Context(t)
	if missing, err := s.CheckNotifications(ctx); err != nil || missing != "x" {
		t.Fatalf("Kgh: missing %q, %v; want x", missing, err)
	}
	for flags, want := range map[string]string{"Kghx": "", "KEA": "", "": "Kghx", "Eghx": "K", "KA": ""} {
		if err := admin.ConfigSet(ctx, "notify-keyspace-events", flags).Err(); err != nil {
			t.Fatal(err)
		}
		if missing, err := s.CheckNotifications(ctx); err != nil || missing != want {
			t.Errorf("%q: missing %q, %v; want %q", flags, missing, err, want)
		}
	}

	renamed, _, _ := realStoreWith(t, "--notify-keyspace-events", "Kghx", "--rename-command", "CONFIG", "")
	if missing, err := renamed.CheckNotifications(ctx); err == nil {
		t.Fatalf("CONFIG renamed: missing %q and no error", missing)
	}
}

// TestCheckNotificationsEveryClusterMaster: on a Redis Cluster every master
// is read; one master with Kgh among Kghx ones is found, whichever it is.
func TestCheckNotificationsEveryClusterMaster(t *testing.T) {
	nodes := testenv.RedisCluster(t, 3, 0, "--notify-keyspace-events", "Kghx")
	rdb, err := NewClient(fmt.Sprintf("redis://%s/0?cluster=true", nodes[0].Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	s := New(rdb, Options{Timeout: time.Second})
	ctx := testenv.Context(t)
	if missing, err := s.CheckNotifications(ctx); err != nil || missing != "" {
		t.Fatalf("Kghx everywhere: missing %q, %v", missing, err)
	}
	for i, n := range nodes {
		node := redis.NewClient(&redis.Options{Addr: n.Addr()})
		if err := node.ConfigSet(ctx, "notify-keyspace-events", "Kgh").Err(); err != nil {
			t.Fatal(err)
		}
		missing, err := s.CheckNotifications(ctx)
		if err := node.ConfigSet(ctx, "notify-keyspace-events", "Kghx").Err(); err != nil {
			t.Fatal(err)
		}
		node.Close()
		if err != nil || missing != "x" {
			t.Fatalf("Kgh on master %d: missing %q, %v; want x", i, missing, err)
		}
	}
}

// TestWatchDeliversExpiry: with Kghx, a user hash that expires (EXPIRE, as
// redis-cli would set it) is delivered by Watch once it is gone, so that
// live connections are decided again at once.
func TestWatchDeliversExpiry(t *testing.T) {
	s, admin, _ := realStoreWith(t, "--notify-keyspace-events", "Kghx")
	ctx := testenv.Context(t)
	changes := watchChanges(t, ctx, s)
	key := s.UserKey("temp")
	changes.await(10*time.Second, "Watch to subscribe", func() { admin.HSet(ctx, key, "enabled", "true") }, forUser("temp"))
	if err := admin.PExpire(ctx, key, 300*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	changes.await(2*time.Second, "a change for the expired user", nil, func(c policy.Change) bool {
		return forUser("temp")(c) && admin.Exists(ctx, key).Val() == 0
	})
}

// realStoreWith is realStore with redis-server options.
func realStoreWith(t *testing.T, redisArgs ...string) (*Store, *redis.Client, *testenv.Server) {
	t.Helper()
	srv := testenv.Redis(t, redisArgs...)
	rdb, err := NewClient(testenv.RedisURL(srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { admin.Close() })
	return New(rdb, Options{Timeout: 300 * time.Millisecond}), admin, srv
}
