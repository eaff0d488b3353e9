package mountpoint

import "sync"

// arena holds the packets one direction rewrote since the relay last said
// they were written (relay.Reuser): they are cut from pooled buffers, one
// after the other (so that the relay's batch sees consecutive packets as
// one segment), and the buffers go back to the pool once written. An idle
// session holds none.
type arena struct {
	cur  *[]byte   // the buffer packets are cut from; nil: none yet
	used []*[]byte // the buffers filled before it, since the last written
}

// arenaSize is a pooled buffer's size: what the relay reads at once (64
// KiB) rewritten, each packet's topic grown by the mountpoint, fits one,
// so that a chunk's packets stay one segment, written without another
// copy. A packet larger than its room gets a buffer of its own (not
// pooled past arenaPoolMax).
const (
	arenaSize    = 128 << 10
	arenaPoolMax = 256 << 10
)

var arenaPool = sync.Pool{New: func() any { b := make([]byte, 0, arenaSize); return &b }}

// room returns a slice of length 0 with at least n bytes of capacity, at
// the arena's end: append the packet to it and take it with take.
func (a *arena) room(n int) []byte {
	if a.cur == nil {
		a.cur = arenaPool.Get().(*[]byte)
	}
	if b := *a.cur; cap(b)-len(b) < n {
		a.used = append(a.used, a.cur)
		if n <= arenaSize {
			a.cur = arenaPool.Get().(*[]byte)
		} else {
			nb := make([]byte, 0, n)
			a.cur = &nb
		}
	}
	b := *a.cur
	return b[len(b):]
}

// take records that out, appended to the slice room returned, is in use.
// An out that outgrew its room (it was reallocated) is left alone.
func (a *arena) take(out []byte) []byte {
	b := *a.cur
	if len(out) > 0 && cap(b)-len(b) >= len(out) && &b[:len(b)+1][len(b)] == &out[0] {
		*a.cur = b[:len(b)+len(out)]
	}
	return out
}

// written gives every buffer back to the pool: nothing cut from them is
// referenced any more.
func (a *arena) written() {
	if a.cur == nil {
		return
	}
	for _, b := range a.used {
		put(b)
	}
	put(a.cur)
	a.cur, a.used = nil, nil
}

// put gives a buffer back to the pool, unless it is one of a large
// packet's own.
func put(b *[]byte) {
	if cap(*b) <= arenaPoolMax {
		*b = (*b)[:0]
		arenaPool.Put(b)
	}
}
