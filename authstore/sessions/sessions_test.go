package sessions

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
)

func newCounter(t *testing.T, srv *testenv.Server, replica string, lease time.Duration) *Counter {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rdb.Close() })
	c, err := New(rdb, Options{Replica: replica, Lease: lease})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		select {
		case <-c.stop:
		default:
			c.Close()
		}
	})
	return c
}

// die stops c as a killed process stops: no renewal, no goodbye.
func (c *Counter) die() {
	close(c.stop)
	<-c.done
}

// TestRaceForTheLastPlace: two replicas admit a session of a user at the
// same moment when one place is left, 200 times: exactly one wins each
// time, never both, never neither; and the count a replica sees includes
// the other's.
func TestRaceForTheLastPlace(t *testing.T) {
	srv := testenv.Redis(t)
	a, b := newCounter(t, srv, "a", 0), newCounter(t, srv, "b", 0)
	ctx := context.Background()
	// One session of the user lives on a already: max 2 leaves one place.
	if ok, _, err := a.Admit(ctx, "u", 2); !ok || err != nil {
		t.Fatalf("first admission: %v %v", ok, err)
	}
	for round := range 200 {
		var wg sync.WaitGroup
		start := make(chan struct{})
		var oks [2]bool
		var errs [2]error
		for i, c := range []*Counter{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				oks[i], _, errs[i] = c.Admit(ctx, "u", 2)
			}()
		}
		close(start)
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("round %d: %v, %v", round, errs[0], errs[1])
		}
		if oks[0] == oks[1] {
			t.Fatalf("round %d: a admitted %v, b admitted %v: want exactly one", round, oks[0], oks[1])
		}
		winner := a
		if oks[1] {
			winner = b
		}
		winner.Release("u")
	}
	if n, err := Live(ctx, a.rdb, a.keys, "u"); n != 1 || err != nil {
		t.Fatalf("after the rounds %d live (%v), want the first one", n, err)
	}
}

// TestDeadReplicaForgotten: the sessions of a replica that dies (stops
// renewing, says nothing) stop counting once its lease ends, and no
// sooner; a replica that closes cleanly is forgotten at once.
func TestDeadReplicaForgotten(t *testing.T) {
	srv := testenv.Redis(t)
	const lease = 1500 * time.Millisecond
	a, b := newCounter(t, srv, "a", lease), newCounter(t, srv, "b", lease)
	ctx := context.Background()
	if ok, _, err := a.Admit(ctx, "u", 1); !ok || err != nil {
		t.Fatalf("a: %v %v", ok, err)
	}
	died := time.Now()
	a.die()
	if ok, live, err := b.Admit(ctx, "u", 1); ok || live != 1 || err != nil {
		t.Fatalf("b right after a died: admitted %v, %d live, %v: want refused, 1 live", ok, live, err)
	}
	var admittedAt time.Time
	testenv.WaitFor(t, 3*lease, "a's sessions forgotten", func() bool {
		ok, _, err := b.Admit(ctx, "u", 1)
		if err != nil {
			t.Fatal(err)
		}
		admittedAt = time.Now()
		return ok
	})
	if gone := admittedAt.Sub(died); gone < lease/2 {
		t.Fatalf("a's sessions were forgotten %v after it died: before its lease (%v, renewed every %v) could end", gone, lease, lease/3)
	}
	b.Close()
	c := newCounter(t, srv, "c", lease)
	if ok, _, err := c.Admit(ctx, "u", 1); !ok || err != nil {
		t.Fatalf("after b closed: %v %v, want admitted at once", ok, err)
	}
}

// TestOutageFailsClosedAndRecovers: while Redis is down an admission
// fails (the CONNECT is refused) and a release is kept locally; when
// Redis comes back empty (no persistence), the replica claims a new lease
// and writes its counts again, so the sessions that lived through the
// outage count.
func TestOutageFailsClosedAndRecovers(t *testing.T) {
	srv := testenv.Redis(t)
	a := newCounter(t, srv, "a", 900*time.Millisecond)
	ctx := context.Background()
	for i := range 3 {
		if ok, _, err := a.Admit(ctx, "u", 5); !ok || err != nil {
			t.Fatalf("admission %d: %v %v", i, ok, err)
		}
	}
	srv.Stop()
	if ok, _, err := a.Admit(ctx, "u", 5); ok || err == nil {
		t.Fatalf("with Redis down: admitted %v, %v: want an error", ok, err)
	}
	a.Release("u") // a session ended during the outage: 2 live
	srv.Start()
	testenv.WaitFor(t, 5*time.Second, "the counts written again", func() bool {
		n, err := Live(ctx, a.rdb, a.keys, "u")
		return err == nil && n == 2
	})
	if ok, live, err := a.Admit(ctx, "u", 3); !ok || live != 2 || err != nil {
		t.Fatalf("after the outage: admitted %v with %d live (%v), want admitted with 2", ok, live, err)
	}
	if ok, _, _ := a.Admit(ctx, "u", 3); ok {
		t.Fatal("a fourth session admitted under max 3")
	}
}

// TestLapsedLeaseReclaimed: a replica whose lease ended while it lived
// (Redis unreachable for longer than the lease) refuses until it has
// claimed a new one, then counts as before.
func TestLapsedLeaseReclaimed(t *testing.T) {
	srv := testenv.Redis(t)
	a := newCounter(t, srv, "a", time.Minute)
	ctx := context.Background()
	if ok, _, err := a.Admit(ctx, "u", 2); !ok || err != nil {
		t.Fatal(ok, err)
	}
	// Its lease ends behind its back.
	if err := a.rdb.ZRem(ctx, a.keys.SessionLeaseKey(), a.member).Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Admit(ctx, "u", 2); !errors.Is(err, ErrLeaseLapsed) {
		t.Fatalf("with the lease gone: %v, want ErrLeaseLapsed", err)
	}
	testenv.WaitFor(t, 5*time.Second, "a new lease", func() bool {
		ok, live, err := a.Admit(ctx, "u", 2)
		if err == nil && (!ok || live != 1) {
			t.Fatalf("after the claim: admitted %v with %d live, want admitted with 1", ok, live)
		}
		return err == nil
	})
}

// TestReplicaIDChecked: a counter needs a replica id.
func TestReplicaIDChecked(t *testing.T) {
	if _, err := New(nil, Options{}); err == nil {
		t.Error("no replica id accepted")
	}
}
