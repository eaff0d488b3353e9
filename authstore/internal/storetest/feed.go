package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Watcher is a change feed (authstore.Store, changefeed.Feed).
type Watcher interface {
	Watch(ctx context.Context, f func(policy.Change)) error
}

// Feed is what a Watcher delivered.
type Feed struct {
	t  testing.TB
	ch chan policy.Change
}

// Watch runs w.Watch until ctx ends and collects its changes.
func Watch(t testing.TB, ctx context.Context, w Watcher) *Feed {
	f := &Feed{t: t, ch: make(chan policy.Change, 256)}
	go func() { _ = w.Watch(ctx, func(c policy.Change) { f.ch <- c }) }()
	return f
}

// Await waits up to timeout for a change that ok accepts, dropping the
// others. poke, when set, runs before each wait of up to 200 ms: an action
// repeated until one of its changes is delivered.
func (f *Feed) Await(timeout time.Duration, what string, poke func(), ok func(policy.Change) bool) {
	f.t.Helper()
	testenv.WaitFor(f.t, timeout, what, func() bool {
		if poke != nil {
			poke()
		}
		select {
		case c := <-f.ch:
			return ok(c)
		case <-time.After(200 * time.Millisecond):
			return false
		}
	})
}

// ForUser accepts a change for name that is not a resync.
func ForUser(name string) func(policy.Change) bool {
	return func(c policy.Change) bool { return c.Username == name && !c.Resync }
}

// IsResync accepts a resync.
func IsResync(c policy.Change) bool { return c.Resync }
