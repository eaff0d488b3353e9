package relay

import (
	"errors"
	"fmt"

	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// Filter judges the packets of a session with topic rules. The relay frames
// both directions of such a session and calls the filter with whole
// packets: every packet from the client (Up), and from the broker only the
// types Down asks for (the rest streams through untouched). Up and Down are
// called from the two directions' goroutines, possibly at once; each is
// called for one packet at a time, in stream order.
type Filter interface {
	// Up judges a packet from the client.
	Up(pkt []byte) Verdict
	// Malformed is called instead of Up when the client's stream cannot be
	// framed (a packet over the cap, a bad remaining length); its verdict
	// must end the session.
	Malformed(err error) Verdict
	// WantsDown reports whether broker packets of type t go through Down.
	WantsDown(t packets.Type) bool
	// Down rewrites a broker packet of a wanted type; it returns what the
	// client gets instead (pkt itself to pass it unchanged, nil to drop).
	Down(pkt []byte) []byte
}

// Verdict is a filter's answer to a client packet.
type Verdict struct {
	// Broker is what goes to the broker: the packet itself, a rewritten
	// packet, or nil to withhold it.
	Broker []byte
	// Client is written to the client at the next boundary of its stream
	// (an acknowledgement the proxy answers itself), if not nil.
	Client []byte
	// End ends the session: Client, if any, is its last packet (a
	// DISCONNECT), written at a boundary.
	End bool
}

// framer follows a stream's packets across reads, keeping whole only the
// packets its filter must see (wantWhole), with a size cap on those.
type framer struct {
	max       int // cap on a packet kept whole
	wantWhole func(packets.Type) bool

	// The packet in progress at the end of the last chunk.
	hdr     [5]byte
	hdrLen  int
	remain  int    // bytes of it still to come, once its header is known
	passing bool   // it streams through (not kept whole)
	carry   []byte // it, kept whole so far (header included)
}

// errFramed is returned, wrapped, for a stream that cannot be framed.
var errFramed = errors.New("relay: stream cannot be framed")

// process walks chunk, calling pass with byte ranges that stream through
// unchanged and whole with each packet kept whole (a sub-slice of chunk
// when it lies inside it, else a copy of its own). It stops at the first
// error of a callback.
func (f *framer) process(chunk []byte, pass func([]byte) error, whole func([]byte) error) error {
	for len(chunk) > 0 {
		switch {
		case f.remain > 0 && f.passing:
			n := min(f.remain, len(chunk))
			if err := pass(chunk[:n]); err != nil {
				return err
			}
			f.remain -= n
			chunk = chunk[n:]
		case f.remain > 0:
			n := min(f.remain, len(chunk))
			f.carry = append(f.carry, chunk[:n]...)
			f.remain -= n
			chunk = chunk[n:]
			if f.remain == 0 {
				if err := whole(f.takeCarry()); err != nil {
					return err
				}
			}
		default:
			// At a packet's start, or inside its fixed header.
			if f.hdrLen == 0 {
				h, err := packets.ParseHeader(chunk)
				if err == nil {
					n, err := f.start(h, chunk, pass, whole)
					if err != nil {
						return err
					}
					chunk = chunk[n:]
					continue
				}
				if !errors.Is(err, packets.ErrTruncated) {
					return fmt.Errorf("%w: %w", errFramed, err)
				}
			}
			// The header spans chunks: gather it byte by byte.
			f.hdr[f.hdrLen] = chunk[0]
			f.hdrLen++
			chunk = chunk[1:]
			h, err := packets.ParseHeader(f.hdr[:f.hdrLen])
			if errors.Is(err, packets.ErrTruncated) && f.hdrLen < len(f.hdr) {
				continue
			}
			if err != nil {
				return fmt.Errorf("%w: %w", errFramed, err)
			}
			hdr := f.hdr[:f.hdrLen]
			f.hdrLen = 0
			if err := f.begin(h, hdr, pass); err != nil {
				return err
			}
			if f.remain == 0 && !f.passing {
				if err := whole(f.takeCarry()); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// start handles a packet whose header lies whole at chunk's start: a
// packet that lies whole in chunk goes to pass or whole at once, without a
// copy; one that does not is begun. It returns the bytes of chunk used.
func (f *framer) start(h packets.FixedHeader, chunk []byte, pass, whole func([]byte) error) (int, error) {
	size := h.Size()
	keep := f.wantWhole(h.Type)
	if keep && size > f.max {
		return 0, fmt.Errorf("%w: %w: %s of %d bytes, cap %d", errFramed, packets.ErrTooLarge, h.Type, size, f.max)
	}
	if size <= len(chunk) {
		if keep {
			return size, whole(chunk[:size])
		}
		return size, pass(chunk[:size])
	}
	if err := f.begin(h, chunk[:h.HeaderLen], pass); err != nil {
		return 0, err
	}
	return h.HeaderLen, nil
}

// begin starts a packet that continues past the chunk: its header is hdr.
func (f *framer) begin(h packets.FixedHeader, hdr []byte, pass func([]byte) error) error {
	f.remain = h.RemainingLength
	f.passing = !f.wantWhole(h.Type)
	if f.passing {
		return pass(hdr)
	}
	if h.Size() > f.max {
		return fmt.Errorf("%w: %w: %s of %d bytes, cap %d", errFramed, packets.ErrTooLarge, h.Type, h.Size(), f.max)
	}
	f.carry = append(make([]byte, 0, min(h.Size(), 4096)), hdr...)
	return nil
}

// takeCarry hands the packet kept whole over: what the filter returns may
// alias it until the batch is written, so it is not reused.
func (f *framer) takeCarry() []byte {
	pkt := f.carry
	f.carry = nil
	return pkt
}

// batch gathers what a chunk sends on: contiguous ranges of the chunk are
// merged, so a chunk whose packets all pass is one write.
type batch struct {
	segs [][]byte
}

func (b *batch) add(p []byte) {
	if len(p) == 0 {
		return
	}
	if n := len(b.segs); n > 0 {
		last := b.segs[n-1]
		if len(last)+len(p) <= cap(last) && &last[:len(last)+1][len(last)] == &p[0] {
			b.segs[n-1] = last[:len(last)+len(p)]
			return
		}
	}
	b.segs = append(b.segs, p)
}

func (b *batch) reset() { b.segs = b.segs[:0] }

// errStop stops a chunk's framing once the filter ended the session.
var errStop = errors.New("relay: session ended by its filter")

// deliverUp frames the client's bytes and hands each packet to the filter:
// what it forwards goes to the broker in as few writes as the chunk
// allows, its acknowledgements go to the client at packet boundaries, and
// an end it asks for (a malformed packet, a denial that disconnects) ends
// the session after everything before it was sent on.
func (s *Session) deliverUp(chunk []byte) error {
	d := &s.up
	d.out.reset()
	var replies [][]byte
	var end Verdict
	err := d.framer.process(chunk, nil, func(pkt []byte) error {
		v := s.cfg.Filter.Up(pkt)
		d.out.add(v.Broker)
		if v.End {
			end = v
			return errStop
		}
		if v.Client != nil {
			replies = append(replies, v.Client)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		end = s.cfg.Filter.Malformed(err)
	}
	for _, seg := range d.out.segs {
		if err := s.writeBroker(seg); err != nil {
			return err
		}
	}
	for _, r := range replies {
		if err := s.Inject(r); err != nil {
			return err
		}
	}
	if end.End {
		s.EndWith(end.Client, endGrace)
		return errFilterEnded
	}
	return nil
}

// errFilterEnded: the filter ended the session; its last packet, or the
// grace, closes it.
var errFilterEnded = errors.New("relay: session ended by its filter")

// deliverDown frames the broker's bytes: packets the filter wants (a
// SUBACK to merge with the proxy's own codes) are handed to it whole, the
// rest streams through unchanged.
func (s *Session) deliverDown(chunk []byte) error {
	d := &s.down
	d.out.reset()
	err := d.framer.process(chunk,
		func(p []byte) error { d.out.add(p); return nil },
		func(pkt []byte) error { d.out.add(s.cfg.Filter.Down(pkt)); return nil })
	for _, seg := range d.out.segs {
		if err := s.writeClient(seg); err != nil {
			return err
		}
	}
	return err // the broker sent something that is not MQTT: the session ends
}
