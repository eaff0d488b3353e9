// Package proxy terminates TLS for MQTT devices, authenticates every CONNECT
// against an authstore.Authenticator, and only then dials the broker afresh
// and relays the session. Nothing a client sends before it is authenticated
// reaches the broker, not even a TCP connection.
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// Config configures a Proxy. Zero durations and sizes take the defaults
// documented on each field.
type Config struct {
	Listen      string     // TLS listener address, e.g. ":8883"
	TLS         *TLSConfig // required when Listen is set
	PlainListen string     // optional listener without TLS, for trusted networks

	Backend Backend
	Auth    authstore.Authenticator

	ConnectTimeout time.Duration // accept to complete CONNECT, handshake included; default 10s
	// HandshakeTimeout bounds the TLS handshake, within ConnectTimeout;
	// default 5s.
	HandshakeTimeout time.Duration
	MaxConnectBytes  int // cap on the first packet; default 65536
	MaxConnections   int // concurrent client connections; 0: no cap
	// MaxPending bounds the connections that have not yet delivered their
	// CONNECT; when full, a new one replaces the oldest if that has waited
	// a second or more, else it is closed before any TLS work. Default:
	// MaxConnections/4 (at least 16) when MaxConnections is set, else 1024.
	MaxPending    int
	ShutdownGrace time.Duration // how long Shutdown lets connections finish; default 10s
	// RevalidateInterval is how often every live connection is decided
	// again (spread evenly over the interval), the safety net for a missed
	// change notification; default 60s, negative turns it off.
	RevalidateInterval time.Duration

	Logger  *slog.Logger
	Metrics *Metrics // nil: a private, unregistered set
}

// Backend is how the proxy reaches the broker.
type Backend struct {
	Addr        string        // host:port
	TLS         *tls.Config   // nil: plain TCP
	Username    string        // empty: keep the device's user name
	Password    string        // empty: send no password; the device's is never sent
	DialTimeout time.Duration // dial plus the broker's CONNACK; default 5s
}

// Proxy serves MQTT clients. Create it with New, run it with Serve or
// ServeListener, stop it with Shutdown.
type Proxy struct {
	cfg     Config
	log     *slog.Logger
	metrics *Metrics
	tls     *tlsServer
	slots   chan struct{} // nil when MaxConnections is 0
	pending *pendingSet   // connections that have not yet sent their CONNECT
	dialer  net.Dialer
	// logLimit summarises refused connections at info level.
	logLimit *logLimiter

	ctx    context.Context // cancelled by Shutdown: aborts handshakes and CONNECTs in progress
	cancel context.CancelFunc
	stop   chan struct{} // closed by Shutdown
	once   sync.Once

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	byUser    map[string]map[*session]struct{} // live sessions by username, for revocation
	wg        sync.WaitGroup                   // every connection goroutine

	// changes counts change notifications; a session decided before a
	// notification and registered after it is decided again at once.
	changes atomic.Uint64
}

// New validates cfg and loads the certificates.
func New(cfg Config) (*Proxy, error) {
	if cfg.Auth == nil {
		return nil, errors.New("proxy: no authenticator")
	}
	if cfg.Backend.Addr == "" {
		return nil, errors.New("proxy: no backend address")
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 5 * time.Second
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 1024
		if cfg.MaxConnections > 0 {
			cfg.MaxPending = min(max(cfg.MaxConnections/4, 16), cfg.MaxConnections)
		}
	}
	if cfg.MaxConnectBytes <= 0 {
		cfg.MaxConnectBytes = 65536
	}
	if cfg.Backend.DialTimeout <= 0 {
		cfg.Backend.DialTimeout = 5 * time.Second
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 10 * time.Second
	}
	if cfg.RevalidateInterval == 0 {
		cfg.RevalidateInterval = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	p := &Proxy{cfg: cfg, log: cfg.Logger, metrics: cfg.Metrics, stop: make(chan struct{}), dialer: net.Dialer{KeepAlive: -1},
		listeners: map[net.Listener]struct{}{}, sessions: map[*session]struct{}{}, byUser: map[string]map[*session]struct{}{}}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.pending = newPendingSet(cfg.MaxPending, pendingMinAge)
	p.logLimit = newLogLimiter(time.Now)
	go p.logLimit.summarise(p.log, p.stop)
	if cfg.MaxConnections > 0 {
		p.slots = make(chan struct{}, cfg.MaxConnections)
	}
	if cfg.TLS == nil && cfg.Listen != "" {
		return nil, errors.New("proxy: TLS listener without TLS configuration")
	}
	if cfg.TLS != nil {
		t, err := newTLSServer(*cfg.TLS, p.log)
		if err != nil {
			return nil, fmt.Errorf("proxy: TLS: %w", err)
		}
		p.tls = t
		go t.run(p.stop)
	}
	if cfg.RevalidateInterval > 0 {
		go p.sweep()
	}
	go p.trimMemory()
	return p, nil
}

// ReloadCertificates re-reads the TLS certificate, key and client CA files
// (for SIGHUP). Connections in progress are not affected.
func (p *Proxy) ReloadCertificates() error {
	if p.tls == nil {
		return nil
	}
	return p.tls.Reload()
}

// ListenAndServe opens the configured listeners and serves until Shutdown.
// It returns once the listeners are open and serving; errors opening them are
// returned at once. Addrs reports the bound addresses.
func (p *Proxy) ListenAndServe() error {
	type ln struct {
		addr string
		tls  bool
	}
	var want []ln
	if p.cfg.Listen != "" {
		want = append(want, ln{p.cfg.Listen, true})
	}
	if p.cfg.PlainListen != "" {
		want = append(want, ln{p.cfg.PlainListen, false})
	}
	if len(want) == 0 {
		return errors.New("proxy: no listener configured")
	}
	var opened []net.Listener
	for _, w := range want {
		// No TCP keepalive: MQTT has its own, which the broker enforces on
		// the relayed session; the proxy closes the device's side with it.
		l, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", w.addr)
		if err != nil {
			for _, o := range opened {
				o.Close()
			}
			return fmt.Errorf("proxy: listen %s: %w", w.addr, err)
		}
		opened = append(opened, l)
	}
	for i, l := range opened {
		go func() { _ = p.Serve(l, want[i].tls) }()
	}
	return nil
}

// Serve accepts connections on l until l is closed or Shutdown is called.
// withTLS selects TLS termination (the proxy must have a TLS config).
func (p *Proxy) Serve(l net.Listener, withTLS bool) error {
	if withTLS && p.tls == nil {
		return errors.New("proxy: TLS listener without TLS configuration")
	}
	p.mu.Lock()
	select {
	case <-p.stop:
		p.mu.Unlock()
		l.Close()
		return net.ErrClosed
	default:
	}
	p.listeners[l] = struct{}{}
	p.wg.Add(1)
	p.mu.Unlock()
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.listeners, l)
		p.mu.Unlock()
	}()
	p.log.Info("listening", "addr", l.Addr().String(), "tls", withTLS)

	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return net.ErrClosed
			}
			// Temporary errors (EMFILE, ECONNABORTED...): back off 5ms doubling to 1s.
			backoff = min(max(backoff*2, 5*time.Millisecond), time.Second)
			p.log.Warn("accept failed; backing off", "error", err, "backoff", backoff)
			select {
			case <-time.After(backoff):
			case <-p.stop:
				return net.ErrClosed
			}
			continue
		}
		backoff = 0
		if p.slots != nil {
			select {
			case p.slots <- struct{}{}:
			default:
				// At MAX_CONNECTIONS: close at once, before any TLS work,
				// so that the device retries later.
				p.metrics.Connects.WithLabelValues(outcomeLimit).Inc()
				p.log.Warn("connection refused: MAX_CONNECTIONS reached", "remote", c.RemoteAddr().String(), "max", cap(p.slots))
				c.Close()
				continue
			}
		}
		pc := p.pending.add(c, time.Now())
		if pc == nil {
			// As many connections as MaxPending are still to send their
			// CONNECT, none of them for long: close before any TLS work.
			p.metrics.Connects.WithLabelValues(outcomePendingFull).Inc()
			if p.logLimit.allow(outcomePendingFull) {
				p.log.Warn("connection refused: too many connections still to send their CONNECT (MAX_PENDING)",
					"remote", c.RemoteAddr().String(), "max", p.cfg.MaxPending)
			}
			c.Close()
			if p.slots != nil {
				<-p.slots
			}
			continue
		}
		p.wg.Add(1)
		go p.handle(c, withTLS, pc)
	}
}

// pendingMinAge is how long a connection must have been pending before a
// new one may take its place in a full pending set.
const pendingMinAge = time.Second

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

// Shutdown stops accepting, lets relayed sessions run for the grace period
// (or until ctx ends), then closes the rest, sending MQTT 5 clients a
// DISCONNECT with reason 0x8B (server shutting down) at a packet boundary.
// Connections still authenticating are closed at once.
func (p *Proxy) Shutdown(ctx context.Context) {
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
	select {
	case <-done:
		return
	case <-grace.C:
	case <-ctx.Done():
	}
	p.mu.Lock()
	for s := range p.sessions {
		go s.kick(packets.ServerShuttingDown, "shutdown")
	}
	p.mu.Unlock()
	<-done
}

// Sessions is the number of relayed sessions open now.
func (p *Proxy) Sessions() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sessions)
}

// addSession registers s, unless the proxy is shutting down; from then on
// s.close must be called exactly once (it is idempotent).
func (p *Proxy) addSession(s *session) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.stop:
		return false
	default:
	}
	p.sessions[s] = struct{}{}
	p.wg.Add(1) // until the session closes
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
	if u := p.byUser[s.req.Username]; u != nil {
		delete(u, s)
		if len(u) == 0 {
			delete(p.byUser, s.req.Username)
		}
	}
	p.mu.Unlock()
	s.stopTimers()
}
