package authstore

import (
	"context"
	"sync"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// revokedRefresh is how often the revoked credentials are read again
// besides every revocation notification: the safety net for a missed one.
const revokedRefresh = 30 * time.Second

// Watch delivers the rule store's changes as changefeed.Feed.Watch does,
// and keeps the revoked credentials in memory: read at start (again every
// second until that succeeds), on every revocation notification and every
// resync before the change is delivered (so that the sessions it names
// are found), and every 30 s.
func (s *Store) Watch(ctx context.Context, deliver func(policy.Change)) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { s.keepRevoked(ctx) })
	return s.Feed.Watch(ctx, func(c policy.Change) {
		if c.Revoked || c.Resync {
			s.refreshRevoked(ctx)
		}
		deliver(c)
	})
}

// refreshRevoked reads the revoked credentials again, logging a failure
// (the set held stays).
func (s *Store) refreshRevoked(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.revoked.Refresh(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn("revoked credentials not read again; keeping the ones held", "error", err, "held", s.revoked.Size())
	}
}

// keepRevoked reads the revoked credentials until ctx ends: every second
// until the first read succeeds, then every revokedRefresh.
func (s *Store) keepRevoked(ctx context.Context) {
	for {
		s.refreshRevoked(ctx)
		wait := revokedRefresh
		if !s.revoked.Loaded() {
			wait = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
