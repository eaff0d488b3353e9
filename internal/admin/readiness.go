package admin

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// The words of /readyz's body.
const (
	ok          = "ok"
	unavailable = "unavailable"
)

// readiness is /readyz's probe of its checks, shared by every request and
// made at most once per interval. Its result names no address and no
// error; a failed probe is logged at warn instead (so at most once per
// interval too).
type readiness struct {
	checks   []Check
	interval time.Duration
	log      *slog.Logger

	flight singleflight.Group
	mu     sync.Mutex
	at     time.Time // when status was found; zero: never
	status map[string]string
}

func newReadiness(checks []Check, interval time.Duration, log *slog.Logger) *readiness {
	return &readiness{checks: checks, interval: interval, log: log}
}

// get returns the current status, probing when the last one is older than
// the interval; concurrent callers share one probe. The map is shared:
// callers must not change it. A caller whose ctx ends first gets every
// check as unavailable (the probe goes on for the others).
func (r *readiness) get(ctx context.Context) map[string]string {
	if st, ok := r.cached(); ok {
		return st
	}
	ch := r.flight.DoChan("probe", func() (any, error) {
		if st, ok := r.cached(); ok { // a probe just ended
			return st, nil
		}
		st := r.probe()
		r.mu.Lock()
		r.at, r.status = time.Now(), st
		r.mu.Unlock()
		return st, nil
	})
	select {
	case res := <-ch:
		return res.Val.(map[string]string)
	case <-ctx.Done():
		st := make(map[string]string, len(r.checks))
		for _, c := range r.checks {
			st[c.Name] = unavailable
		}
		return st
	}
}

func (r *readiness) cached() (map[string]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status, !r.at.IsZero() && time.Since(r.at) < r.interval
}

// probe runs every check at once, on a context of its own: a request that
// goes away does not cancel the shared probe.
func (r *readiness) probe() map[string]string {
	ctx, cancel := context.WithTimeout(context.Background(), ReadyProbeTimeout)
	defer cancel()
	errs := make([]error, len(r.checks))
	var wg sync.WaitGroup
	for i, c := range r.checks {
		wg.Go(func() { errs[i] = c.Probe(ctx) })
	}
	wg.Wait()
	st := make(map[string]string, len(r.checks))
	var attrs []any
	for i, c := range r.checks {
		st[c.Name] = ok
		if errs[i] != nil {
			st[c.Name] = unavailable
			attrs = append(attrs, c.Name, c.Target, c.Name+"_error", errs[i])
		}
	}
	if attrs != nil {
		r.log.Warn("not ready: /readyz answers 503", attrs...)
	}
	return st
}
