package proxy

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/logsafe"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/relay"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
	"github.com/mqtt-authproxy/mqtt-authproxy/proxy/limits"
)

// withLimits adds the limits filter (proxy/limits) to a session's
// filters, on the broker's side of the others: when the session has
// limits, and when it is framed anyway (topic rules, a mountpoint), so
// that limits set while it is live apply at once. A session with neither
// keeps the opaque relay: limits set later apply from its next CONNECT.
// For an MQTT 5 device it also makes the CONNACK the device is sent
// (s.connack): one CONNACK, the broker's with the properties the limits
// lower.
func (s *session) withLimits(fs []relay.Filter, d policy.Decision, connect *packets.Connect, ack packets.Connack) []relay.Filter {
	if len(fs) == 0 && d.Limits.Empty() {
		return fs
	}
	keepAlive := time.Duration(connect.KeepAlive) * time.Second
	if s.req.Protocol == packets.V5 {
		var props packets.Properties
		s.connack, props = limits.Connack(ack, d.Limits, connect.KeepAlive)
		if p, ok := props.Get(packets.PropServerKeepAlive); ok {
			keepAlive = time.Duration(p.Int) * time.Second
		}
	}
	s.limits = limits.New(d.Limits, limits.Options{Session: limitSession{s}, Level: s.req.Protocol,
		AskedKeepAlive: connect.KeepAlive, KeepAlive: keepAlive, DenyDisconnect: s.p.cfg.DenyAction == DenyDisconnect})
	return append(fs, s.limits)
}

// connackFor is the CONNACK the device is sent: the broker's, raw, or the
// one its limits made.
func (s *session) connackFor(raw []byte) []byte {
	if s.connack != nil {
		return s.connack
	}
	return raw
}

// limitSession is a session as its limits filter sees it.
type limitSession struct{ s *session }

var _ limits.Session = limitSession{}

func (l limitSession) Refused(lim policy.Limit, what string) { l.s.p.limitRefused(lim, l.s, what) }

func (l limitSession) Throttled(lim policy.Limit, d time.Duration) { l.s.p.throttled(lim, d) }

func (l limitSession) Silent(max time.Duration) {
	l.s.p.log.Info("keep alive: the device was silent for 1.5 x max_keepalive; closing", "username", logsafe.String(l.s.req.Username),
		"client_id", logsafe.String(l.s.req.ClientID), "remote", l.s.remote, "max_keepalive", max)
	l.s.end(packets.KeepAliveTimeout, "keepalive")
}

func (l limitSession) WriteBroker(pkt []byte) error { return l.s.relay.WriteBroker(pkt) }

func (l limitSession) ClientClosed() bool { return l.s.relay.ClientClosed() }

func (l limitSession) Done() bool { return l.s.done() }

// limitRefused counts a refusal by limit l and logs it (at info within
// the log budget, else at debug); s nil: a CONNECT, which its attempt
// logs.
func (p *Proxy) limitRefused(l policy.Limit, s *session, what string) {
	p.metrics.LimitRefusals.WithLabelValues(l.String()).Inc()
	p.counts.limits.refused[l].Add(1)
	if s == nil {
		return
	}
	level := slog.LevelDebug
	if p.aclLog.allow("limit " + l.String()) {
		level = slog.LevelInfo
	}
	p.log.Log(context.Background(), level, "limit "+l.String()+": "+what, "username", logsafe.String(s.req.Username),
		"client_id", logsafe.String(s.req.ClientID), "remote", s.remote)
}

// throttled counts the time a device is held back, by the limit that
// held it.
func (p *Proxy) throttled(l policy.Limit, d time.Duration) {
	p.metrics.Throttled.WithLabelValues(l.String()).Add(d.Seconds())
	p.counts.limits.throttled.Add(int64(d))
}

// limitCounts are the limits' counts Stats reports.
type limitCounts struct {
	refused   [policy.NumLimits]atomic.Int64
	throttled atomic.Int64 // ns
}

func (c *limitCounts) stats() (map[string]int64, time.Duration) {
	m := map[string]int64{}
	for l := range policy.NumLimits {
		if n := c.refused[l].Load(); n > 0 {
			m[l.String()] = n
		}
	}
	return m, time.Duration(c.throttled.Load())
}
