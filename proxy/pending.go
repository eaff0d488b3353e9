package proxy

import (
	"container/list"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// pendingSet bounds the connections that have not yet delivered their
// CONNECT (TLS handshake, or waiting for the CONNECT's bytes): the cheapest
// ones for anyone to open and hold, since they need no credential. When it
// is full, a new connection takes the place of the oldest one if that one
// has been pending for at least minAge (it is closed: a connection that
// silent is not a device doing its handshake); otherwise the new
// connection is refused. So silent connections cannot lock devices out:
// to keep a device from getting a place, an attacker must open `max`
// connections every minAge, which the per-address limits stop.
type pendingSet struct {
	max    int
	minAge time.Duration

	mu      sync.Mutex
	order   list.List // of *pendingConn, oldest first
	evicted atomic.Int64
}

// pendingConn is one connection in the set.
type pendingConn struct {
	conn    net.Conn
	since   time.Time
	elem    *list.Element
	evicted atomic.Bool
}

func newPendingSet(max int, minAge time.Duration) *pendingSet {
	return &pendingSet{max: max, minAge: minAge}
}

// add registers c, making room by evicting the oldest connection if it is
// old enough. It returns nil when the set is full of younger connections:
// the caller closes c.
func (ps *pendingSet) add(c net.Conn, now time.Time) *pendingConn {
	ps.mu.Lock()
	var victim *pendingConn
	if ps.order.Len() >= ps.max {
		oldest := ps.order.Front().Value.(*pendingConn)
		if now.Sub(oldest.since) < ps.minAge {
			ps.mu.Unlock()
			return nil
		}
		ps.order.Remove(oldest.elem)
		oldest.elem = nil
		victim = oldest
	}
	pc := &pendingConn{conn: c, since: now}
	pc.elem = ps.order.PushBack(pc)
	ps.mu.Unlock()
	if victim != nil {
		victim.evicted.Store(true)
		ps.evicted.Add(1)
		_ = victim.conn.Close() // its handshake or read fails at once
	}
	return pc
}

// done removes pc: its CONNECT has been read, or it ended.
func (ps *pendingSet) done(pc *pendingConn) {
	ps.mu.Lock()
	if pc.elem != nil {
		ps.order.Remove(pc.elem)
		pc.elem = nil
	}
	ps.mu.Unlock()
}

// len is the number of pending connections.
func (ps *pendingSet) len() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.order.Len()
}
