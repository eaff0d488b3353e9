package proxy

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the proxy's Prometheus series, all under authproxy_.
type Metrics struct {
	Active        prometheus.Gauge
	Connects      *prometheus.CounterVec // by outcome
	AuthDuration  prometheus.Histogram
	Handshakes    *prometheus.CounterVec // by resumed
	Bytes         *prometheus.CounterVec // by direction
	BackendDial   prometheus.Histogram
	Disconnects   *prometheus.CounterVec // live connections closed by the proxy, by cause
	Revalidations *prometheus.CounterVec // re-decisions of live connections, by result
	ACLDenied     *prometheus.CounterVec // packets the topic rules refused, by action (publish, subscribe)
	Throttled     *prometheus.CounterVec // seconds devices were held back by a rate, by limit (pub_rate, pub_bytes)
	LimitRefusals *prometheus.CounterVec // what a limit refused, by limit (max_payload, max_qos, retain, max_subs, max_sessions)
	bytesUp       prometheus.Counter
	bytesDown     prometheus.Counter
	handshakeNew  prometheus.Counter
	handshakeResu prometheus.Counter
}

// NewMetrics creates the series and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Active: prometheus.NewGauge(prometheus.GaugeOpts{Name: "authproxy_connections_active",
			Help: "Client connections open now, from accept to close."}),
		Connects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "authproxy_connects_total",
			Help: "Connection attempts by outcome (accepted, bad_credentials, disabled, store_unavailable, ...)."}, []string{"outcome"}),
		AuthDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "authproxy_auth_duration_seconds",
			Help: "Time to decide a CONNECT against the rule store, hash included.", Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12)}),
		Handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "authproxy_tls_handshakes_total",
			Help: "Completed TLS handshakes by whether the session was resumed."}, []string{"resumed"}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "authproxy_bytes_relayed_total",
			Help: "Bytes relayed after authentication, by direction (upstream: device to broker)."}, []string{"direction"}),
		BackendDial: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "authproxy_backend_dial_duration_seconds",
			Help: "Time to dial the broker and receive its CONNACK.", Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12)}),
		Disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "authproxy_disconnects_total",
			Help: "Live connections the proxy closed, by cause (shutdown, revoked, kicked)."}, []string{"cause"}),
		Revalidations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "authproxy_revalidations_total",
			Help: "Live connections decided again after a change notification, a not_after or the periodic sweep, by result (allowed, revoked, error)."}, []string{"result"}),
		ACLDenied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "authproxy_acl_denied_total",
			Help: "PUBLISH packets and SUBSCRIBE filters the topic rules refused, by action (publish, subscribe)."}, []string{"action"}),
	}
	m.Throttled = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "authproxy_throttled_seconds_total",
		Help: "Time devices were held back (not read) by a rate limit, by limit (pub_rate, pub_bytes)."}, []string{"limit"})
	m.LimitRefusals = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "authproxy_limit_refusals_total",
		Help: "PUBLISHes, SUBSCRIBE filters and CONNECTs a limit refused, by limit (max_payload, max_qos, retain, max_subs, max_sessions)."}, []string{"limit"})
	m.bytesUp = m.Bytes.WithLabelValues("upstream")
	m.bytesDown = m.Bytes.WithLabelValues("downstream")
	m.handshakeNew = m.Handshakes.WithLabelValues("false")
	m.handshakeResu = m.Handshakes.WithLabelValues("true")
	if reg != nil {
		reg.MustRegister(m.Active, m.Connects, m.AuthDuration, m.Handshakes, m.Bytes, m.BackendDial, m.Disconnects, m.Revalidations, m.ACLDenied,
			m.Throttled, m.LimitRefusals)
	}
	return m
}

// Stats are the proxy's counts since it started, as typed values: the
// read model of the status page (which never reads them back out of
// Prometheus by metric name).
type Stats struct {
	// Connects counts the connection attempts by how they ended.
	Connects map[Outcome]int64
	// HandshakesFull and HandshakesResumed count completed TLS handshakes.
	HandshakesFull, HandshakesResumed int64
	// LastChange is when the last change notification came; zero if none
	// has.
	LastChange time.Time
	// LimitRefusals counts what each limit refused (by its field name:
	// max_payload, max_qos, retain, max_subs, max_sessions); Throttled is
	// the time devices were held back by a rate, all sessions together.
	LimitRefusals map[string]int64
	Throttled     time.Duration
}

// counts keeps what Stats reports, beside the Prometheus series.
type counts struct {
	connects          sync.Map // Outcome -> *atomic.Int64
	handshakesFull    atomic.Int64
	handshakesResumed atomic.Int64
	limits            limitCounts // limits.go
}

// connected counts an attempt's outcome, in the series and in Stats.
func (p *Proxy) connected(o Outcome) {
	p.metrics.Connects.WithLabelValues(string(o)).Inc()
	n, ok := p.counts.connects.Load(o)
	if !ok {
		n, _ = p.counts.connects.LoadOrStore(o, new(atomic.Int64))
	}
	n.(*atomic.Int64).Add(1)
}

// handshake counts a completed TLS handshake.
func (p *Proxy) handshake(resumed bool) {
	if resumed {
		p.metrics.handshakeResu.Inc()
		p.counts.handshakesResumed.Add(1)
		return
	}
	p.metrics.handshakeNew.Inc()
	p.counts.handshakesFull.Add(1)
}

// Stats reports the proxy's counts since it started.
func (p *Proxy) Stats() Stats {
	s := Stats{Connects: map[Outcome]int64{}, HandshakesFull: p.counts.handshakesFull.Load(),
		HandshakesResumed: p.counts.handshakesResumed.Load(), LastChange: p.LastChange()}
	p.counts.connects.Range(func(k, v any) bool {
		s.Connects[k.(Outcome)] = v.(*atomic.Int64).Load()
		return true
	})
	s.LimitRefusals, s.Throttled = p.counts.limits.stats()
	return s
}
