package relay

import (
	"errors"
	"fmt"
	"time"

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
	// Wait, for a client packet, holds what the verdict sends to the
	// broker, and everything behind it in the client's stream, for that
	// long: the relay stops reading the client meanwhile (TCP pushes back
	// on the device; nothing is dropped). A rate limit's answer.
	Wait time.Duration
}

// framer follows a stream's packets across reads (with packets.Framer),
// keeping whole only the packets its filter must see, with a size cap on
// those.
type framer struct {
	max  int // cap on a packet kept whole, or on a head before its verdict
	want func(packets.Type) Want
	fr   packets.Framer

	// The packet in progress at the end of the last chunk.
	mode  frameMode // what happens to its bytes still to come
	size  int       // its whole size (modeHead)
	carry []byte    // it, kept so far (header included)
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
// byte ranges that stream through (end: they end a packet), whole each
// packet kept whole (a sub-slice of the chunk when it lies inside it, else
// a copy of its own), head the beginning of a WantHead packet, returning
// what replaces it (nil: the packet is dropped) once decided. What they
// are given stays valid until the chunk has been handled.
type framedFuncs struct {
	pass  func(p []byte, end bool) error
	whole func([]byte) error
	head  func(head []byte, size int) (out []byte, decided bool, err error)
}

// process walks chunk, handing its bytes to fn. It stops at the first
// error of a callback.
func (f *framer) process(chunk []byte, fn framedFuncs) error {
	_, err := f.walk(chunk, fn)
	return err
}

// walk is process, also returning, when a callback fails, the bytes of
// chunk not yet framed: when whole failed, those behind its packet.
func (f *framer) walk(chunk []byte, fn framedFuncs) ([]byte, error) {
	for len(chunk) > 0 {
		p, n, err := f.fr.Next(chunk)
		if err != nil {
			return chunk, fmt.Errorf("%w: %w", errFramed, err)
		}
		chunk = chunk[n:]
		switch {
		case len(p.Bytes) == 0: // a fixed header the chunk ends inside
		case !p.First:
			err = f.body(p.Bytes, p.Last, fn)
		default:
			err = f.start(p, fn)
		}
		if err != nil {
			return chunk, err
		}
	}
	return nil, nil
}

// body handles part, the next bytes of the packet in progress; last: they
// end it.
func (f *framer) body(part []byte, last bool, fn framedFuncs) error {
	switch f.mode {
	case modeHead:
		return f.headBody(part, last, fn)
	case modePass:
		return fn.pass(part, last)
	case modeSkip:
		return nil
	}
	f.carry = append(f.carry, part...)
	if last {
		return fn.whole(f.takeCarry())
	}
	return nil
}

// headBody adds to the head of a packet awaiting its verdict what fits
// under the cap, asks the filter, and once it decided hands the rest of
// part on as the verdict says. A packet that ends within the cap before a
// verdict is judged whole.
func (f *framer) headBody(part []byte, last bool, fn framedFuncs) error {
	take := min(len(part), f.max-len(f.carry))
	f.carry = append(f.carry, part[:take]...)
	if last && take == len(part) {
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
		return f.body(rest, last, fn)
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
	return fn.pass(out, false)
}

// start handles the first piece of a packet: one that lies whole in it
// goes to pass or whole at once, without a copy; one that does not is
// begun.
func (f *framer) start(p packets.Piece, fn framedFuncs) error {
	h := p.Header
	want := f.want(h.Type)
	if want == WantWhole && h.Size() > f.max {
		return fmt.Errorf("%w: %w: %s of %d bytes, cap %d", errFramed, packets.ErrTooLarge, h.Type, h.Size(), f.max)
	}
	switch {
	case p.Last && want == WantPass:
		return fn.pass(p.Bytes, true)
	case p.Last:
		return fn.whole(p.Bytes)
	case want == WantPass:
		f.mode = modePass
		return fn.pass(p.Bytes, false)
	case want == WantHead:
		f.mode, f.size = modeHead, h.Size()
		f.carry = append(make([]byte, 0, min(h.Size(), f.max, 4096)), p.Bytes[:h.HeaderLen]...)
		if rest := p.Bytes[h.HeaderLen:]; len(rest) > 0 {
			return f.headBody(rest, false, fn)
		}
		return nil
	}
	f.mode = modeWhole
	f.carry = append(make([]byte, 0, min(h.Size(), 4096)), p.Bytes...)
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
// merged, so a chunk whose packets all pass is one write. bounds says,
// for each segment, where in it the last packet that ends in it ends (0:
// none does), so that the client's side knows its packet boundaries
// without framing the stream again.
type batch struct {
	segs   [][]byte
	bounds []int
}

// add appends p; end says p ends a packet.
func (b *batch) add(p []byte, end bool) {
	if len(p) == 0 {
		return
	}
	if n := len(b.segs); n > 0 {
		last := b.segs[n-1]
		if len(last)+len(p) <= cap(last) && &last[:len(last)+1][len(last)] == &p[0] {
			b.segs[n-1] = last[:len(last)+len(p)]
			if end {
				b.bounds[n-1] = len(b.segs[n-1])
			}
			return
		}
	}
	b.segs = append(b.segs, p)
	b.bounds = append(b.bounds, 0)
	if end {
		b.bounds[len(b.bounds)-1] = len(p)
	}
}

func (b *batch) reset() { b.segs, b.bounds = b.segs[:0], b.bounds[:0] }

// errStop stops a chunk's framing once the filter ended the session.
var errStop = errors.New("relay: session ended by its filter")

// verdicts gathers what a chunk's verdicts ask beyond forwarding: the
// answers to the other side, and an end.
type verdicts struct {
	answers [][]byte
	end     Verdict
}

// take records v, whose answer to the other side is answer: an end stops
// the chunk's framing (errStop).
func (vs *verdicts) take(v Verdict, answer []byte) error {
	if v.End {
		vs.end = v
		return errStop
	}
	if answer != nil {
		vs.answers = append(vs.answers, answer)
	}
	return nil
}

// ended ends the session when a verdict asked for it.
func (s *Session) ended(vs *verdicts) error {
	if !vs.end.End {
		return nil
	}
	s.filterEnded(vs.end)
	return errFilterEnded
}

// deliverUp frames the client's bytes and hands each packet to the filter:
// what it forwards goes to the broker in as few writes as the chunk
// allows, its acknowledgements go to the client at packet boundaries, and
// an end it asks for (a malformed packet, a denial that disconnects) ends
// the session after everything before it was sent on.
func (s *Session) deliverUp(chunk []byte) error {
	d := &s.up
	d.out.reset()
	var vs verdicts
	var held Verdict // a verdict that asked to wait (pause.go)
	rest, err := d.framer.walk(chunk, framedFuncs{whole: func(pkt []byte) error {
		v := s.cfg.Filter.Up(pkt)
		if v.Wait > 0 && !v.End {
			held = v
			_ = vs.take(v, v.Client)
			return errWait
		}
		d.out.add(v.Broker, true)
		return vs.take(v, v.Client)
	}})
	if err != nil && !errors.Is(err, errStop) && !errors.Is(err, errWait) {
		vs.end = s.cfg.Filter.Malformed(err)
	}
	if err := s.writeBrokerSegs(d.out.segs); err != nil {
		return err
	}
	for _, r := range vs.answers {
		if err := s.Inject(r); err != nil {
			return err
		}
	}
	if errors.Is(err, errWait) {
		return s.hold(d, held, rest)
	}
	if d.pause != nil {
		d.pause.slow = false // a chunk went through without a wait
	}
	s.written(true) // gather.go: every verdict of the chunk is written
	return s.ended(&vs)
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
	var vs verdicts
	err := d.framer.process(chunk, framedFuncs{
		pass: func(p []byte, end bool) error { d.out.add(p, end); return nil },
		whole: func(pkt []byte) error {
			v := s.cfg.Filter.Down(pkt)
			if err := vs.take(v, v.Broker); err != nil {
				return err
			}
			d.out.add(v.Client, true)
			return nil
		},
		head: func(head []byte, size int) ([]byte, bool, error) {
			v, decided := s.cfg.Filter.DownHead(head, size)
			if !decided {
				return nil, false, nil
			}
			return v.Client, true, vs.take(v, v.Broker)
		},
	})
	if err := s.forwardSegs(d.out.segs, d.out.bounds); err != nil {
		return err
	}
	if err := s.writeBrokerSegs(vs.answers); err != nil {
		return err
	}
	s.written(false) // gather.go: every verdict of the chunk is written
	if ended := s.ended(&vs); ended != nil {
		return ended
	}
	return err // the broker sent something that is not MQTT: the session ends
}
