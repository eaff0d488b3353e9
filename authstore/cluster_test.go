package authstore

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/internal/storetest"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/passwords"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// TestClusterDecisionsAndChanges runs a real three-master Redis Cluster and
// decides through a Cluster URL (REDIS_URL with cluster=true): users whose
// keys live on every node are decided right, the operator calls write to
// the right node and the next decision obeys, and Watch delivers every
// change, whichever node holds the user, both the operator's (published on
// the changes channel) and plain HSETs (keyspace notifications).
func TestClusterDecisionsAndChanges(t *testing.T) {
	nodes := testenv.RedisCluster(t, 3, 0, "--notify-keyspace-events", "Kgh")
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.Addr()
	}
	rdb := storetest.Client(t, fmt.Sprintf("redis://%s/0?cluster=true&addr=%s&addr=%s", addrs[0], addrs[1], addrs[2]))
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		t.Fatalf("cluster=true made a %T", rdb)
	}
	ctx := testenv.Context(t)
	s := New(rdb, Options{Timeout: time.Second})

	// Two users on every node: one changed by the operator calls, one only
	// by plain HSETs (so that a change for it can only come from a keyspace
	// notification).
	owner := func(key string) string {
		addr, err := storetest.SlotOwner(ctx, cc, key)
		if err != nil {
			t.Fatal(err)
		}
		return addr
	}
	byNode, rawByNode := map[string]string{}, map[string]string{}
	for i := 0; (len(byNode) < len(nodes) || len(rawByNode) < len(nodes)) && i < 1000; i++ {
		name := fmt.Sprintf("user%d", i)
		node := owner(s.UserKey(name))
		switch {
		case byNode[node] == "":
			byNode[node] = name
		case rawByNode[node] == "":
			rawByNode[node] = name
		}
	}
	if len(byNode) != len(nodes) || len(rawByNode) != len(nodes) {
		t.Fatalf("users on %d and %d of %d nodes", len(byNode), len(rawByNode), len(nodes))
	}

	if err := s.SetRole(ctx, "fleet", operator.RoleUpdate{Publish: &[]string{"fleet/%u/#"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRole(ctx, rules.DefaultRole, operator.RoleUpdate{Subscribe: &[]string{"public/#"}}); err != nil {
		t.Fatal(err)
	}
	changes := storetest.Watch(t, ctx, s)
	expect := func(what, user string) {
		t.Helper()
		changes.Await(5*time.Second, what+" for "+user, nil, storetest.ForUser(user))
	}
	// Watch is subscribed once an operator change comes through.
	first := byNode[addrs[0]]
	changes.Await(10*time.Second, "Watch to subscribe", func() { _ = s.SetUser(ctx, first, operator.Update{Password: ptr("pw")}) }, storetest.ForUser(first))

	for node, name := range byNode {
		if err := s.SetUser(ctx, name, operator.Update{Password: ptr("pw")}); err != nil {
			t.Fatal(err)
		}
		if d, err := s.Authenticate(ctx, storetest.Req(name, "pw")); err != nil || d.Outcome != policy.Accepted {
			t.Fatalf("%s on %s: %+v %v", name, node, d, err)
		}
		// Topic rules from roles held on other nodes than the user: two
		// round trips on a Cluster, and the same rules as anywhere.
		if err := s.SetUser(ctx, name, operator.Update{Roles: &[]string{"fleet"}}); err != nil {
			t.Fatal(err)
		}
		if d, err := s.Authenticate(ctx, storetest.Req(name, "pw")); err != nil || d.Topics == nil {
			t.Fatalf("%s on %s with roles: %+v %v", name, node, d, err)
		} else if _, ok := d.Topics.CanPublish("fleet/" + name + "/t"); !ok {
			t.Fatalf("%s on %s: the fleet role's rule was not read", name, node)
		} else if _, ok := d.Topics.CanSubscribe("public/x"); !ok {
			t.Fatalf("%s on %s: the default role's rule was not read", name, node)
		}

		if err := s.SetEnabled(ctx, name, false); err != nil {
			t.Fatal(err)
		}
		if d, err := s.Authenticate(ctx, storetest.Req(name, "pw")); err != nil || d.Outcome != policy.Disabled {
			t.Fatalf("%s on %s after disabling: %+v %v", name, node, d, err)
		}
		expect("the operator's change", name)

	}
	// Plain HSETs, as redis-cli would make them, on every node.
	hash := passwords.HashPassword("pw")
	for node, name := range rawByNode {
		if err := cc.HSet(ctx, s.UserKey(name), "password", hash, "enabled", "true").Err(); err != nil {
			t.Fatal(err)
		}
		expect("the keyspace notification of a plain HSET on "+node, name)
		if d, err := s.Authenticate(ctx, storetest.Req(name, "pw")); err != nil || d.Outcome != policy.Accepted {
			t.Fatalf("%s, written by HSET on %s: %+v %v", name, node, d, err)
		}
		if err := cc.HSet(ctx, s.UserKey(name), "enabled", "false").Err(); err != nil {
			t.Fatal(err)
		}
		expect("the keyspace notification of a plain HSET on "+node, name)
		if d, err := s.Authenticate(ctx, storetest.Req(name, "pw")); err != nil || d.Outcome != policy.Disabled {
			t.Fatalf("%s, disabled by HSET on %s: %+v %v", name, node, d, err)
		}
	}
}

// TestClusterFailoverIsFollowed kills the master that holds a user and
// waits for its replica to take over: decisions fail closed meanwhile, the
// new master is subscribed to (and a resync asked for, as changes may have
// been missed), and a plain HSET on it reaches Watch and the next decision.
func TestClusterFailoverIsFollowed(t *testing.T) {
	nodes := testenv.RedisCluster(t, 3, 1, "--notify-keyspace-events", "Kgh")
	byAddr := map[string]*testenv.Server{}
	for _, n := range nodes {
		byAddr[n.Addr()] = n
	}
	rdb := storetest.Client(t, fmt.Sprintf("redis://%s/0?cluster=true&addr=%s", nodes[0].Addr(), nodes[1].Addr()))
	cc := rdb.(*redis.ClusterClient)
	ctx := testenv.Context(t)
	s := New(rdb, Options{Timeout: time.Second})

	// The master holding the user's key, as a surviving node sees it.
	ownerSeenBy := func(via *testenv.Server, key string) string {
		c := redis.NewClient(&redis.Options{Addr: via.Addr()})
		defer c.Close()
		addr, _ := storetest.SlotOwner(ctx, c, key)
		return addr
	}
	const user = "alice"
	if err := s.SetUser(ctx, user, operator.Update{Password: ptr("pw")}); err != nil {
		t.Fatal(err)
	}
	master := byAddr[ownerSeenBy(nodes[0], s.UserKey(user))]
	if master == nil {
		t.Fatal("no master for the user's key")
	}
	var survivor *testenv.Server
	for _, n := range nodes {
		if n != master {
			survivor = n
			break
		}
	}

	changes := storetest.Watch(t, ctx, s)
	changes.Await(10*time.Second, "Watch to subscribe", func() { _ = s.SetEnabled(ctx, user, true) }, storetest.ForUser(user))

	master.Stop()
	if _, err := s.Authenticate(ctx, storetest.Req(user, "pw")); !errors.Is(err, policy.ErrUnavailable) {
		t.Fatalf("master gone: %v, want ErrUnavailable", err)
	}
	testenv.WaitFor(t, 30*time.Second, "a replica to take over the user's slot", func() bool {
		owner := ownerSeenBy(survivor, s.UserKey(user))
		return owner != "" && owner != master.Addr()
	})
	changes.Await(20*time.Second, "a resync after the failover", nil, storetest.IsResync)
	// Plain HSETs, as redis-cli would make them, on the new master, until
	// one is notified: only its keyspace notifications can announce this
	// user (no operator call is made), so the new master is subscribed to.
	changes.Await(20*time.Second, "a plain HSET on the new master to reach Watch",
		func() { _ = cc.HSet(ctx, s.UserKey(user), "enabled", "false").Err() }, storetest.ForUser(user))
	if d, err := s.Authenticate(ctx, storetest.Req(user, "pw")); err != nil || d.Outcome != policy.Disabled {
		t.Fatalf("after the failover: %+v %v", d, err)
	}
}
