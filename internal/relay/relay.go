// Package relay pumps the bytes of an authenticated MQTT session between
// the device's connection and its broker connection, runs the session's
// filters (relay.Chain) on the packets of a session that has any, and
// writes packets of the proxy's own (acknowledgements of what a filter
// withheld, a final DISCONNECT) into the device's stream at packet
// boundaries, never inside a broker packet.
//
// On linux/amd64 and linux/arm64 an Engine parks idle directions in one
// epoll set, so that an idle session holds no goroutine, no stack and no
// buffer, and sockets wrapped by WrapSocket read and write with raw system
// calls; elsewhere each direction keeps a goroutine and a blocking read.
// Correctness never depends on the fast path: an Endpoint says what its
// connection may hold in user space (its Kind), and the engine uses the
// readiness of the socket only where that tells the whole truth.
package relay

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// Kind says what a connection may hold in user space, where the readiness
// of its socket does not announce it.
type Kind int

const (
	// Socket is a plain socket: every byte is in the kernel.
	Socket Kind = iota
	// Drainable may hold bytes of its own (crypto/tls's decrypted
	// records); a Read with a passed deadline returns them without touching
	// the socket, and fails with a timeout, harmlessly, when there are none.
	Drainable
	// Opaque may hold bytes and cannot be read without blocking (a
	// WebSocket message reader): each direction keeps a goroutine in a
	// blocking Read.
	Opaque
)

// Endpoint is one side of a session.
type Endpoint struct {
	Conn net.Conn // what carries the MQTT bytes
	Raw  net.Conn // the socket under Conn (Conn itself for a plain socket)
	Kind Kind
}

// Counter counts relayed bytes (a prometheus.Counter is one).
type Counter interface{ Add(float64) }

// Engine runs sessions. Create it with NewEngine, stop it with Close once
// its sessions have ended.
type Engine struct {
	reactor *reactor // nil without the fast path
	parked  atomic.Int64
}

// NewEngine returns an engine; on the fast path it starts the epoll loop.
func NewEngine() *Engine {
	r, err := newReactor()
	if err != nil {
		r = nil
	}
	return &Engine{reactor: r}
}

// Close stops the engine's epoll loop. Parked directions of sessions still
// open are no longer woken: close the sessions first.
func (e *Engine) Close() {
	if e.reactor != nil {
		e.reactor.close()
	}
}

// TakeParked returns the number of directions parked since the last call
// and resets it: their goroutines' stacks were freed, and the caller may
// decide when that is worth returning memory to the operating system.
func (e *Engine) TakeParked() int64 { return e.parked.Swap(0) }

// WrapSocket returns c with raw system-call reads and writes on the fast
// path (c itself elsewhere, or when c is not a TCP connection). Wrap every
// socket a session will use, at accept and at dial.
func WrapSocket(c net.Conn) net.Conn { return newRawIO(c) }

// Config describes a session.
type Config struct {
	Client, Broker Endpoint
	// Early are broker bytes already read behind its CONNACK; they reach
	// the client first.
	Early []byte
	// WriteTimeout bounds each write to either side; 0 means none.
	WriteTimeout time.Duration
	Up, Down     Counter // bytes device to broker, broker to device
	// OnEnd is called once, when the session has ended and both
	// connections are closed.
	OnEnd func()
	// Filter, when set, frames both directions and judges the client's
	// packets (topic rules); nil relays the bytes opaquely, the fast path.
	Filter Filter
	// MaxPacket caps a packet the filter sees whole; default
	// DefaultMaxPacket.
	MaxPacket int
	// End, when set, is how the session ends when its filter asks (the
	// session's owner counts and records it): it must end the session,
	// with EndWith(final, ...). nil: EndWith(final, a second's grace).
	End func(final []byte, cause string)
}

// DefaultMaxPacket is Config.MaxPacket's default.
const DefaultMaxPacket = 1 << 20

// endGrace bounds how long a session a filter ended waits for a boundary
// of the client's stream to write its last packet.
const endGrace = time.Second

// Session is one relayed session. Its methods are safe for concurrent use.
type Session struct {
	e        *Engine
	cfg      Config
	up, down direction

	// bmu serializes writes to the broker of a filtered session, whose
	// two directions both write to it (whole packets each).
	bmu sync.Mutex

	mu sync.Mutex // guards everything below
	// cond is signalled when a write to the client ends, for a writer
	// waiting its turn.
	cond    sync.Cond
	state   state
	writing bool            // a write to the client is in progress (outside mu)
	acked   bool            // the first packet has been written
	sc      packets.Scanner // the boundaries of what the client was sent unframed
	mid     bool            // the client's stream is inside a packet
	inject  [][]byte        // packets to write at the client stream's next boundary
	final   bool            // the last of inject ends the session
	watches []*watch
	// clientDone: reading from the client failed (it closed, sent
	// close_notify or reset), so no close_notify is sent to it.
	clientDone bool
	clientWDL  time.Time // the client's write deadline as last set
}

type state int

const (
	relaying state = iota
	ending         // a final packet is waiting for a boundary
	ended          // the final packet was written: nothing more goes to the client
	closed
)

// direction is one way of a session: from src to deliver.
type direction struct {
	src     Endpoint
	deliver func([]byte) error // what was read goes on: written, or framed and judged
	framer  *framer            // with a filter
	out     batch              // with a filter: what a chunk sends on
	counter Counter
	rc      syscall.RawConn // of src.Raw, for readiness; nil: no readiness waits
	watch   *watch          // once parked in the reactor
	wdl     time.Time       // the destination's write deadline as last set (broker side)
	small   []byte          // a blocking reader's buffer while the direction is quiet
	hot     bool            // the last blocking read filled small: data is flowing
	// drainFirst: the source may hold bytes in user space already (a
	// Drainable one at Start): run moves them before it waits.
	drainFirst bool
	pause      *pauseState // a filter's wait (pause.go); nil until the first
}

// NewSession prepares a session; WriteFirst writes the CONNACK, Start
// starts the relay.
func (e *Engine) NewSession(cfg Config) *Session {
	s := &Session{e: e, cfg: cfg}
	s.cond.L = &s.mu
	s.up = direction{src: cfg.Client, deliver: s.writeBroker, counter: cfg.Up}
	s.down = direction{src: cfg.Broker, deliver: s.writeClient, counter: cfg.Down}
	if cfg.Filter != nil {
		max := cfg.MaxPacket
		if max <= 0 {
			max = DefaultMaxPacket
		}
		s.up.framer = &framer{max: max, want: func(packets.Type) Want { return WantWhole }}
		s.down.framer = &framer{max: max, want: cfg.Filter.WantsDown}
		s.up.deliver, s.down.deliver = s.deliverUp, s.deliverDown
	}
	if e.reactor != nil {
		for _, d := range []*direction{&s.up, &s.down} {
			if d.src.Kind != Opaque {
				d.rc = rawConnOf(d.src.Raw)
			}
		}
	}
	return s
}

// ErrEnded is returned by writes once the session has ended from the
// proxy's side.
var ErrEnded = errors.New("relay: session ended")

// WriteFirst writes pkt (the broker's CONNACK) to the client before the
// relay starts. When the session was ended before, the final packet
// follows it at once and ErrEnded is returned.
func (s *Session) WriteFirst(pkt []byte) error {
	s.mu.Lock()
	s.acked = true
	return s.writeClientLocked(pkt, len(pkt), true)
}

// Start relays both directions, each on its own goroutine while it is
// active. A direction idle for idleAfter is parked in the reactor on the
// fast path: the reactor starts a goroutine again when data arrives.
func (s *Session) Start() {
	if len(s.cfg.Early) > 0 {
		s.cfg.Down.Add(float64(len(s.cfg.Early)))
		if s.down.deliver(s.cfg.Early) != nil {
			s.Close()
			return
		}
		s.cfg.Early = nil
	}
	// Bytes that came with the CONNECT (or, from a TLS broker, behind its
	// CONNACK) may already sit in user space, where no readiness signal
	// will announce them: each direction moves them first.
	for _, d := range []*direction{&s.up, &s.down} {
		d.drainFirst = d.src.Kind == Drainable && d.rc != nil
	}
	go s.run(&s.up)
	go s.run(&s.down)
}

// Inject writes pkt, a whole packet, into the client's stream at the next
// packet boundary: at once if the stream is at one and no write is in
// progress, else right behind the write that reaches one. It never waits
// for a write.
func (s *Session) Inject(pkt []byte) error {
	s.mu.Lock()
	if s.state != relaying {
		s.mu.Unlock()
		return ErrEnded
	}
	s.inject = append(s.inject, pkt)
	return s.flushLocked()
}

// EndWith ends the session from the proxy's side: final (a DISCONNECT;
// nil for none) is written at the client stream's next boundary, then both
// connections are closed; when no boundary comes within grace, they are
// closed without it. It reports whether this call ended the session (only
// the first does).
func (s *Session) EndWith(final []byte, grace time.Duration) bool {
	s.mu.Lock()
	if s.state != relaying {
		s.mu.Unlock()
		return false
	}
	if final == nil {
		s.state = ending
		s.mu.Unlock()
		s.Close()
		return true
	}
	s.state, s.final = ending, true
	s.inject = append(s.inject, final)
	if !s.acked {
		// WriteFirst delivers it right behind the CONNACK.
		s.mu.Unlock()
		return true
	}
	if err := s.flushLocked(); errors.Is(err, ErrEnded) {
		s.Close()
		return true
	}
	time.AfterFunc(grace, s.Close)
	return true
}

// flushLocked writes the injected packets now if the client's stream is at
// a boundary and nobody is writing; otherwise the writer in progress (or
// the next one at a boundary) does. It unlocks s.mu.
func (s *Session) flushLocked() error {
	if !s.acked || s.writing || s.mid || len(s.inject) == 0 {
		s.mu.Unlock()
		return nil
	}
	return s.writeClientLocked(nil, 0, true)
}

// Ended reports whether the session has been ended, from either side.
func (s *Session) Ended() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state != relaying
}

// Close ends the session at once: it unregisters the sockets from the
// reactor, closes both connections and calls OnEnd, once.
func (s *Session) Close() {
	s.mu.Lock()
	if s.state == closed {
		s.mu.Unlock()
		return
	}
	s.state = closed
	watches, clientDone := s.watches, s.clientDone
	s.watches = nil
	s.up.stopWait()
	s.cond.Broadcast()
	s.mu.Unlock()
	for _, w := range watches {
		s.e.reactor.remove(w)
	}
	if clientDone {
		_ = s.cfg.Client.Raw.Close()
	} else {
		CloseConn(s.cfg.Client.Conn)
	}
	_ = s.cfg.Broker.Conn.Close()
	if s.cfg.OnEnd != nil {
		s.cfg.OnEnd()
	}
}

// CloseConn closes conn; a TLS connection first sends close_notify,
// bounded by a short write deadline so that a client that does not read
// cannot hold it.
func CloseConn(conn net.Conn) {
	_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
	_ = conn.Close()
}

func (s *Session) writeBroker(p []byte) error {
	refreshWriteDeadline(s.cfg.Broker.Conn, &s.up.wdl, s.cfg.WriteTimeout)
	_, err := s.cfg.Broker.Conn.Write(p)
	return err
}

// writeBrokerSegs writes whole packets to the broker, from either
// direction of a filtered session: the client's packets, and the proxy's
// answers to the broker's (both directions write whole packets, so taking
// turns under bmu never splits one).
func (s *Session) writeBrokerSegs(segs [][]byte) error {
	if len(segs) == 0 {
		return nil
	}
	if buf, _, ok := gather(segs, nil); ok { // gather.go: one write
		defer release(buf)
		segs = [][]byte{*buf}
	}
	s.bmu.Lock()
	defer s.bmu.Unlock()
	for _, seg := range segs {
		if err := s.writeBroker(seg); err != nil {
			return err
		}
	}
	return nil
}

// writeClient forwards broker bytes of an unfiltered session to the
// client; a Scanner finds their packet boundaries.
func (s *Session) writeClient(p []byte) error { return s.forward(p, -1) }

// forward writes p, broker bytes, to the client; packets waiting for
// injection go in at the last boundary in p. boundary is where in p the
// last packet that ends in p ends (0: none does), as the framer of a
// filtered session knows it, or -1 for the Scanner to find it.
func (s *Session) forward(p []byte, boundary int) error {
	s.mu.Lock()
	for s.writing && s.state < ended {
		s.cond.Wait()
	}
	if s.state >= ended {
		s.mu.Unlock()
		return ErrEnded
	}
	if boundary < 0 {
		var err error
		if boundary, err = s.sc.Feed(p); err != nil {
			s.mu.Unlock()
			return err // the broker sent something that is not MQTT
		}
	}
	if len(p) > 0 {
		s.mid = boundary != len(p)
	}
	if len(s.inject) == 0 || boundary == 0 {
		return s.writeClientLocked(p, len(p), false)
	}
	return s.writeClientLocked(p, boundary, true)
}

// writeClientLocked writes p[:at], then, when boundary says p[:at] ends
// on a packet boundary, the injected packets, then, unless one of them was
// final, p[at:]. It is called with s.mu held, by the one writer, and
// unlocks it; the write itself runs outside the lock. After a write,
// packets injected meanwhile are written if the stream is at a boundary.
func (s *Session) writeClientLocked(p []byte, at int, boundary bool) error {
	for {
		var bufs net.Buffers
		if at > 0 {
			bufs = append(bufs, p[:at])
		}
		final := false
		if s.acked && boundary && len(s.inject) > 0 {
			final = s.final && s.state == ending
			bufs = append(bufs, s.inject...)
			s.inject = nil
		}
		if !final && at < len(p) {
			bufs = append(bufs, p[at:])
		}
		if final {
			s.state = ended
		}
		s.writing = true
		s.mu.Unlock()

		var err error
		if final {
			_ = s.cfg.Client.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		} else {
			refreshWriteDeadline(s.cfg.Client.Conn, &s.clientWDL, s.cfg.WriteTimeout)
		}
		for _, b := range bufs {
			if _, err = s.cfg.Client.Conn.Write(b); err != nil {
				break
			}
		}

		s.mu.Lock()
		s.writing = false
		s.cond.Broadcast()
		switch {
		case final:
			s.mu.Unlock()
			return ErrEnded
		case err != nil:
			s.mu.Unlock()
			return err
		case len(s.inject) > 0 && !s.mid && s.state < ended:
			p, at, boundary = nil, 0, true // injected while we wrote: write them now
			continue
		}
		s.mu.Unlock()
		return nil
	}
}

// refreshWriteDeadline sets c's write deadline to timeout from now when
// less than half of it is left, so that a steady stream of writes costs a
// clock read each, not a timer update each.
func refreshWriteDeadline(c net.Conn, dl *time.Time, timeout time.Duration) {
	if timeout <= 0 {
		return
	}
	now := time.Now()
	if dl.Sub(now) < timeout/2 {
		*dl = now.Add(timeout)
		_ = c.SetWriteDeadline(*dl)
	}
}
