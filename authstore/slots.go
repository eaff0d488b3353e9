package authstore

import (
	"container/list"
	"context"
	"fmt"
	"sync"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// hashSlots bounds the hash computations running at once, and the ones
// waiting: past maxQueue waiters a verification fails at once with
// policy.ErrBusy. Waiters with priority (a device at an address where its
// user authenticated before) get a freed slot ahead of the others, so that
// a flood of guesses from elsewhere delays known devices as little as it
// can.
type hashSlots struct {
	mu       sync.Mutex
	slots    int
	free     int
	maxQueue int
	high     list.List // of chan struct{}: waiters with priority
	low      list.List
}

func newHashSlots(slots, maxQueue int) *hashSlots {
	return &hashSlots{slots: slots, free: slots, maxQueue: maxQueue}
}

// acquire takes a slot, waiting in its class's queue while ctx allows.
func (h *hashSlots) acquire(ctx context.Context, priority bool) error {
	h.mu.Lock()
	if h.free > 0 {
		h.free--
		h.mu.Unlock()
		return nil
	}
	q := &h.low
	if priority {
		q = &h.high
	}
	if q.Len() >= h.maxQueue {
		h.mu.Unlock()
		return fmt.Errorf("%w: %d verifications already waiting", policy.ErrBusy, h.maxQueue)
	}
	ready := make(chan struct{})
	e := q.PushBack(ready)
	h.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		h.mu.Lock()
		defer h.mu.Unlock()
		select {
		case <-ready: // handed a slot meanwhile: pass it on
			h.releaseLocked()
		default:
			q.Remove(e)
		}
		return fmt.Errorf("%w: %w", policy.ErrBusy, ctx.Err())
	}
}

// release gives a slot back, to a waiter with priority first.
func (h *hashSlots) release() {
	h.mu.Lock()
	h.releaseLocked()
	h.mu.Unlock()
}

func (h *hashSlots) releaseLocked() {
	for _, q := range []*list.List{&h.high, &h.low} {
		if e := q.Front(); e != nil {
			q.Remove(e)
			close(e.Value.(chan struct{}))
			return
		}
	}
	h.free++
}

// inUse is the number of slots taken.
func (h *hashSlots) inUse() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.slots - h.free
}

// waiting is the number of waiters.
func (h *hashSlots) waiting() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.high.Len() + h.low.Len()
}
