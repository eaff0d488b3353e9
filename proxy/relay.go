package proxy

import (
	"crypto/tls"
	"errors"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// relayBufSize is the relay buffer: several TLS records, so that what a
// device sent in one burst goes to the broker in one write.
const relayBufSize = 64 << 10

// maxRecord is the largest TLS record's plaintext: a Read into at least this
// much returns a whole record.
const maxRecord = 16 << 10

// bufPool holds relay buffers. A buffer is taken only once a socket is
// readable and given back after the write, so an idle connection holds no
// relay buffer at all.
var bufPool = sync.Pool{New: func() any { b := make([]byte, relayBufSize); return &b }}

// kickGrace bounds how long a kick waits for a packet boundary before it
// closes without DISCONNECT.
const kickGrace = time.Second

// pastDeadline makes a read take only what crypto/tls already holds: a
// tls.Conn read with an expired deadline fails as soon as it would need the
// socket (and such a timeout is not sticky on its read side).
var pastDeadline = time.Unix(1, 0)

// session is one authenticated client relayed to its own broker connection.
type session struct {
	p         *Proxy
	client    net.Conn // *tls.Conn or the TCP connection
	clientRaw net.Conn // the TCP connection under client
	backend   net.Conn

	up, down direction
	early    []byte // broker bytes read behind its CONNACK, sent first

	// wmu serialises writes to the client, so that a DISCONNECT the proxy
	// injects lands between two of the broker's packets, never inside one.
	wmu   sync.Mutex
	acked bool // the CONNACK has been written (under wmu)
	ended bool // the DISCONNECT has been written: nothing more goes to the client (under wmu)
	sc    packets.Scanner
	// kickState is 0 until the session is kicked, then kickedFlag | the
	// DISCONNECT's reason code: the first kick's code, never overwritten.
	kickState atomic.Uint32

	// writeTimeout bounds each write to either side: a device that stops
	// reading (or a broker that does) cannot pin the session; wdl is the
	// deadline last set on each side (refreshed when half of it is used).
	writeTimeout       time.Duration
	clientWDL, backWDL time.Time

	closeOnce sync.Once
	closed    atomic.Bool
	// clientDone is set when reading from the client failed (it closed,
	// sent close_notify or reset): close then skips the close_notify, which
	// nobody would read.
	clientDone atomic.Bool
	watchMu    sync.Mutex // held while registering, and by close before the sockets close
	reactor    *reactor
	watches    []*watch

	// req is the CONNECT's authentication request, kept to decide the
	// connection again on a rule change (it holds the password in memory;
	// with the remembered verification, a re-decision costs no hash).
	req        authstore.Request
	timerMu    sync.Mutex
	notAfter   *time.Timer
	retry      *time.Timer   // a re-decision after one that failed for want of the store
	retryDelay time.Duration // its backoff
}

// kickedFlag marks kickState as set.
const kickedFlag = 0x100

// kicked reports whether the session has been kicked.
func (s *session) kicked() bool { return s.kickState.Load() != 0 }

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

// refreshWriteDeadline sets c's write deadline to writeTimeout from now
// when less than half of it is left, so that a steady stream of writes
// costs a clock read each, not a timer update each.
func (s *session) refreshWriteDeadline(c net.Conn, dl *time.Time) {
	now := time.Now()
	if dl.Sub(now) < s.writeTimeout/2 {
		*dl = now.Add(s.writeTimeout)
		_ = c.SetWriteDeadline(*dl)
	}
}

// direction is one way of a session: from src to write.
type direction struct {
	src, srcRaw net.Conn
	isTLS       bool
	write       func([]byte) error
	counter     interface{ Add(float64) }
	rc          syscall.RawConn // of srcRaw, for readiness
	watch       *watch          // once parked in the reactor
}

func newSession(p *Proxy, client, clientRaw, backend net.Conn, req authstore.Request, keepAlive uint16) *session {
	var early []byte
	if pc, ok := backend.(*prefixConn); ok {
		backend, early = pc.Conn, pc.prefix
	}
	s := &session{p: p, client: client, clientRaw: clientRaw, backend: backend, early: early,
		req: req, writeTimeout: writeTimeoutFor(keepAlive)}
	_, clientTLS := client.(*tls.Conn)
	_, backendTLS := backend.(*tls.Conn)
	s.up = direction{src: client, srcRaw: clientRaw, isTLS: clientTLS, write: s.writeBackend, counter: p.metrics.bytesUp}
	s.down = direction{src: backend, srcRaw: rawOf(backend), isTLS: backendTLS, write: s.writeClient, counter: p.metrics.bytesDown}
	s.up.rc, s.down.rc = rawConnOf(s.up.srcRaw), rawConnOf(s.down.srcRaw)
	return s
}

// idleAfter is how long a direction goes without data before its goroutine
// exits and the reactor watches the socket instead.
const idleAfter = 2 * time.Second

// start relays both directions, each on its own goroutine while it is
// active. A direction idle for idleAfter is parked in the reactor (Linux):
// an idle session then has no goroutine, no stack and no buffer, only its
// structs; the reactor starts a goroutine again when data arrives.
func (s *session) start() {
	if len(s.early) > 0 {
		s.down.counter.Add(float64(len(s.early)))
		if s.writeClient(s.early) != nil {
			s.close()
			return
		}
		s.early = nil
	}
	// Bytes that came with the CONNECT (or, from a TLS broker, behind its
	// CONNACK) may already sit inside crypto/tls, where no readiness signal
	// will announce them: move them first.
	for _, d := range []*direction{&s.up, &s.down} {
		if !d.isTLS {
			continue // a plain socket holds nothing in user space
		}
		if ok, _ := s.transfer(d, false, 0); !ok {
			return
		}
	}
	s.reactor = sharedReactor()
	go s.run(&s.up)
	go s.run(&s.down)
}

// run relays d while data flows; it returns when the session ends or when
// d has been parked in the reactor.
func (s *session) run(d *direction) {
	park := s.reactor != nil && d.rc != nil
	for {
		if park {
			_ = d.srcRaw.SetReadDeadline(time.Now().Add(idleAfter))
		}
		var err error
		if d.rc != nil {
			err = waitReadable(d.rc)
		}
		if park {
			_ = d.srcRaw.SetReadDeadline(time.Time{})
		}
		if err != nil {
			if park && isTimeout(err) && s.park(d) {
				return
			}
			if !isTimeout(err) {
				s.close()
				return
			}
			continue
		}
		// Active: keep reading straight away (no readiness wait, no
		// peek) while data keeps coming within activeWait.
		for moved := true; moved; {
			var ok bool
			if ok, moved = s.transfer(d, true, activeWait); !ok {
				return
			}
		}
	}
}

// activeWait is how long a direction that just moved data waits for more in
// a plain blocking read (holding a buffer) before it goes back to waiting
// for readiness without one.
const activeWait = 50 * time.Millisecond

// park hands d to the reactor, which runs it again once its socket is
// readable. It reports false when that is not possible (the goroutine goes
// on waiting); a closed session counts as parked.
func (s *session) park(d *direction) bool {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	if s.closed.Load() {
		return true
	}
	if d.watch != nil {
		return s.reactor.rearm(d.watch) == nil
	}
	fd, ok := fdOf(d.rc)
	if !ok {
		return false
	}
	w, err := s.reactor.add(fd, func() { s.run(d) })
	if err != nil {
		return false
	}
	d.watch = w
	s.watches = append(s.watches, w)
	parkedGoroutines.Add(1)
	return true
}

// parkedGoroutines counts directions handed to the reactor since the last
// memory trim.
var parkedGoroutines atomic.Int64

// trimAfterParks is how many parked goroutines make the freed stacks worth
// returning to the operating system.
const trimAfterParks = 512

// trimMemory returns the stacks of goroutines that parked to the operating
// system, every 10 seconds when enough did: the runtime keeps freed stacks
// until a GC, and an idle proxy rarely collects, so without this the memory
// of connections that went idle would stay resident.
func (p *Proxy) trimMemory() {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			if parkedGoroutines.Load() >= trimAfterParks {
				parkedGoroutines.Store(0)
				debug.FreeOSMemory()
			}
		}
	}
}

// transfer moves what d's source has now to its destination: one read
// (blocking only if block is set: for a socket known to be readable, or up
// to wait when wait is set), then, from a TLS source, every record
// crypto/tls already holds, coalesced into as few writes as the buffer
// allows. ok is false when the session has ended; moved tells whether
// anything was relayed.
func (s *session) transfer(d *direction, block bool, wait time.Duration) (ok, moved bool) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		off, drained := 0, false
		var err error
		for off+maxRecord <= len(buf) {
			nonblock := !block || off > 0
			if nonblock && !d.isTLS {
				drained = true // a plain socket is read once per readiness
				break
			}
			waiting := !nonblock && wait > 0
			switch {
			case nonblock:
				_ = d.src.SetReadDeadline(pastDeadline)
			case waiting:
				_ = d.src.SetReadDeadline(time.Now().Add(wait))
			}
			n, e := d.src.Read(buf[off:])
			if nonblock || waiting {
				_ = d.src.SetReadDeadline(time.Time{})
			}
			off += n
			block = false
			if e != nil {
				if (nonblock || waiting) && isTimeout(e) {
					drained = true
				} else {
					err = e
				}
				break
			}
		}
		if off > 0 {
			moved = true
			d.counter.Add(float64(off))
			if d.write(buf[:off]) != nil {
				s.close()
				return false, moved
			}
		}
		if err != nil {
			if d == &s.up {
				s.clientDone.Store(true)
			}
			s.close()
			return false, moved
		}
		if drained {
			return true, moved
		}
	}
}

func (s *session) writeBackend(p []byte) error {
	s.refreshWriteDeadline(s.backend, &s.backWDL)
	_, err := s.backend.Write(p)
	return err
}

// writeClient forwards broker bytes to the client, tracking packet
// boundaries; when a kick is pending it stops at the first boundary it can,
// writes the DISCONNECT there and ends the session.
func (s *session) writeClient(p []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.ended {
		return errKicked // the DISCONNECT was the last packet
	}
	boundary, err := s.sc.Feed(p)
	if err != nil {
		return err // the broker sent something that is not MQTT
	}
	s.refreshWriteDeadline(s.client, &s.clientWDL)
	if s.kicked() && boundary > 0 {
		_, _ = s.client.Write(p[:boundary])
		s.writeDisconnectLocked()
		return errKicked
	}
	_, err = s.client.Write(p)
	return err
}

var errKicked = errors.New("session kicked")

// writeConnack writes the broker's CONNACK to the client; a kick that came
// before it is delivered right behind it (errKicked).
func (s *session) writeConnack(pkt []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if _, err := s.client.Write(pkt); err != nil {
		return err
	}
	s.acked = true
	if s.kicked() {
		if s.req.Protocol == packets.V5 {
			s.writeDisconnectLocked()
		}
		s.ended = true
		return errKicked
	}
	return nil
}

// writeDisconnectLocked writes the kick's DISCONNECT (MQTT 5), the last
// packet the client gets.
func (s *session) writeDisconnectLocked() {
	s.ended = true
	_ = s.client.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = s.client.Write(packets.AppendDisconnect(nil, s.req.Protocol, packets.ReasonCode(s.kickState.Load()&0xff)))
}

// kick ends the session from the proxy's side. An MQTT 5 client first gets a
// DISCONNECT with code, at a packet boundary (waiting up to kickGrace for
// one); a 3.x client is closed. The broker connection is closed too.
func (s *session) kick(code packets.ReasonCode, cause string) {
	if !s.kickState.CompareAndSwap(0, kickedFlag|uint32(code)) {
		return // kicked already: the first kick's code and cause stand
	}
	s.p.metrics.Disconnects.WithLabelValues(cause).Inc()
	if s.req.Protocol != packets.V5 {
		s.close()
		return
	}
	// A write to the client in progress holds wmu: do not wait behind it.
	if s.wmu.TryLock() {
		if !s.acked {
			// The CONNACK is still to be written: writeConnack delivers
			// the DISCONNECT right behind it.
			s.wmu.Unlock()
			return
		}
		if s.ended {
			s.wmu.Unlock()
			return
		}
		if s.sc.AtBoundary() {
			s.writeDisconnectLocked()
			s.wmu.Unlock()
			s.close()
			return
		}
		s.wmu.Unlock()
	}
	// Mid-packet or mid-write: writeClient injects the DISCONNECT at the
	// next boundary; past the grace period the session closes without it.
	time.AfterFunc(kickGrace, s.close)
}

// close ends the session once: it unregisters the sockets from the
// reactor, closes both connections and releases the session's slot.
func (s *session) close() {
	s.closeOnce.Do(func() {
		s.watchMu.Lock()
		s.closed.Store(true)
		for _, w := range s.watches {
			s.reactor.remove(w)
		}
		s.watchMu.Unlock()
		if s.clientDone.Load() {
			_ = s.clientRaw.Close()
		} else {
			closeConn(s.client)
		}
		_ = s.backend.Close()
		s.p.removeSession(s)
		s.p.metrics.Active.Dec()
		if s.p.slots != nil {
			<-s.p.slots
		}
		s.p.wg.Done()
	})
}

// syscallConn returns c's RawConn, nil when it has none.
func syscallConn(c net.Conn) syscall.RawConn {
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			return rc
		}
	}
	return nil
}

// rawOf returns the TCP connection under a (possibly TLS) connection.
func rawOf(c net.Conn) net.Conn {
	if tc, ok := c.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return c
}
