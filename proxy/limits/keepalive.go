package limits

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// max_keepalive S: a device that asked for no keep alive, or a longer one,
// is held to S. MQTT 5 is told in its CONNACK (Server Keep Alive, which it
// must use from then on); 3.1.1 has no way to be told, and is accepted.
// Either way the proxy ends the session after 1.5 x S without a packet
// from the device (v5: DISCONNECT 0x8D first), as a broker does with the
// keep alive it knows; the time the proxy holds a throttled device back
// does not count as silence. A lowered max_keepalive applies at once to
// a 3.1.1 session; an MQTT 5 session keeps the S its CONNACK named until
// its next CONNECT.

// keepAliveWatch ends a session whose device stays silent too long. It
// looks every half S: a session silent for three looks in a row (no
// packet from the device, not held back by a rate) has been silent for
// 1.5 x S at least, and under 2 x S. A packet costs the device's
// direction one load (and a store once per look), never a clock read.
type keepAliveWatch struct {
	f      *Filter
	s      time.Duration // S
	heard  atomic.Bool   // a packet came since the last look
	silent int           // looks in a row without one (the timer's goroutine only)

	mu    sync.Mutex
	timer *time.Timer
	done  bool
}

// silentLooks is how many looks, S/2 apart, without a packet end the
// session: 1.5 x S.
const silentLooks = 3

// keepAliveWatch is the filter's watch, nil when none.
func (f *Filter) keepAliveWatch() *keepAliveWatch { return f.watch.Load() }

// MaxKeepAlive is the S the session is held to, given the keep alive its
// device asked for (seconds; 0: none), and whether it applies.
func MaxKeepAlive(ls *policy.Limits, asked uint16) (time.Duration, bool) {
	s, ok := ls.Get(policy.MaxKeepAlive)
	if !ok || asked != 0 && int64(asked) <= s {
		return 0, false
	}
	return time.Duration(s) * time.Second, true
}

// watchKeepAlive starts, changes or stops the watch as the limits ask:
// at the session's start (initial), and for a 3.1.1 session on every
// change of its limits (an MQTT 5 session keeps the S its CONNACK named,
// or none, until its next CONNECT).
func (f *Filter) watchKeepAlive(ls *policy.Limits, initial bool) {
	if f.level == packets.V5 && !initial {
		return
	}
	f.mu.Lock() // re-decisions may run at once
	defer f.mu.Unlock()
	old := f.watch.Load()
	s, ok := MaxKeepAlive(ls, f.askedKeepAlive)
	if f.level == packets.V5 && ok {
		s = f.keepAlive // the CONNACK's Server Keep Alive
	}
	ok = ok && s > 0
	switch {
	case !ok && old == nil:
		return
	case !ok:
		f.watch.Store(nil)
		old.stop()
		return
	case old != nil && old.s == s:
		return
	}
	if old != nil {
		old.stop()
	}
	w := &keepAliveWatch{f: f, s: s}
	w.mu.Lock() // look reads the timer under it
	w.timer = time.AfterFunc(s/2, w.look)
	w.mu.Unlock()
	f.watch.Store(w)
}

// look ends the session when its device has been silent for
// silentLooks looks in a row, and otherwise looks again in S/2.
func (w *keepAliveWatch) look() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	if w.heard.Swap(false) || w.f.Slowed() {
		w.silent = 0
	} else {
		w.silent++
	}
	if w.silent < silentLooks {
		w.timer.Reset(w.s / 2)
		return
	}
	w.done = true
	go w.f.sess.Silent(w.s)
}

// stop stops the watch.
func (w *keepAliveWatch) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	if w.timer != nil {
		w.timer.Stop()
	}
}
