package relay

import "sync"

// Gathering: a chunk's packets that a filter rewrote (a mountpoint's
// topics, an alias's topic put back) are segments of their own, apart from
// the chunk's bytes. Written one by one they cost a system call each;
// gathered into one buffer (a copy, far cheaper than a call) they go in
// one write, as a chunk whose packets all pass does.

// gatherMax bounds what is gathered; larger batches are written segment
// by segment (their copies would cost more than the calls they save).
const gatherMax = 64 << 10

// gatherPool holds the buffers segments are gathered in: none is kept by
// an idle session.
var gatherPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// gather copies segs into one pooled buffer when there are several and
// they fit gatherMax; ok false leaves them as they are. boundsIn, when not
// nil, are the segments' boundaries (where in each the last packet that
// ends in it ends, 0 for none), and boundary is the gathered buffer's.
// Put the buffer back with release once written.
func gather(segs [][]byte, boundsIn []int) (buf *[]byte, boundary int, ok bool) {
	if len(segs) < 2 {
		return nil, 0, false
	}
	total := 0
	for _, s := range segs {
		total += len(s)
	}
	if total > gatherMax {
		return nil, 0, false
	}
	buf = gatherPool.Get().(*[]byte)
	b := (*buf)[:0]
	for i, s := range segs {
		if boundsIn != nil && boundsIn[i] > 0 {
			boundary = len(b) + boundsIn[i]
		}
		b = append(b, s...)
	}
	*buf = b
	return buf, boundary, true
}

// release puts a gathered buffer back.
func release(buf *[]byte) {
	if cap(*buf) <= gatherMax {
		*buf = (*buf)[:0]
		gatherPool.Put(buf)
	}
}

// Reuser is a Filter whose verdicts' packets (the rewritten ones) live in
// buffers of its own: Written is called once everything its verdicts
// returned for one direction (up: the client's packets toward the broker;
// else the broker's toward the client) has been written, so that it may
// use those buffers again. It is not called while a direction waits
// (pause.go) with a packet held.
type Reuser interface {
	Written(up bool)
}

// written tells the session's filter that a direction's verdicts so far
// are written.
func (s *Session) written(up bool) {
	if r, ok := s.cfg.Filter.(Reuser); ok {
		r.Written(up)
	}
}

// Written passes the call on to the filters that reuse their buffers.
func (c *Chain) Written(up bool) {
	for _, f := range c.filters {
		if r, ok := f.(Reuser); ok {
			r.Written(up)
		}
	}
}

// forwardSegs forwards a chunk's segments to the client, gathered into one
// write when there are several (bounds: each one's boundary, as forward
// takes it).
func (s *Session) forwardSegs(segs [][]byte, bounds []int) error {
	if buf, boundary, ok := gather(segs, bounds); ok {
		defer release(buf)
		return s.forward(*buf, boundary)
	}
	for i, seg := range segs {
		if err := s.forward(seg, bounds[i]); err != nil {
			return err
		}
	}
	return nil
}
