package authstore

import (
	"context"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
)

// changeFeed is what Watch delivered, for tests.
type changeFeed struct {
	t  *testing.T
	ch chan policy.Change
}

// watchChanges runs s.Watch until ctx ends and collects its changes.
func watchChanges(t *testing.T, ctx context.Context, s *Store) *changeFeed {
	f := &changeFeed{t: t, ch: make(chan policy.Change, 256)}
	go func() { _ = s.Watch(ctx, func(c policy.Change) { f.ch <- c }) }()
	return f
}

// await waits up to timeout for a change that ok accepts, dropping the
// others. poke, when set, runs before each wait of up to 200 ms: an action
// repeated until one of its changes is delivered.
func (f *changeFeed) await(timeout time.Duration, what string, poke func(), ok func(policy.Change) bool) {
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

// forUser accepts a change for name that is not a resync.
func forUser(name string) func(policy.Change) bool {
	return func(c policy.Change) bool { return c.Username == name && !c.Resync }
}

func isResync(c policy.Change) bool { return c.Resync }
