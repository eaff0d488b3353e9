package redisconn

import (
	"context"
	"fmt"
	"testing"
	"time"

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

// realClient starts a redis-server with redisArgs and returns a client
// made by NewClient and a plain one for the test's own commands.
func realClient(t *testing.T, redisArgs ...string) (redis.UniversalClient, *redis.Client) {
	t.Helper()
	srv := testenv.Redis(t, redisArgs...)
	rdb, err := NewClient(testenv.RedisURL(srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { admin.Close() })
	return rdb, admin
}

// TestCheckNotifications reads notify-keyspace-events from a real Redis:
// Kgh misses x (expiries), Kghx and KEA miss nothing; a Redis that does
// not allow CONFIG gives an error.
func TestCheckNotifications(t *testing.T) {
	rdb, admin := realClient(t, "--notify-keyspace-events", "Kgh")
	ctx := testenv.Context(t)
	if missing, err := CheckNotifications(ctx, rdb, NotifyFlags); err != nil || missing != "x" {
		t.Fatalf("Kgh: missing %q, %v; want x", missing, err)
	}
	for flags, want := range map[string]string{"Kghx": "", "KEA": "", "": "Kghx", "Eghx": "K", "KA": ""} {
		if err := admin.ConfigSet(ctx, "notify-keyspace-events", flags).Err(); err != nil {
			t.Fatal(err)
		}
		if missing, err := CheckNotifications(ctx, rdb, NotifyFlags); err != nil || missing != want {
			t.Errorf("%q: missing %q, %v; want %q", flags, missing, err, want)
		}
	}

	renamed, _ := realClient(t, "--notify-keyspace-events", "Kghx", "--rename-command", "CONFIG", "")
	if missing, err := CheckNotifications(ctx, renamed, NotifyFlags); err == nil {
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
	ctx := testenv.Context(t)
	check := func() (string, error) {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return CheckNotifications(ctx, rdb, NotifyFlags)
	}
	if missing, err := check(); err != nil || missing != "" {
		t.Fatalf("Kghx everywhere: missing %q, %v", missing, err)
	}
	for i, n := range nodes {
		node := redis.NewClient(&redis.Options{Addr: n.Addr()})
		if err := node.ConfigSet(ctx, "notify-keyspace-events", "Kgh").Err(); err != nil {
			t.Fatal(err)
		}
		missing, err := check()
		if err := node.ConfigSet(ctx, "notify-keyspace-events", "Kghx").Err(); err != nil {
			t.Fatal(err)
		}
		node.Close()
		if err != nil || missing != "x" {
			t.Fatalf("Kgh on master %d: missing %q, %v; want x", i, missing, err)
		}
	}
}
