// Package proxy authenticates every MQTT CONNECT that reaches it over a
// terminated transport (TLS, or TCP on a trusted network) against a
// policy.Authenticator, and only then dials the broker afresh and relays the
// session. Nothing a client sends before it is authenticated reaches the
// broker, not even a TCP connection. Live sessions are decided again when a
// rule changes (Follow), and closed when they are no longer allowed.
//
// A connection's life, file by file: accept.go admits it (connection and
// pending budgets), attempt.go takes it step by step from the transport's
// handshake to the start of its relay (backend.go dials the broker),
// outcome.go logs and counts how each attempt ended, session.go is the
// relayed session, and revoke.go decides live sessions again.
package proxy

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/relay"
)

// Proxy serves MQTT clients. Create it with New, hand it listeners with
// Serve (each with the transport its connections are terminated with,
// which the caller builds and owns: TLS, plain TCP, PROXY protocol,
// WebSocket), stop it with Shutdown.
type Proxy struct {
	cfg      Config
	log      *slog.Logger
	metrics  *Metrics
	engine   *relay.Engine
	slots    chan struct{}           // nil when MaxConnections is 0
	pending  *pendingSet             // connections that have not yet sent their CONNECT
	connRate *rateLimiter            // nil without a per-address rate
	ipBans   atomic.Pointer[[]IPBan] // the IP bans held
	logLimit *logLimiter             // summarises refused connections at info level
	aclLog   *logLimiter             // and topic denials
	refusals refusalLog              // connections refused before CONNECT, for the decision log
	counts   counts                  // what Stats reports
	workers  *workers                // the goroutines attempts run on
	// localSessions counts sessions per user for max_sessions when
	// Config.Sessions is nil (quota.go).
	localSessions localSessions

	ctx    context.Context // cancelled by Shutdown: aborts handshakes and CONNECTs in progress
	cancel context.CancelFunc
	stop   chan struct{} // closed by Shutdown
	once   sync.Once

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	// version counts the changes of the live sessions as SessionsVersion
	// reports them: one started or ended, or one's old-password state.
	version atomic.Uint64
	byUser  map[string]map[*session]struct{} // live sessions by username, for revocation
	wg      sync.WaitGroup                   // every connection goroutine and session

	// changes counts change notifications; a session decided before a
	// notification and registered after it is decided again at once.
	changes atomic.Uint64
	// lastChange is when the last change notification came (unix ns).
	lastChange atomic.Int64
}

// LastChange is when the last change notification came; zero if none has.
func (p *Proxy) LastChange() time.Time {
	if n := p.lastChange.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// New provisions cfg (its defaults and validation) and returns a proxy
// ready to Serve.
func New(cfg Config) (*Proxy, error) {
	switch {
	case cfg.Auth == nil:
		return nil, &OptionError{Option: "Auth", Msg: "no authenticator"}
	case cfg.Brokers == nil:
		return nil, &OptionError{Option: "Brokers", Msg: "no brokers"}
	}
	if b, ok := cfg.Brokers.(Backend); ok && b.Addr == "" {
		return nil, &OptionError{Option: "Brokers", Msg: "a Backend without an address"}
	}
	if err := cfg.Provision(); err != nil {
		return nil, err
	}
	p := &Proxy{cfg: cfg, log: cfg.Logger, metrics: cfg.Metrics, stop: make(chan struct{}),
		listeners: map[net.Listener]struct{}{}, sessions: map[*session]struct{}{}, byUser: map[string]map[*session]struct{}{}}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	if cfg.MaxConnections > 0 {
		p.slots = make(chan struct{}, cfg.MaxConnections)
	}
	p.pending = newPendingSet(cfg.MaxPending, pendingMinAge)
	p.ipBans.Store(&[]IPBan{})
	if cfg.ConnRatePerIP > 0 {
		p.connRate = newRateLimiter(cfg.ConnRatePerIP, max(cfg.ConnBurstPerIP, 1))
	}
	p.engine = relay.NewEngine()
	p.workers = newWorkers()
	p.logLimit = newLogLimiter("refused connections not logged one by one (LOG_LEVEL=debug shows each)", time.Now)
	p.aclLog = newLogLimiter("topic denials not logged one by one (LOG_LEVEL=debug shows each)", time.Now)
	go p.logLimit.summarise(p.log, p.stop)
	go p.aclLog.summarise(p.log, p.stop)
	if cfg.RevalidateInterval > 0 {
		go p.sweep()
	}
	go p.summariseDenials()
	if cfg.IPBans != nil {
		p.loadIPBans() // before the first connection is accepted
		go p.followIPBans()
	}
	return p, nil
}

// TakeParked returns how many relay directions went idle and gave up their
// goroutine since the last call (see relay.Engine.TakeParked).
func (p *Proxy) TakeParked() int64 { return p.engine.TakeParked() }

// Addrs returns the addresses of the open listeners.
func (p *Proxy) Addrs() []net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []net.Addr
	for l := range p.listeners {
		out = append(out, l.Addr())
	}
	return out
}

// Shutdown stops accepting (every Serve returns net.ErrClosed) and drains
// the relayed sessions: it ends them one at a time, evenly spaced, at
// DrainRate a second or spread over the grace period (drain.go), until
// the grace (or ctx) ends, then ends the rest at once. MQTT 5 clients get
// a DISCONNECT at a packet boundary: 0x9C (use another server) with
// DrainServerReference when it is set, else 0x8B (server shutting down).
// Connections still authenticating are closed at once. It returns when every connection is
// closed: nil when they all ended within the grace, ctx.Err() when ctx
// ended first. The transports handed to Serve are the caller's to close.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.once.Do(func() {
		p.mu.Lock()
		close(p.stop)
		for l := range p.listeners {
			l.Close()
		}
		p.mu.Unlock()
		p.cancel()
	})
	grace := time.NewTimer(p.cfg.ShutdownGrace)
	defer grace.Stop()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	final := p.drainFinal()
	stopDrain := p.drain(p.cfg.ShutdownGrace, final)
	var err error
	select {
	case <-done:
	case <-grace.C:
	case <-ctx.Done():
		err = ctx.Err()
	}
	stopDrain()
	for _, s := range p.allSessions() {
		go s.endFinal(final, "shutdown")
	}
	<-done
	p.flushRefusals()
	p.engine.Close()
	return err
}

// Sessions is the number of relayed sessions open now.
func (p *Proxy) Sessions() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sessions)
}

// addSession registers s, unless the proxy is shutting down; from then on
// the session's end (its relay's OnEnd) unregisters it.
// SessionsVersion changes whenever a session starts or ends, or a
// session's use of a rotation's old password changes: a reader of
// Snapshot's identities (not its byte counts) that saw a version has
// nothing new to read while it stays.
func (p *Proxy) SessionsVersion() uint64 { return p.version.Load() }

func (p *Proxy) addSession(s *session) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.stop:
		return false
	default:
	}
	p.sessions[s] = struct{}{}
	p.version.Add(1)
	p.wg.Add(1) // until the session ends
	u := p.byUser[s.req.Username]
	if u == nil {
		u = map[*session]struct{}{}
		p.byUser[s.req.Username] = u
	}
	u[s] = struct{}{}
	return true
}

func (p *Proxy) removeSession(s *session) {
	p.mu.Lock()
	delete(p.sessions, s)
	p.version.Add(1)
	if u := p.byUser[s.req.Username]; u != nil {
		delete(u, s)
		if len(u) == 0 {
			delete(p.byUser, s.req.Username)
		}
	}
	p.mu.Unlock()
}
