package authstore

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/internal/storetest"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// TestSentinelFailover runs a real master, replica and Sentinel and
// decides through a Sentinel URL (REDIS_URL with master_name) across a
// failover: with the master gone, decisions fail closed (policy.ErrUnavailable,
// never an answer from elsewhere); once Sentinel has promoted the replica
// they are right again, a change written after the failover is obeyed by
// the next decision, and Watch, resubscribed on the new master, asks for a
// resync and then delivers changes again.
func TestSentinelFailover(t *testing.T) {
	master := testenv.Redis(t, "--notify-keyspace-events", "Kgh")
	replica := testenv.Redis(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port), "--notify-keyspace-events", "Kgh")
	ctx := testenv.Context(t)
	direct := func(s *testenv.Server) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
		t.Cleanup(func() { c.Close() })
		return c
	}
	masterC, replicaC := direct(master), direct(replica)
	testenv.WaitFor(t, 10*time.Second, "the replica to sync", func() bool {
		info, _ := replicaC.Info(ctx, "replication").Result()
		return strings.Contains(info, "master_link_status:up")
	})
	sentinel := testenv.Sentinel(t, "mymaster", master)
	sentinelC := direct(sentinel)
	testenv.WaitFor(t, 15*time.Second, "Sentinel to know the replica", func() bool {
		replicas, err := sentinelC.Do(ctx, "SENTINEL", "replicas", "mymaster").Slice()
		return err == nil && len(replicas) == 1
	})

	rdb := storetest.Client(t, fmt.Sprintf("redis://%s/0?master_name=mymaster", sentinel.Addr()))
	s := New(rdb, Options{Timeout: 300 * time.Millisecond})
	if err := s.SetUser(ctx, "alice", operator.Update{Password: ptr("pw")}); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Authenticate(ctx, storetest.Req("alice", "pw")); err != nil || d.Outcome != policy.Accepted {
		t.Fatalf("through Sentinel: %+v %v", d, err)
	}
	changes := storetest.Watch(t, ctx, s)
	// Watch is subscribed once a published change comes through.
	changes.Await(5*time.Second, "Watch to subscribe", func() { _ = s.SetEnabled(ctx, "alice", true) }, storetest.ForUser("alice"))
	if n, err := masterC.Do(ctx, "WAIT", 1, 2000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT for the replica: %d %v", n, err)
	}

	master.Stop()
	if _, err := s.Authenticate(ctx, storetest.Req("alice", "pw")); !errors.Is(err, policy.ErrUnavailable) {
		t.Fatalf("master gone, before the failover: %v, want ErrUnavailable", err)
	}
	testenv.WaitFor(t, 30*time.Second, "decisions after Sentinel promotes the replica", func() bool {
		d, err := s.Authenticate(ctx, storetest.Req("alice", "pw"))
		if err != nil && !errors.Is(err, policy.ErrUnavailable) {
			t.Fatalf("during the failover: %v, want policy.ErrUnavailable or a decision", err)
		}
		if err == nil && d.Outcome != policy.Accepted {
			t.Fatalf("during the failover: %+v", d)
		}
		return err == nil
	})
	if role, err := replicaC.Do(ctx, "ROLE").Slice(); err != nil || role[0] != "master" {
		t.Fatalf("the replica's role after the failover: %v %v", role, err)
	}

	// Written after the failover: to the new master, obeyed at once.
	if err := s.SetEnabled(ctx, "alice", false); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Authenticate(ctx, storetest.Req("alice", "pw")); err != nil || d.Outcome != policy.Disabled {
		t.Fatalf("after disabling on the new master: %+v %v", d, err)
	}
	// Watch lost its subscription with the master: it resubscribes on the
	// new one and asks for a resync (changes in between may be lost), then
	// delivers changes again.
	changes.Await(15*time.Second, "Watch to resync on the new master", nil, storetest.IsResync)
	if err := s.SetEnabled(ctx, "alice", true); err != nil {
		t.Fatal(err)
	}
	changes.Await(15*time.Second, "a change after the failover", nil, storetest.ForUser("alice"))
}
