package relay

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
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

// pastDeadline makes a read take only what a Drainable connection already
// holds: a tls.Conn read with an expired deadline fails as soon as it would
// need the socket (and such a timeout is not sticky on its read side).
var pastDeadline = time.Unix(1, 0)

// idleAfter is how long a direction goes without data before its goroutine
// exits and the reactor watches the socket instead.
const idleAfter = 2 * time.Second

// activeWait is how long a direction that just moved data waits for more in
// a plain blocking read (holding a buffer) before it goes back to waiting
// for readiness without one.
const activeWait = 50 * time.Millisecond

// run relays d while data flows; it returns when the session ends or when
// d has been parked in the reactor.
func (s *Session) run(d *direction) {
	if d.drainFirst {
		d.drainFirst = false
		if ok, _ := s.transfer(d, false, 0); !ok {
			return
		}
	}
	if d.rc == nil {
		// No readiness: a blocking read at a time.
		for s.transferBlocking(d) {
		}
		return
	}
	for {
		_ = d.src.Raw.SetReadDeadline(time.Now().Add(idleAfter))
		err := waitReadable(d.rc)
		_ = d.src.Raw.SetReadDeadline(time.Time{})
		if err != nil {
			if isTimeout(err) && s.park(d) {
				return
			}
			if !isTimeout(err) {
				s.Close()
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

// park hands d to the reactor, which runs it again once its socket is
// readable. It reports false when that is not possible (the goroutine goes
// on waiting); a closed session counts as parked.
func (s *Session) park(d *direction) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == closed {
		return true
	}
	if d.watch != nil {
		return s.e.reactor.rearm(d.watch) == nil
	}
	fd, ok := fdOf(d.rc)
	if !ok {
		return false
	}
	w, err := s.e.reactor.add(fd, func() { s.run(d) })
	if err != nil {
		return false
	}
	d.watch = w
	s.watches = append(s.watches, w)
	s.e.parked.Add(1)
	return true
}

// transfer moves what d's source has now to its destination: one read
// (blocking only if block is set: for a socket known to be readable, or up
// to wait when wait is set), then, from a Drainable source, every record it
// already holds, coalesced into as few writes as the buffer allows. ok is
// false when the session has ended; moved tells whether anything was
// relayed.
func (s *Session) transfer(d *direction, block bool, wait time.Duration) (ok, moved bool) {
	pool := &bufPool
	if d.pause != nil && d.pause.slow {
		pool = &slowPool // a filter holds it back: read little at a time
	}
	bp := pool.Get().(*[]byte)
	defer pool.Put(bp)
	buf := *bp
	for {
		off, drained := 0, false
		var err error
		for first := true; first || off+maxRecord <= len(buf); first = false {
			nonblock := !block || off > 0
			if nonblock && d.src.Kind != Drainable {
				drained = true // a socket, or an opaque reader, is read once per call
				break
			}
			waiting := !nonblock && wait > 0
			switch {
			case nonblock:
				_ = d.src.Conn.SetReadDeadline(pastDeadline)
			case waiting:
				_ = d.src.Conn.SetReadDeadline(time.Now().Add(wait))
			}
			n, e := d.src.Conn.Read(buf[off:])
			if nonblock || waiting {
				_ = d.src.Conn.SetReadDeadline(time.Time{})
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
			if !s.pass(d, buf[:off]) {
				return false, moved
			}
		}
		if err != nil {
			s.readFailed(d)
			return false, moved
		}
		if drained {
			return true, moved
		}
	}
}

// smallRead is the buffer a blocking reader waits with: an idle session
// (a WebSocket's, or any on the portable path) must not pin a pooled
// relayBufSize buffer while nothing comes.
const smallRead = 1024

// transferBlocking moves what one blocking read brings. While the
// direction is quiet it waits with its own small buffer; a read that
// fills it means data is flowing, and the next read takes a pooled buffer.
// It reports false when the session has ended.
func (s *Session) transferBlocking(d *direction) bool {
	if d.hot {
		d.hot = false
		ok, _ := s.transfer(d, true, 0)
		return ok
	}
	if d.small == nil {
		d.small = make([]byte, smallRead)
	}
	n, err := d.src.Conn.Read(d.small)
	if n > 0 {
		if !s.pass(d, d.small[:n]) {
			return false
		}
		d.hot = n == len(d.small)
	}
	if err != nil {
		s.readFailed(d)
		return false
	}
	return true
}

// pass counts and delivers what d read; false when the session has ended
// (closed here, unless a filter ended it: its last packet, or its grace,
// closes it).
func (s *Session) pass(d *direction, b []byte) bool {
	d.counter.Add(float64(len(b)))
	if err := d.deliver(b); err != nil {
		if err != errFilterEnded && err != errPaused {
			s.Close()
		}
		return false // ended, or paused: resume takes the direction on
	}
	return true
}

// readFailed ends the session after a read from d's source failed (an
// EOF, a reset, a close_notify): no close_notify goes to a client that
// ended its side.
func (s *Session) readFailed(d *direction) {
	if d == &s.up {
		s.mu.Lock()
		s.clientDone = true
		s.mu.Unlock()
	}
	s.Close()
}

// isTimeout reports whether err is a passed deadline.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
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
