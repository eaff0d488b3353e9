package relay

import (
	"errors"
	"sync"
	"time"
)

// A filter's wait (Verdict.Wait, a rate limit): the client's direction
// stops where the verdict asked, keeps what it read behind that point,
// and reads nothing more until the wait is over. No goroutine waits: the
// direction's goroutine returns, and a timer takes the direction on
// (resume), sends the held packet, frames the rest and goes back to
// reading. Meanwhile the device's writes fill the socket's buffers and TCP
// pushes back on it: nothing is dropped, and no packet of the device's
// reaches the broker before its turn. A direction that waited reads with a
// small buffer (slowPool) until a chunk goes through without a wait, so
// that a throttled session holds little of the device's backlog in user
// space. A paused direction is not parked in the reactor (it is not
// idle: its timer wakes it); once it catches up it parks as any other.

// pauseState is what a direction holds while it waits.
type pauseState struct {
	out   []byte      // what the held verdict sends to the broker once the wait is over
	rest  []byte      // the client's bytes behind it, not framed yet
	timer *time.Timer // resumes the direction; nil when it is not waiting
	// resuming: the direction frames bytes of its own (rest), not the
	// pooled read buffer's, so a wait keeps them without a copy.
	resuming bool
	// slow: the direction waited lately: it reads with a small buffer.
	slow bool
}

// slowRead is the read buffer of a direction a filter holds back.
const slowRead = 4 << 10

var slowPool = sync.Pool{New: func() any { b := make([]byte, slowRead); return &b }}

var (
	// errWait stops a chunk's framing at a verdict that waits.
	errWait = errors.New("relay: a filter asked to wait")
	// errPaused: the direction waits; resume takes it on.
	errPaused = errors.New("relay: direction paused by its filter")
)

// hold makes d wait as v asks: v's broker output and rest, the bytes
// behind its packet, are kept (copied, unless they are d's own already)
// and d is resumed after v.Wait. It returns errPaused, or ErrEnded when
// the session is closed.
func (s *Session) hold(d *direction, v Verdict, rest []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == closed {
		return ErrEnded
	}
	ps := d.pause
	if ps == nil {
		ps = &pauseState{}
		d.pause = ps
	}
	if ps.resuming {
		ps.resuming = false // before the timer: resume owns ps from then on
		ps.out, ps.rest = v.Broker, rest
	} else {
		buf := make([]byte, 0, len(v.Broker)+len(rest))
		buf = append(append(buf, v.Broker...), rest...)
		ps.out, ps.rest = buf[:len(v.Broker):len(v.Broker)], buf[len(v.Broker):]
	}
	ps.slow = true
	ps.timer = time.AfterFunc(v.Wait, func() { s.resume(d) })
	return errPaused
}

// resume takes a waiting direction on: it sends the held packet, frames
// what was read behind it (which may wait again), moves what a Drainable
// source holds, and goes back to reading.
func (s *Session) resume(d *direction) {
	s.mu.Lock()
	ps := d.pause
	if s.state == closed || ps.timer == nil {
		s.mu.Unlock()
		return
	}
	ps.timer = nil
	out, rest := ps.out, ps.rest
	ps.out, ps.rest = nil, nil
	s.mu.Unlock()
	if len(out) > 0 {
		if err := s.writeBrokerSegs([][]byte{out}); err != nil {
			s.Close()
			return
		}
	}
	if len(rest) > 0 {
		ps.resuming = true
		err := d.deliver(rest)
		switch {
		case err == errPaused: // hold reset resuming before it armed the timer
			return
		case err == errFilterEnded:
			return
		case err != nil:
			s.Close()
			return
		}
		ps.resuming = false
	}
	d.drainFirst = d.src.Kind == Drainable && d.rc != nil
	s.run(d)
}

// stopWait stops d's timer, if it waits (s.mu held: the session closes).
func (d *direction) stopWait() {
	if d.pause != nil && d.pause.timer != nil {
		d.pause.timer.Stop()
		d.pause.timer = nil
	}
}

// WriteBroker writes pkt, a whole packet of the proxy's own (a PINGREQ
// that keeps the broker's keep alive while the device is held back), to
// the broker of a session with a filter, between two of the client's
// packets. It fails on a session without a filter, whose client bytes
// stream through unframed.
func (s *Session) WriteBroker(pkt []byte) error {
	if s.cfg.Filter == nil {
		return errors.New("relay: WriteBroker on a session without a filter")
	}
	if s.Ended() {
		return ErrEnded
	}
	return s.writeBrokerSegs([][]byte{pkt})
}

// ClientClosed reports whether the client has shut down its side of the
// connection (sent its FIN), though bytes it sent before may still wait
// unread behind a filter's wait. A write to such a client can draw a TCP
// reset, which would discard those bytes: a packet of the proxy's own
// (a PINGRESP to a slowed device) is not sent then. It reports false
// where the platform cannot tell without reading.
func (s *Session) ClientClosed() bool {
	rc := rawConnOf(s.cfg.Client.Raw)
	return rc != nil && peerClosed(rc)
}
