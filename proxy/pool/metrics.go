package pool

import (
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the pools' series, per broker address, under authproxy_.
type Metrics struct {
	up       *prometheus.GaugeVec   // address: 1 up, 0 down or not probed yet
	sessions *prometheus.GaugeVec   // address: live sessions of this replica
	connects *prometheus.CounterVec // address, result: ok, failed (moved to the next), busy (the rate)
	probes   *prometheus.CounterVec // address, result: ok, failed
	wait     prometheus.Histogram   // seconds a CONNECT waited for the connect rate
}

// NewMetrics creates the series and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "authproxy_backend_up",
			Help: "Whether the broker address is up (1: its last probe or CONNECT passed; 0: down, or not probed yet)."}, []string{"address"}),
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "authproxy_backend_sessions",
			Help: "Live sessions of this replica by broker address."}, []string{"address"}),
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "authproxy_backend_connects_total",
			Help: "CONNECTs sent to a broker address by result: ok, failed (the next address was tried), busy (held past its deadline by BACKEND_CONNECT_RATE)."},
			[]string{"address", "result"}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "authproxy_backend_probes_total",
			Help: "Health probes of a broker address by result (ok, failed)."}, []string{"address", "result"}),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "authproxy_backend_rate_wait_seconds",
			Help: "Time a CONNECT waited for its slot of BACKEND_CONNECT_RATE.", Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12)}),
	}
	if reg != nil {
		reg.MustRegister(m.up, m.sessions, m.connects, m.probes, m.wait)
	}
	return m
}

// Status is the pools as the status page shows them.
type Status struct {
	Policy    string          `json:"policy"`
	Addresses []AddressStatus `json:"addresses"`
	// UnknownPools are the pool names decisions named that do not exist
	// (the CONNECTs were refused), most recent first.
	UnknownPools []UnknownPool `json:"unknown_pools"`
}

// AddressStatus is one broker address.
type AddressStatus struct {
	Address   string    `json:"address"`
	Pools     []string  `json:"pools"`
	State     string    `json:"state"` // up, down, unknown (not probed yet)
	Since     time.Time `json:"since"` // when the state last changed
	LastProbe time.Time `json:"last_probe"`
	LastError string    `json:"last_error,omitempty"`
	Sessions  int64     `json:"sessions"` // live sessions of this replica
	Connects  int64     `json:"connects"` // CONNECTs it took since the start
	Failures  int64     `json:"failures"` // CONNECTs it failed (tried elsewhere)
	Busy      int64     `json:"busy"`     // CONNECTs refused busy by the connect rate
}

// UnknownPool is a pool name that decisions named and BACKEND_POOLS does
// not have.
type UnknownPool struct {
	Name  string    `json:"name"`
	Count int64     `json:"count"` // CONNECTs refused for it
	Last  time.Time `json:"last"`
}

// maxUnknown bounds the unknown pool names kept.
const maxUnknown = 100

func (s *Set) noteUnknown(name string) {
	s.unknownMu.Lock()
	defer s.unknownMu.Unlock()
	u := s.unknown[name]
	if u == nil {
		if len(s.unknown) >= maxUnknown {
			return
		}
		u = &UnknownPool{Name: name}
		s.unknown[name] = u
		s.log.Warn("a user's backend field names a pool that BACKEND_POOLS does not have: its CONNECTs are refused", "pool", name)
	}
	u.Count++
	u.Last = time.Now()
}

// Status reports every address, in the order first listed, and the
// unknown pool names.
func (s *Set) Status() Status {
	st := Status{Policy: s.o.Policy.String(), Addresses: make([]AddressStatus, 0, len(s.members)), UnknownPools: []UnknownPool{}}
	for _, m := range s.members {
		m.mu.Lock()
		a := AddressStatus{Address: m.addr, Pools: slices.Clone(m.pools), State: stateName(m.state.Load()), Since: m.since,
			LastProbe: m.lastProbe, LastError: m.lastErr}
		m.mu.Unlock()
		a.Sessions, a.Connects, a.Failures, a.Busy = m.sessions.Load(), m.connects.Load(), m.failures.Load(), m.busy.Load()
		st.Addresses = append(st.Addresses, a)
	}
	s.unknownMu.Lock()
	for _, u := range s.unknown {
		st.UnknownPools = append(st.UnknownPools, *u)
	}
	s.unknownMu.Unlock()
	slices.SortFunc(st.UnknownPools, func(a, b UnknownPool) int {
		if c := b.Last.Compare(a.Last); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return st
}

func stateName(st int32) string { return [...]string{"unknown", "up", "down"}[st] }
