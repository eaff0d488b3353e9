package pool

import (
	"container/heap"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqtt-authproxy/mqtt-authproxy/proxy"
)

// Bucket takes the slots of a rate that every replica shares.
type Bucket interface {
	// Reserve takes the next slot of key's rate (one every interval,
	// across every replica, no burst) and returns how long until it is
	// due. It does not fail: without its shared store it keeps this
	// replica's share of the rate.
	Reserve(ctx context.Context, key string, interval time.Duration) time.Duration
}

// LocalBucket is a Bucket for one replica: the whole rate, in process.
type LocalBucket struct {
	mu  sync.Mutex
	tat map[string]time.Time // when each key's next slot is free
}

// Reserve implements Bucket (GCRA without burst).
func (b *LocalBucket) Reserve(_ context.Context, key string, interval time.Duration) time.Duration {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tat == nil {
		b.tat = map[string]time.Time{}
	}
	t := b.tat[key]
	if t.Before(now) {
		t = now
	}
	b.tat[key] = t.Add(interval)
	return t.Sub(now)
}

// rateMargin is what a CONNECT keeps of its deadline for its broker's
// answer: it stops waiting for the rate that much before the deadline.
const rateMargin = 200 * time.Millisecond

// pacer holds the CONNECTs to one address to its rate: each waits for a
// slot, known devices first, then in arrival order, up to its deadline.
// One goroutine (run) takes the slots, one at a time and only while
// CONNECTs wait, and hands each to the first waiting CONNECT.
type pacer struct {
	interval time.Duration
	bucket   Bucket
	key      string
	waited   prometheus.Observer

	wake chan struct{} // a CONNECT came to wait
	done chan struct{} // closed when run ends: every CONNECT waiting is busy

	mu  sync.Mutex
	q   waitQueue
	seq uint64
}

func newPacer(rate float64, b Bucket, key string, waited prometheus.Observer) *pacer {
	if b == nil {
		b = &LocalBucket{}
	}
	return &pacer{interval: time.Duration(float64(time.Second) / rate), bucket: b, key: key, waited: waited,
		wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// waiter is a CONNECT waiting for a slot.
type waiter struct {
	known   bool
	seq     uint64
	index   int           // in the queue; -1 once out of it
	granted chan struct{} // closed when it got its slot
}

// wait returns when the CONNECT may dial (at once with no rate), or
// proxy.ErrBrokersBusy when no slot came before its deadline (less
// rateMargin).
func (p *pacer) wait(ctx context.Context, known bool) error {
	if p == nil {
		return nil
	}
	start := time.Now()
	limit := start.Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok {
		limit = d.Add(-rateMargin)
	}
	p.mu.Lock()
	p.seq++
	w := &waiter{known: known, seq: p.seq, granted: make(chan struct{})}
	heap.Push(&p.q, w)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	t := time.NewTimer(time.Until(limit))
	defer t.Stop()
	select {
	case <-w.granted:
		p.waited.Observe(time.Since(start).Seconds())
		return nil
	case <-t.C:
	case <-ctx.Done():
	case <-p.done:
	}
	p.mu.Lock()
	if w.index >= 0 {
		heap.Remove(&p.q, w.index)
	}
	p.mu.Unlock()
	select {
	case <-w.granted: // granted while giving up: take it
		return nil
	default:
	}
	return fmt.Errorf("%w: no slot of %s within the CONNECT's deadline (BACKEND_CONNECT_RATE)", proxy.ErrBrokersBusy, p.key)
}

// run hands out slots while CONNECTs wait, until ctx ends.
func (p *pacer) run(ctx context.Context) {
	defer close(p.done)
	for {
		p.mu.Lock()
		n := p.q.Len()
		p.mu.Unlock()
		if n == 0 {
			select {
			case <-p.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		if d := p.bucket.Reserve(ctx, p.key, p.interval); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
		p.grant()
	}
}

// grant gives the slot due now to the first CONNECT waiting, if any is
// left (one that gave up leaves its slot unused).
func (p *pacer) grant() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.q.Len() == 0 {
		return
	}
	w := heap.Pop(&p.q).(*waiter)
	close(w.granted)
}

// waitQueue orders waiting CONNECTs: known devices first, then by arrival.
type waitQueue []*waiter

func (q waitQueue) Len() int { return len(q) }
func (q waitQueue) Less(i, j int) bool {
	if q[i].known != q[j].known {
		return q[i].known
	}
	return q[i].seq < q[j].seq
}
func (q waitQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *waitQueue) Push(x any) {
	w := x.(*waiter)
	w.index = len(*q)
	*q = append(*q, w)
}
func (q *waitQueue) Pop() any {
	old := *q
	w := old[len(old)-1]
	old[len(old)-1] = nil
	w.index = -1
	*q = old[:len(old)-1]
	return w
}
