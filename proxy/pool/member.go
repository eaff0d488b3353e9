package pool

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/logsafe"
	"github.com/mqtt-authproxy/mqtt-authproxy/proxy"
)

// States of a member.
const (
	stateUnknown int32 = iota // not probed yet: used
	stateUp
	stateDown // skipped until a probe finds it up
)

// member is one broker address, shared by every pool that lists it.
type member struct {
	s       *Set
	addr    string
	key     uint64 // hashString(addr): its rendezvous key
	backend proxy.Backend
	pools   []string      // the pools that list it, in the order first listed
	pace    *pacer        // nil without a connect rate
	probed  chan struct{} // closed once the first probe has answered

	state    atomic.Int32
	sessions atomic.Int64 // live sessions of this replica on it
	connects atomic.Int64 // CONNECTs it took
	failures atomic.Int64 // CONNECTs it failed (moved to the next address)
	busy     atomic.Int64 // CONNECTs refused past their deadline by the rate

	mu        sync.Mutex
	since     time.Time // when the state last changed
	lastProbe time.Time
	lastErr   string // the last probe's or CONNECT's failure; "" after a probe that passed
}

func newMember(addr string, b proxy.Backend, s *Set) *member {
	m := &member{s: s, addr: addr, key: hashString(addr), backend: b, since: time.Now(), probed: make(chan struct{})}
	if s.o.Rate > 0 {
		m.pace = newPacer(s.o.Rate, s.o.Bucket, "broker:"+addr, s.m.wait)
	}
	s.m.up.WithLabelValues(addr).Set(0)
	s.m.sessions.WithLabelValues(addr).Set(0)
	return m
}

// took counts a session on the member; the session's end counts it down.
func (m *member) took(bc *proxy.BrokerConn) {
	m.connects.Add(1)
	m.s.m.connects.WithLabelValues(m.addr, "ok").Inc()
	m.s.m.sessions.WithLabelValues(m.addr).Set(float64(m.sessions.Add(1)))
	var once sync.Once
	bc.Release = func() {
		once.Do(func() { m.s.m.sessions.WithLabelValues(m.addr).Set(float64(m.sessions.Add(-1))) })
	}
}

// failed marks the member down after a CONNECT it failed: skipped until a
// probe finds it up.
func (m *member) failed(err error) {
	m.failures.Add(1)
	m.s.m.connects.WithLabelValues(m.addr, "failed").Inc()
	m.set(stateDown, err, false)
}

// set changes the member's state, logging a change; probed: it is a
// probe's answer.
func (m *member) set(st int32, err error, probed bool) {
	now := time.Now()
	m.mu.Lock()
	if probed {
		m.lastProbe = now
	}
	switch {
	case err != nil:
		m.lastErr = logsafe.Error(err)
	case probed:
		m.lastErr = ""
	}
	old := m.state.Swap(st)
	if old != st {
		m.since = now
	}
	m.mu.Unlock()
	if old == st {
		return
	}
	m.s.m.up.WithLabelValues(m.addr).Set(map[bool]float64{true: 1}[st == stateUp])
	switch {
	case st == stateDown:
		m.s.log.Warn("broker down: skipped until a probe finds it up", "address", m.addr, "pools", m.pools, "error", logsafe.Error(err))
	case old == stateDown:
		m.s.log.Info("broker up again", "address", m.addr, "pools", m.pools)
	}
}

// Start probes every address now and then every HealthInterval, until
// Close. Each address has one probe at a time, whatever the CONNECTs: a
// connection (TLS where configured) and, with backend credentials, an
// MQTT CONNECT they must be accepted with (proxy.Backend.Probe).
func (s *Set) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	for _, m := range s.members {
		s.wg.Go(func() { m.probeLoop(ctx, s.o.HealthInterval) })
		if m.pace != nil {
			s.wg.Go(func() { m.pace.run(ctx) })
		}
	}
}

// Close stops the probes and the pacers; CONNECTs still waiting for the
// rate are told busy.
func (s *Set) Close() {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
}

func (m *member) probeLoop(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	first := true
	for {
		err := m.backend.Probe(ctx)
		if ctx.Err() != nil {
			return
		}
		m.s.m.probes.WithLabelValues(m.addr, map[bool]string{true: "ok", false: "failed"}[err == nil]).Inc()
		if err != nil {
			m.set(stateDown, err, true)
		} else {
			m.set(stateUp, nil, true)
		}
		if first {
			first = false
			close(m.probed)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
