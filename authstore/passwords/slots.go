package passwords

import (
	"container/list"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Slots bounds the hash computations running at once, and the ones
// waiting. A waiter is admitted only if it can expect its turn within the
// wait budget (maxWait, and never past its context's deadline), judged
// from the average time of the recent computations: with the OWASP
// parameters (25 ms or so) a few dozen waiters per slot, with the light
// parameters of generated passwords (1 ms or so) up to maxQueue. Past that
// a verification fails at once with policy.ErrBusy, so the device hears
// "server busy" now instead of a timeout later, and a fleet reconnecting
// with cheap hashes waits its turn instead of retrying. Waiters with
// priority (a device at an address where its user authenticated before)
// get a freed slot ahead of the others, so that a flood of guesses from
// elsewhere delays known devices as little as it can.
type Slots struct {
	mu       sync.Mutex
	slots    int
	free     int
	maxQueue int           // per class, whatever the expected wait
	maxWait  time.Duration // expected wait beyond which a waiter is refused
	avg      time.Duration // moving average of a computation's time
	high     list.List     // of chan struct{}: waiters with priority
	low      list.List
}

// initialHashTime is the average assumed before any computation was
// timed: the default parameters' cost on a slow core.
const initialHashTime = 40 * time.Millisecond

// NewSlots bounds the computations at once to slots, the waiters to
// maxQueue per class and the expected wait to maxWait.
func NewSlots(slots, maxQueue int, maxWait time.Duration) *Slots {
	return &Slots{slots: slots, free: slots, maxQueue: maxQueue, maxWait: maxWait, avg: initialHashTime}
}

// Acquire takes a slot, waiting in its class's queue while ctx allows.
func (h *Slots) Acquire(ctx context.Context, priority bool) error {
	h.mu.Lock()
	if h.free > 0 {
		h.free--
		h.mu.Unlock()
		return nil
	}
	q := &h.low
	ahead := h.high.Len() + h.low.Len() // a low waiter waits for both queues
	if priority {
		q, ahead = &h.high, h.high.Len()
	}
	if n := q.Len(); n >= h.maxQueue {
		h.mu.Unlock()
		return fmt.Errorf("%w: %d verifications already waiting", policy.ErrBusy, n)
	}
	// The budget is also the longest a waiter waits: when the average
	// misled (the computations slowed down under load), it hears "busy"
	// and retries instead of spending its CONNECT's whole deadline here.
	// Half the time left at most, so that what follows the hash (the
	// broker's dial) still has time.
	budget := h.maxWait
	if d, ok := ctx.Deadline(); ok {
		budget = min(budget, time.Until(d)/2)
	}
	if expect := time.Duration(ahead+1) * h.avg / time.Duration(h.slots); expect > budget {
		h.mu.Unlock()
		return fmt.Errorf("%w: %d verifications waiting, about %v before this one's turn (budget %v)",
			policy.ErrBusy, ahead, expect.Round(time.Millisecond), budget.Round(time.Millisecond))
	}
	ready := make(chan struct{})
	e := q.PushBack(ready)
	h.mu.Unlock()
	timer := time.NewTimer(budget)
	defer timer.Stop()
	var why error
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		why = ctx.Err()
	case <-timer.C:
		why = fmt.Errorf("no slot within %v", budget.Round(time.Millisecond))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-ready: // handed a slot meanwhile: pass it on
		h.releaseLocked()
	default:
		q.Remove(e)
	}
	return fmt.Errorf("%w: %w", policy.ErrBusy, why)
}

// Took records how long one computation took, for the expected waits.
func (h *Slots) Took(d time.Duration) {
	h.mu.Lock()
	h.avg += (d - h.avg) / 8
	h.mu.Unlock()
}

// Release gives a slot back, to a waiter with priority first.
func (h *Slots) Release() {
	h.mu.Lock()
	h.releaseLocked()
	h.mu.Unlock()
}

func (h *Slots) releaseLocked() {
	for _, q := range []*list.List{&h.high, &h.low} {
		if e := q.Front(); e != nil {
			q.Remove(e)
			close(e.Value.(chan struct{}))
			return
		}
	}
	h.free++
}

// InUse is the number of slots taken.
func (h *Slots) InUse() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.slots - h.free
}

// Waiting is the number of waiters.
func (h *Slots) Waiting() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.high.Len() + h.low.Len()
}
