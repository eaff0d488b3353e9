package passwords

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// TestHashQueueBound: with every slot taken and the queue full, a
// verification fails at once with ErrBusy instead of waiting; a waiter
// with priority (a known address) gets the next slot ahead of the others.
func TestHashQueueBound(t *testing.T) {
	c := NewChecker(Options{MaxHashes: 1, MaxHashQueue: 2})
	ctx := testenv.Context(t)
	if err := c.slots.Acquire(ctx, false); err != nil { // the one slot taken
		t.Fatal(err)
	}
	order := make(chan string, 3)
	var wg sync.WaitGroup
	for i, prio := range []bool{false, false, true} {
		if i == 2 {
			testenv.WaitFor(t, 5*time.Second, "two waiting", func() bool { return c.slots.Waiting() == 2 })
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.slots.Acquire(ctx, prio); err == nil {
				order <- map[bool]string{false: "low", true: "high"}[prio]
				c.slots.Release()
			}
		}()
	}
	testenv.WaitFor(t, 5*time.Second, "three waiting", func() bool { return c.slots.Waiting() == 3 })
	// The low queue is full: a fourth low waiter is refused at once.
	if _, err := c.verify(ctx, HashPassword("x"), "y", false); !errors.Is(err, policy.ErrBusy) {
		t.Fatalf("a full queue: %v", err)
	}
	c.slots.Release()
	wg.Wait()
	close(order)
	var got []string
	for o := range order {
		got = append(got, o)
	}
	if len(got) != 3 || got[0] != "high" {
		t.Fatalf("order %v: the waiter with priority must go first", got)
	}
	if c.slots.Waiting() != 0 || c.slots.InUse() != 0 {
		t.Fatalf("%d waiting, %d in use", c.slots.Waiting(), c.slots.InUse())
	}
	// A waiter whose context ends leaves the queue.
	_ = c.slots.Acquire(ctx, false)
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if err := c.slots.Acquire(short, false); !errors.Is(err, policy.ErrBusy) {
		t.Fatalf("ended wait: %v", err)
	}
	if c.slots.Waiting() != 0 {
		t.Fatal("an ended waiter stayed queued")
	}
	c.slots.Release()
}

// TestHashQueueExpectedWait: a waiter is admitted only if its turn can be
// expected within the wait budget and half its own deadline, judged from
// the recent computations' average time; cheaper computations admit more.
func TestHashQueueExpectedWait(t *testing.T) {
	h := NewSlots(1, 1000, 10*time.Second)
	ctx := testenv.Context(t)
	if err := h.Acquire(ctx, false); err != nil { // the one slot taken
		t.Fatal(err)
	}
	// Computations of 4 s or so: 2 waiters fit in 10 s, not 3.
	for range 50 {
		h.Took(4 * time.Second)
	}
	waiters := func(ctx context.Context, n int) (admitted int, refused error) {
		t.Helper()
		errs := make(chan error, n)
		for i := range n {
			go func() { errs <- h.Acquire(ctx, false) }()
			// Each waiter is queued (or refused) before the next comes.
			testenv.WaitFor(t, 5*time.Second, "queued or refused", func() bool { return h.Waiting()+len(errs) == i+1 })
		}
		admitted = h.Waiting()
		if len(errs) > 0 {
			refused = <-errs
		}
		return admitted, refused
	}
	wctx, cancel := context.WithCancel(ctx)
	n, err := waiters(wctx, 3)
	if n != 2 || !errors.Is(err, policy.ErrBusy) || !strings.Contains(err.Error(), "budget 10s") {
		t.Fatalf("4 s computations, 10 s budget: %d admitted, %v", n, err)
	}
	cancel()
	testenv.WaitFor(t, 5*time.Second, "the waiters gone", func() bool { return h.Waiting() == 0 })

	// Computations of 100 ms: the same budget admits about 100.
	for range 100 {
		h.Took(100 * time.Millisecond)
	}
	wctx, cancel = context.WithCancel(ctx)
	n, err = waiters(wctx, 101)
	cancel()
	if n < 90 || n > 100 || err == nil {
		t.Fatalf("100 ms computations, 10 s budget: %d admitted, %v", n, err)
	}
	testenv.WaitFor(t, 5*time.Second, "the waiters gone", func() bool { return h.Waiting() == 0 })
	h.Release()
}

// TestHashQueueWaitBounded: the budget bounds the wait itself, not only
// the admission: when the average misled (every slot stays taken), an
// admitted waiter hears "busy" at the end of its budget, and a deadline
// leaves half its time to what follows the hash.
func TestHashQueueWaitBounded(t *testing.T) {
	h := NewSlots(1, 1000, 100*time.Millisecond)
	ctx := testenv.Context(t)
	if err := h.Acquire(ctx, false); err != nil { // the one slot taken, for good
		t.Fatal(err)
	}
	for range 50 {
		h.Took(40 * time.Millisecond)
	}
	start := time.Now()
	err := h.Acquire(ctx, false)
	if !errors.Is(err, policy.ErrBusy) || !strings.Contains(err.Error(), "no slot within 100ms") {
		t.Fatalf("admitted, no slot freed: %v, want busy after the 100 ms budget", err)
	}
	if waited := time.Since(start); waited < 100*time.Millisecond {
		t.Fatalf("left after %v, before its budget", waited)
	}
	if h.Waiting() != 0 {
		t.Fatal("a waiter past its budget stayed queued")
	}
	// 150 ms left: admitted (40 ms expected), gone after 75 ms, before its
	// deadline.
	short, cancelShort := context.WithTimeout(ctx, 150*time.Millisecond)
	err = h.Acquire(short, false)
	if !errors.Is(err, policy.ErrBusy) || errors.Is(err, context.DeadlineExceeded) || short.Err() != nil {
		t.Fatalf("150 ms deadline: %v (context: %v), want busy within half of it", err, short.Err())
	}
	cancelShort()
	// 60 ms left: half of it is less than the 40 ms expected: refused at once.
	short, cancelShort = context.WithTimeout(ctx, 60*time.Millisecond)
	defer cancelShort()
	if err := h.Acquire(short, false); !errors.Is(err, policy.ErrBusy) || !strings.Contains(err.Error(), "budget") {
		t.Fatalf("40 ms expected, 60 ms deadline: %v, want refused at once", err)
	}
	// A slot freed within the budget is taken.
	h = NewSlots(1, 1000, 10*time.Second)
	if err := h.Acquire(ctx, false); err != nil {
		t.Fatal(err)
	}
	go func() {
		for h.Waiting() != 1 {
			time.Sleep(time.Millisecond)
		}
		h.Release()
	}()
	if err := h.Acquire(ctx, false); err != nil {
		t.Fatalf("a slot freed in time: %v", err)
	}
	h.Release()
}
