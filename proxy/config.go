package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/relay"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Config configures a Proxy. Zero durations and sizes take the defaults
// documented on each field; Provision fills them in and validates, and New
// calls it. A default that depends on another value follows it (the
// handshake's timeout is never longer than the CONNECT's); only two
// values set explicitly that contradict each other are an error.
type Config struct {
	// Brokers is where admitted sessions go: a Backend (one address), or
	// another kind of Brokers.
	Brokers Brokers
	Auth    policy.Authenticator

	ConnectTimeout time.Duration // accept to complete CONNECT, handshake included; default 10s
	// HandshakeTimeout bounds the transport's handshake, within
	// ConnectTimeout; default 5s, or ConnectTimeout when that is shorter.
	HandshakeTimeout time.Duration
	MaxConnectBytes  int // cap on the first packet, 16 bytes at least; default 65536
	MaxConnections   int // concurrent client connections; 0: no cap
	// MaxPending bounds the connections that have not yet delivered their
	// CONNECT; when full, a new one replaces the oldest if that has waited
	// a second or more, else it is closed before any TLS work. Default:
	// MaxConnections/4 (at least 16) when MaxConnections is set, else 1024.
	MaxPending    int
	ShutdownGrace time.Duration // how long Shutdown lets connections finish; default 10s
	// DrainRate is how many sessions a second Shutdown ends, one at a
	// time, evenly spaced (no burst); 0: the sessions open at Shutdown are
	// spread evenly over ShutdownGrace. ShutdownGrace wins: what is left
	// when it ends is ended then (drain.go).
	DrainRate float64
	// DrainServerReference, when set, is the Server Reference MQTT 5
	// devices are sent with DISCONNECT 0x9C (use another server) when
	// Shutdown ends their session; without it they get 0x8B (server
	// shutting down). 3.x devices are closed.
	DrainServerReference string
	// RevalidateInterval is how often every live connection is decided
	// again (spread evenly over the interval), the safety net for a missed
	// change notification; default 60s, negative turns it off.
	RevalidateInterval time.Duration
	// DenyAction is what a PUBLISH the topic rules refuse costs the
	// device (sessions whose decisions carry topic rules); default DenyDrop.
	DenyAction DenyAction
	// MaxPacketBytes caps a packet of a session with topic rules (it is
	// read whole before it is judged), 64 bytes at least; default
	// relay.DefaultMaxPacket. Past it the session ends (MQTT 5:
	// DISCONNECT 0x95).
	MaxPacketBytes int

	// ConnRatePerIP and ConnBurstPerIP bound new connections per source
	// address (a token bucket; 0: no limit): past it a connection is
	// closed before any TLS work.
	ConnRatePerIP  float64
	ConnBurstPerIP int
	// IPBans reads the IP bans, refused before any TLS work; it is called
	// at start, on every ban change notification and every 30 s (nil:
	// none).
	IPBans func(context.Context) ([]IPBan, error)
	// Revoked says why the credential a live session was accepted with
	// (its token, its client certificate) is revoked now, "" when it is
	// not; asked of every session on each revocation notification, from
	// memory (nil: revocations reach sessions at their next re-decision).
	Revoked func(policy.Request) string

	// Recorder takes the decision log's entries (nil: none are kept);
	// ReplicaID names this proxy in them.
	Recorder  policy.Recorder
	ReplicaID string
	// Sessions counts the live sessions of each user across replicas, for
	// max_sessions (authstore/sessions); nil counts this proxy's only.
	Sessions SessionCounter

	Logger  *slog.Logger
	Metrics *Metrics // nil: a private, unregistered set
}

// Defaults of Config.
const (
	DefaultConnectTimeout     = 10 * time.Second
	DefaultHandshakeTimeout   = 5 * time.Second
	DefaultMaxConnectBytes    = 65536
	DefaultShutdownGrace      = 10 * time.Second
	DefaultRevalidateInterval = time.Minute
)

// OptionError is a Config value that cannot be used; Option names the
// field, and Related the other field it contradicts, if any (Msg names it
// as written there, so that a program can name its own setting instead).
type OptionError struct {
	Option  string
	Msg     string
	Related string
}

func (e *OptionError) Error() string { return "proxy: " + e.Option + ": " + e.Msg }

// DefaultMaxPending is MaxPending's default for a MaxConnections: a
// quarter of the cap, at least 16 and never above it; 4096 without a cap.
// 4096 lets a fleet of that many devices reconnecting at once (a cold
// storm) all start their handshakes instead of being closed and retrying,
// and keeps the bar for silent connections high: to keep devices out they
// must come 4096 a second. A pending connection costs about 10-20 KiB
// while its handshake runs.
func DefaultMaxPending(maxConnections int) int {
	if maxConnections > 0 {
		return min(max(maxConnections/4, 16), maxConnections)
	}
	return 4096
}

// Provision validates c's values and fills in the defaults of its zero
// ones, those that depend on others after those; it needs none of the
// dependencies (Auth, Brokers), so a program can validate its settings
// before it has them. It returns the first problem, an *OptionError
// naming the field.
func (c *Config) Provision() error {
	if err := c.checkSizes(); err != nil {
		return err
	}
	explicitHandshake := c.HandshakeTimeout > 0
	c.ConnectTimeout = cmp0(c.ConnectTimeout, DefaultConnectTimeout)
	c.HandshakeTimeout = cmp0(c.HandshakeTimeout, min(DefaultHandshakeTimeout, c.ConnectTimeout))
	if explicitHandshake && c.HandshakeTimeout > c.ConnectTimeout {
		return &OptionError{Option: "HandshakeTimeout", Related: "ConnectTimeout",
			Msg: fmt.Sprintf("%v is longer than ConnectTimeout=%v, which bounds the handshake too", c.HandshakeTimeout, c.ConnectTimeout)}
	}
	if c.MaxPending <= 0 {
		c.MaxPending = DefaultMaxPending(c.MaxConnections)
	}
	if c.MaxConnectBytes == 0 {
		c.MaxConnectBytes = DefaultMaxConnectBytes
	}
	if c.MaxPacketBytes == 0 {
		c.MaxPacketBytes = relay.DefaultMaxPacket
	}
	c.ShutdownGrace = cmp0(c.ShutdownGrace, DefaultShutdownGrace)
	if c.RevalidateInterval == 0 {
		c.RevalidateInterval = DefaultRevalidateInterval
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	return nil
}

// checkSizes checks the caps and counts that have a range.
func (c *Config) checkSizes() error {
	switch {
	case c.MaxConnections < 0:
		return &OptionError{Option: "MaxConnections", Msg: fmt.Sprintf("%d is negative (0 means no cap)", c.MaxConnections)}
	case c.MaxPending < 0 || c.MaxConnections > 0 && c.MaxPending > c.MaxConnections:
		return &OptionError{Option: "MaxPending", Msg: fmt.Sprintf("%d is out of range 0..MaxConnections (0 takes the default)", c.MaxPending)}
	case c.MaxConnectBytes != 0 && (c.MaxConnectBytes < 16 || c.MaxConnectBytes > packets.MaxRemainingLength):
		return &OptionError{Option: "MaxConnectBytes", Msg: fmt.Sprintf("%d is out of range 16..%d", c.MaxConnectBytes, packets.MaxRemainingLength)}
	case c.MaxPacketBytes != 0 && (c.MaxPacketBytes < 64 || c.MaxPacketBytes > packets.MaxRemainingLength+5):
		return &OptionError{Option: "MaxPacketBytes", Msg: fmt.Sprintf("%d is out of range 64..%d", c.MaxPacketBytes, packets.MaxRemainingLength+5)}
	case c.ConnRatePerIP < 0 || c.ConnBurstPerIP < 0:
		return &OptionError{Option: "ConnRatePerIP", Msg: "must not be negative (0 means no limit)"}
	case c.DrainRate < 0:
		return &OptionError{Option: "DrainRate", Msg: "must not be negative (0 spreads the sessions over ShutdownGrace)"}
	}
	return nil
}
