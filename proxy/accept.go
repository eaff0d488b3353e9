package proxy

import (
	"errors"
	"net"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/transport"
)

// Serve accepts connections on l until l is closed or Shutdown is called,
// terminating each with t. It always returns a non-nil error; after
// Shutdown or l.Close it is net.ErrClosed.
func (p *Proxy) Serve(l net.Listener, t transport.Terminator) error {
	if t == nil || t == transport.Terminator((*transport.TLS)(nil)) {
		l.Close()
		return errors.New("proxy: listener without a transport")
	}
	if !p.addListener(l) {
		return net.ErrClosed
	}
	defer p.wg.Done()
	defer p.removeListener(l)
	p.log.Info("listening", "addr", l.Addr().String(), "transport", t.Name())
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
		if pc := p.admit(c); pc != nil {
			p.wg.Add(1)
			p.workers.run(func() { p.handle(c, t, pc) })
		}
	}
}

// admit applies the budgets to an accepted connection, before any TLS
// work: a slot under MaxConnections and a place in the pending set. It
// closes the connection and returns nil when either is full.
func (p *Proxy) admit(c net.Conn) *pendingConn {
	if p.slots != nil {
		select {
		case p.slots <- struct{}{}:
		default:
			// At MAX_CONNECTIONS: close at once, so that the device retries later.
			p.refuseAtAccept(c, OutcomeLimit, "connection refused: MAX_CONNECTIONS reached", "max", cap(p.slots))
			return nil
		}
	}
	pc := p.pending.add(c, time.Now())
	if pc == nil {
		// As many connections as MaxPending are still to send their
		// CONNECT, none of them for long.
		p.releaseSlot()
		p.refuseAtAccept(c, OutcomePendingFull, "connection refused: too many connections still to send their CONNECT (MAX_PENDING)",
			"max", p.cfg.MaxPending)
		return nil
	}
	return pc
}

// refuseAtAccept closes c, counts the outcome and logs it (within the
// log budget for refusals).
func (p *Proxy) refuseAtAccept(c net.Conn, outcome Outcome, msg string, args ...any) {
	p.connected(outcome)
	if p.logLimit.allow(string(outcome)) {
		p.log.Warn(msg, append([]any{"remote", c.RemoteAddr().String()}, args...)...)
	}
	c.Close()
}

func (p *Proxy) releaseSlot() {
	if p.slots != nil {
		<-p.slots
	}
}

// addListener registers l, unless the proxy is shutting down (then l is
// closed); the caller calls p.wg.Done when it stops serving l.
func (p *Proxy) addListener(l net.Listener) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.stop:
		l.Close()
		return false
	default:
	}
	p.listeners[l] = struct{}{}
	p.wg.Add(1)
	return true
}

func (p *Proxy) removeListener(l net.Listener) {
	p.mu.Lock()
	delete(p.listeners, l)
	p.mu.Unlock()
}

// workers run attempts on goroutines that outlive them: a goroutine whose
// stack grew for one connection's handshake and decision (crypto/tls and
// the Redis client call deep) keeps it for the next, instead of each
// connect growing a fresh stack and copying it twice or three times. A
// worker left idle for workerIdle exits, so a burst's workers do not stay.
type workers struct {
	jobs chan func() // unbuffered: a send succeeds only into an idle worker
}

// workerIdle is how long a worker waits for another attempt before it exits.
const workerIdle = 5 * time.Second

func newWorkers() *workers { return &workers{jobs: make(chan func())} }

// run runs f on an idle worker, or on a new one when none is idle.
func (w *workers) run(f func()) {
	select {
	case w.jobs <- f:
	default:
		go w.work(f)
	}
}

func (w *workers) work(f func()) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		f()
		idle.Reset(workerIdle)
		select {
		case f = <-w.jobs:
		case <-idle.C:
			return
		}
	}
}

// pendingMinAge is how long a connection must have been pending before a
// new one may take its place in a full pending set.
const pendingMinAge = time.Second
