package relay

import (
	"errors"
	"fmt"

	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// Filter judges the packets of a session with topic rules. The relay frames
// both directions of such a session and calls the filter with whole
// packets: every packet from the client (Up), and from the broker only the
// types WantsDown asks for (the rest streams through untouched). Up is
// called from the client's direction, Down and DownHead from the broker's,
// possibly at once; each is called for one packet at a time, in stream
// order.
type Filter interface {
	// Up judges a packet from the client.
	Up(pkt []byte) Verdict
	// Malformed is called instead of Up when the client's stream cannot be
	// framed (a packet over the cap, a bad remaining length); its verdict
	// must end the session.
	Malformed(err error) Verdict
	// WantsDown says how broker packets of type t reach the filter.
	WantsDown(t packets.Type) Want
	// Down judges a broker packet of a wanted type, whole: Verdict.Client
	// is what the client gets instead (pkt itself to pass it unchanged,
	// nil to withhold it), Verdict.Broker an answer of the proxy's to the
	// broker (the acknowledgement of a withheld PUBLISH), End ends the
	// session (Client is then its last packet).
	Down(pkt []byte) Verdict
	// DownHead judges a broker packet wanted as WantHead that does not lie
	// whole in what the relay has read, from its beginning head (its fixed
	// header and what followed), size being the whole packet's size. It
	// reports false while it needs more (it is called again with a longer
	// head, up to the cap). Once it decides, Verdict.Client replaces head
	// (head itself to pass the packet, a rewritten head, or nil to
	// withhold the whole packet) and the rest of the packet streams behind
	// it or is dropped with it; Broker and End as for Down.
	DownHead(head []byte, size int) (Verdict, bool)
}

// Want says how a filtered stream hands packets of a type to its filter.
type Want uint8

const (
	// WantPass: the packets stream through untouched.
	WantPass Want = iota
	// WantWhole: each packet is kept whole (up to the cap) and judged.
	WantWhole
	// WantHead: a packet that lies whole in a read is judged whole; a
	// larger one from its beginning, its payload streaming behind the
	// verdict, so that a large message is neither capped nor copied.
	WantHead
)

// Verdict is a filter's answer to a packet.
type Verdict struct {
	// Broker is what goes to the broker: for a client packet the packet
	// itself, a rewritten packet, or nil to withhold it; for a broker
	// packet the proxy's answer, if any.
	Broker []byte
	// Client is what goes to the client: for a client packet an
	// acknowledgement the proxy answers itself, written at the next
	// boundary of the client's stream (nil: none); for a broker packet
	// the packet itself, a rewritten one, or nil to withhold it.
	Client []byte
	// End ends the session: Client, if any, is its last packet (a
	// DISCONNECT), written at a boundary; Cause says why (a metric label:
	// "acl", "malformed", ...), for Config.End.
	End   bool
	Cause string
}

// framer follows a stream's packets across reads, keeping whole only the
// packets its filter must see, with a size cap on those.
type framer struct {
	max  int // cap on a packet kept whole, or on a head before its verdict
	want func(packets.Type) Want

	// The packet in progress at the end of the last chunk.
	hdr    [5]byte
	hdrLen int
	remain int       // bytes of it still to come, once its header is known
	mode   frameMode // what happens to them
	size   int       // its whole size (modeHead)
	carry  []byte    // it, kept so far (header included)
}

// frameMode is what happens to the bytes of the packet in progress.
type frameMode uint8

const (
	modePass  frameMode = iota // they stream through
	modeSkip                   // they are dropped: the filter withheld the packet
	modeWhole                  // they are kept until the packet is whole
	modeHead                   // they are kept until the filter decides from the head
)

// errFramed is returned, wrapped, for a stream that cannot be framed.
var errFramed = errors.New("relay: stream cannot be framed")

// framedFuncs are what a framer hands the stream's bytes to: pass takes
// byte ranges that stream through, whole each packet kept whole (a
// sub-slice of the chunk when it lies inside it, else a copy of its own),
// head the beginning of a WantHead packet, returning what replaces it
// (nil: the packet is dropped) once decided.
type framedFuncs struct {
	pass  func([]byte) error
	whole func([]byte) error
	head  func(head []byte, size int) (out []byte, decided bool, err error)
}

// process walks chunk, handing its bytes to fn. It stops at the first
// error of a callback.
func (f *framer) process(chunk []byte, fn framedFuncs) error {
	for len(chunk) > 0 {
		if f.remain > 0 {
			n := min(f.remain, len(chunk))
			if err := f.body(chunk[:n], fn); err != nil {
				return err
			}
			chunk = chunk[n:]
			continue
		}
		// At a packet's start, or inside its fixed header.
		if f.hdrLen == 0 {
			h, err := packets.ParseHeader(chunk)
			if err == nil {
				n, err := f.start(h, chunk, fn)
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
		if err := f.begin(h, hdr, fn); err != nil {
			return err
		}
		if f.remain == 0 && f.mode >= modeWhole {
			if err := fn.whole(f.takeCarry()); err != nil {
				return err
			}
		}
	}
	return nil
}

// body handles part, the next bytes of the packet in progress.
func (f *framer) body(part []byte, fn framedFuncs) error {
	if f.mode == modeHead {
		return f.headBody(part, fn)
	}
	f.remain -= len(part)
	switch f.mode {
	case modePass:
		return fn.pass(part)
	case modeSkip:
		return nil
	}
	f.carry = append(f.carry, part...)
	if f.remain == 0 {
		return fn.whole(f.takeCarry())
	}
	return nil
}

// headBody adds to the head of a packet awaiting its verdict what fits
// under the cap, asks the filter, and once it decided hands the rest of
// part on as the verdict says. A packet that ends within the cap before a
// verdict is judged whole.
func (f *framer) headBody(part []byte, fn framedFuncs) error {
	take := min(len(part), f.max-len(f.carry))
	f.carry = append(f.carry, part[:take]...)
	f.remain -= take
	if f.remain == 0 {
		return fn.whole(f.takeCarry())
	}
	if err := f.decide(fn); err != nil {
		return err
	}
	if f.mode == modeHead {
		if take < len(part) {
			return fmt.Errorf("%w: %w: a %d-byte head of a %d-byte packet without a verdict, cap %d", errFramed, packets.ErrTooLarge,
				len(f.carry), f.size, f.max)
		}
		return nil
	}
	if rest := part[take:]; len(rest) > 0 {
		return f.body(rest, fn)
	}
	return nil
}

// decide asks the filter about the head carried so far; once it decides,
// the rest of the packet streams behind what it returned, or is dropped.
func (f *framer) decide(fn framedFuncs) error {
	out, decided, err := fn.head(f.carry, f.size)
	if err != nil || !decided {
		return err
	}
	f.carry = nil // out may alias it
	if out == nil {
		f.mode = modeSkip
		return nil
	}
	f.mode = modePass
	return fn.pass(out)
}

// start handles a packet whose header lies whole at chunk's start: a
// packet that lies whole in chunk goes to pass or whole at once, without a
// copy; one that does not is begun. It returns the bytes of chunk used.
func (f *framer) start(h packets.FixedHeader, chunk []byte, fn framedFuncs) (int, error) {
	size := h.Size()
	want := f.want(h.Type)
	if want == WantWhole && size > f.max {
		return 0, fmt.Errorf("%w: %w: %s of %d bytes, cap %d", errFramed, packets.ErrTooLarge, h.Type, size, f.max)
	}
	if size <= len(chunk) {
		if want != WantPass {
			return size, fn.whole(chunk[:size])
		}
		return size, fn.pass(chunk[:size])
	}
	if err := f.begin(h, chunk[:h.HeaderLen], fn); err != nil {
		return 0, err
	}
	if f.mode != modeHead {
		return h.HeaderLen, nil
	}
	// The rest of chunk is the head's first bytes.
	if err := f.body(chunk[h.HeaderLen:], fn); err != nil {
		return 0, err
	}
	return len(chunk), nil
}

// begin starts a packet that continues past the chunk: its header is hdr.
func (f *framer) begin(h packets.FixedHeader, hdr []byte, fn framedFuncs) error {
	f.remain, f.size = h.RemainingLength, h.Size()
	switch f.want(h.Type) {
	case WantPass:
		f.mode = modePass
		return fn.pass(hdr)
	case WantHead:
		f.mode = modeHead
		f.carry = append(make([]byte, 0, min(h.Size(), f.max, 4096)), hdr...)
		return nil
	}
	if h.Size() > f.max {
		return fmt.Errorf("%w: %w: %s of %d bytes, cap %d", errFramed, packets.ErrTooLarge, h.Type, h.Size(), f.max)
	}
	f.mode = modeWhole
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
	err := d.framer.process(chunk, framedFuncs{whole: func(pkt []byte) error {
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
	}})
	if err != nil && !errors.Is(err, errStop) {
		end = s.cfg.Filter.Malformed(err)
	}
	if err := s.writeBrokerSegs(d.out.segs); err != nil {
		return err
	}
	for _, r := range replies {
		if err := s.Inject(r); err != nil {
			return err
		}
	}
	if end.End {
		s.filterEnded(end)
		return errFilterEnded
	}
	return nil
}

// filterEnded ends the session as its filter asked: through Config.End,
// the session's owner's one door, when it has one.
func (s *Session) filterEnded(v Verdict) {
	if s.cfg.End != nil {
		s.cfg.End(v.Client, v.Cause)
		return
	}
	s.EndWith(v.Client, endGrace)
}

// errFilterEnded: the filter ended the session; its last packet, or the
// grace, closes it.
var errFilterEnded = errors.New("relay: session ended by its filter")

// deliverDown frames the broker's bytes: packets the filter wants are
// judged (whole, or a large PUBLISH from its head), what it lets through
// or rewrites goes to the client, its answers to the broker (the
// acknowledgements of withheld PUBLISHes) go back to the broker, and the
// rest streams through unchanged.
func (s *Session) deliverDown(chunk []byte) error {
	d := &s.down
	d.out.reset()
	var replies [][]byte
	var end Verdict
	take := func(v Verdict) error {
		if v.End {
			end = v
			return errStop
		}
		if v.Broker != nil {
			replies = append(replies, v.Broker)
		}
		return nil
	}
	err := d.framer.process(chunk, framedFuncs{
		pass: func(p []byte) error { d.out.add(p); return nil },
		whole: func(pkt []byte) error {
			v := s.cfg.Filter.Down(pkt)
			if err := take(v); err != nil {
				return err
			}
			d.out.add(v.Client)
			return nil
		},
		head: func(head []byte, size int) ([]byte, bool, error) {
			v, decided := s.cfg.Filter.DownHead(head, size)
			if !decided {
				return nil, false, nil
			}
			return v.Client, true, take(v)
		},
	})
	for _, seg := range d.out.segs {
		if err := s.writeClient(seg); err != nil {
			return err
		}
	}
	if err := s.writeBrokerSegs(replies); err != nil {
		return err
	}
	if end.End {
		s.filterEnded(end)
		return errFilterEnded
	}
	return err // the broker sent something that is not MQTT: the session ends
}
