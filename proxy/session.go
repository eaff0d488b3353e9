package proxy

import (
	"crypto/tls"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/relay"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/transport"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
	"github.com/mqtt-authproxy/mqtt-authproxy/proxy/limits"
)

// session is one authenticated client relayed to its own broker
// connection. The relay owns the connections and their state (relaying,
// ending, closed); the session adds what decides it again: the request
// it was accepted with and its timers.
type session struct {
	p      *Proxy
	relay  *relay.Session
	remote string
	// req is the CONNECT's request with Verified set and no password: the
	// session is decided again against the credential it was accepted
	// with, so a re-decision needs neither the password nor a hash.
	req        policy.Request
	credential policy.Credential // what req.Verified points at
	acl        *aclFilter        // nil without topic rules: the opaque relay
	info       transport.Info
	since      time.Time
	up         byteCounter // bytes device to broker
	down       byteCounter // bytes broker to device
	denied     denials     // topic denials since the last summary
	// credKind is the kind of credential the session was accepted with,
	// oldPassword whether its last decision accepted a rotation's
	// previous password (the session registry shows them).
	credKind    string
	oldPassword atomic.Bool

	// broker is the broker's address and mountpoint the session's topic
	// prefix there ("" none); release counts the session down at its
	// Brokers when it ends (nil: nothing to do). route.go.
	broker, mountpoint string
	pool               string // the decision's Backend ("" the default pool)
	release            func()

	// limits is the session's limits filter, nil on the opaque relay
	// (proxy/limits; limits.go); connack the CONNACK the device is sent
	// when its limits changed the broker's (nil: the broker's as it is);
	// counted: the session counts toward its user's max_sessions
	// (quota.go).
	limits  *limits.Filter
	connack []byte
	counted bool

	// mu guards what re-decisions change: the roles the last decision
	// read and the timers of the next ones.
	mu         sync.Mutex
	roles      []string      // the roles the last decision read
	notAfter   *time.Timer   // the re-decision at the user's not_after
	retry      *time.Timer   // a re-decision after one that failed for want of the store
	retryDelay time.Duration // its backoff
}

// kickGrace bounds how long a kick waits for a packet boundary before it
// closes without DISCONNECT.
const kickGrace = time.Second

func newSession(p *Proxy, client transport.Conn, broker *BrokerConn, req policy.Request, connect *packets.Connect, d policy.Decision) *session {
	s := &session{p: p, req: req, remote: client.Conn.RemoteAddr().String(), roles: d.Roles, info: client.Info, since: time.Now()}
	if req.Verified != nil {
		s.credential = *req.Verified
		s.req.Verified = &s.credential
	}
	s.credKind = d.CredentialKind
	s.oldPassword.Store(d.OldPassword)
	s.up.total, s.down.total = p.metrics.bytesUp, p.metrics.bytesDown
	s.takeBroker(broker, d)
	filter := relay.NewChain(req.Protocol, s.filters(d, connect, broker.Connack)...)
	s.relay = p.engine.NewSession(relay.Config{
		Filter:       filter,
		MaxPacket:    p.cfg.MaxPacketBytes,
		Client:       client.Endpoint,
		Broker:       broker.Endpoint,
		Early:        broker.Early,
		WriteTimeout: writeTimeoutFor(connect.KeepAlive),
		Up:           &s.up,
		Down:         &s.down,
		OnEnd:        s.ended,
		End:          func(final []byte, cause string) { s.endWith(final, cause, filterEndGrace) },
	})
	return s
}

// filters are the relay filters the session's decision asks for, ordered
// from the device's side to the broker's (relay.Chain): topic rules when
// the decision carries them. Each kind of rule a session may carry is one
// more filter here; none: the opaque relay.
func (s *session) filters(d policy.Decision, connect *packets.Connect, ack packets.Connack) []relay.Filter {
	var fs []relay.Filter
	if d.Topics != nil {
		s.acl = newACLFilter(s, d.Topics, connect.Properties, ack, s.p.cfg.DenyAction)
		fs = append(fs, s.acl)
	}
	// The mountpoint last, on the broker's side: the filters before it
	// judge the device's view.
	if mp := s.mountpointFilter(connect); mp != nil {
		fs = append(fs, mp)
	}
	return s.withLimits(fs, d, connect, ack) // limits, last: limits.go
}

// ended runs once when the relay has closed both connections: the
// session's accounting, in one place.
func (s *session) ended() {
	s.flushDenials()
	s.limits.Stop()
	s.uncount()
	s.p.removeSession(s)
	s.stopTimers()
	s.releaseBroker()
	s.p.metrics.Active.Dec()
	s.p.releaseSlot()
	s.p.wg.Done()
}

// end ends the session from the proxy's side, whoever ends it (a kick, a
// revocation, a ban, shutdown, a topic denial, a malformed packet): an
// MQTT 5 client first gets a DISCONNECT with code at a packet boundary
// (waiting up to kickGrace for one); a 3.x client is closed. The broker
// connection is closed too. The one door: only the first end takes
// effect, and it is counted under its cause (and recorded, for the causes
// an operator acts on).
func (s *session) end(code packets.ReasonCode, cause string) {
	var final []byte
	if s.req.Protocol == packets.V5 {
		final = packets.AppendDisconnect(nil, packets.V5, code)
	}
	if s.endWith(final, cause, kickGrace) && (cause == "kicked" || cause == "shutdown") {
		s.record("kick", cause, fmt.Sprintf("closed by the proxy (%s), DISCONNECT 0x%02X for MQTT 5", cause, byte(code)))
	}
}

// endWith is end with its final packet made (a filter's, or nil); it
// reports whether this call ended the session.
func (s *session) endWith(final []byte, cause string, grace time.Duration) bool {
	if !s.relay.EndWith(final, grace) {
		return false
	}
	s.p.metrics.Disconnects.WithLabelValues(cause).Inc()
	return true
}

// filterEndGrace bounds how long a session its filter ended waits for a
// boundary of the client's stream to write its last packet.
const filterEndGrace = time.Second

// hasRole reports whether the session's last decision read the role.
func (s *session) hasRole(role string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.roles, role)
}

func (s *session) setRoles(roles []string) {
	s.mu.Lock()
	s.roles = roles
	s.mu.Unlock()
}

// done reports whether the session has ended or is ending.
func (s *session) done() bool { return s.relay.Ended() }

// writeTimeoutFor is the write deadline of a session whose device asked for
// keepAlive seconds: one and a half keepalives, as the broker allows a
// silent device, and never less than minWriteTimeout; without a keepalive,
// noKeepAliveWriteTimeout.
func writeTimeoutFor(keepAlive uint16) time.Duration {
	if keepAlive == 0 {
		return noKeepAliveWriteTimeout
	}
	return max(time.Duration(keepAlive)*1500*time.Millisecond, minWriteTimeout)
}

const (
	minWriteTimeout         = 5 * time.Second
	noKeepAliveWriteTimeout = 5 * time.Minute
)

// byteCounter counts a session's bytes one way, and the process's.
type byteCounter struct {
	n     atomic.Int64
	total relay.Counter
}

func (c *byteCounter) Add(f float64) {
	c.n.Add(int64(f))
	c.total.Add(f)
}

// SessionInfo is a live session as the status page shows it.
type SessionInfo struct {
	Username   string    `json:"username"`
	ClientID   string    `json:"client_id"`
	Remote     string    `json:"remote"`
	Since      time.Time `json:"since"`
	Protocol   int       `json:"protocol"`
	TLS        string    `json:"tls"`
	Resumed    bool      `json:"resumed"`
	TopicRules bool      `json:"topic_rules"`
	BytesUp    int64     `json:"bytes_up"`
	BytesDown  int64     `json:"bytes_down"`
	// Credential is the kind of credential the session was accepted with;
	// OldPassword: a rotation's previous password.
	Credential  string `json:"credential,omitempty"`
	OldPassword bool   `json:"old_password,omitempty"`

	// Slowed: a rate limit holds the device back now (or did within the
	// last second); Limits lists the session's limits ("" none).
	Slowed bool   `json:"slowed,omitempty"`
	Limits string `json:"limits,omitempty"`
}

// Snapshot lists the live sessions, oldest first.
func (p *Proxy) Snapshot() []SessionInfo {
	ss := p.allSessions()
	out := make([]SessionInfo, 0, len(ss))
	for _, s := range ss {
		tlsName := "none"
		if s.info.TLSVersion != 0 {
			tlsName = tls.VersionName(s.info.TLSVersion)
		}
		out = append(out, SessionInfo{Username: s.req.Username, ClientID: s.req.ClientID, Remote: s.remote, Since: s.since,
			Protocol: int(s.req.Protocol), TLS: tlsName, Resumed: s.info.Resumed, TopicRules: s.acl != nil,
			BytesUp: s.up.n.Load(), BytesDown: s.down.n.Load(), Credential: s.credKind, OldPassword: s.oldPassword.Load(),
			Slowed: s.limits.Slowed(), Limits: s.limits.Describe()})
	}
	slices.SortFunc(out, func(a, b SessionInfo) int { return a.Since.Compare(b.Since) })
	return out
}
