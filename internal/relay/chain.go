package relay

import (
	"errors"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// Chain runs a session's filters as one: the relay filter seam. Each kind
// of rule a session can carry (topic rules, limits, a mountpoint) is one
// Filter, and a session's chain holds those its decision asks for, ordered
// from the device's side to the broker's. A client packet goes through
// them in that order, each one's Broker output being the next one's
// input; a broker packet goes through them in reverse order, each one's
// Client output being the next one's input. A filter is asked only about
// the broker packet types it wants. Answers to either side are gathered,
// in the order the filters gave them; the first End ends the session.
// A filter's answer to the device goes through the filters on the
// device's side of it (their Down, for the types they want), as a broker
// packet would: a SUBACK a later filter answers alone is merged by the
// topic rules before it. The longest Wait of the filters is the chain's.
//
// A large broker PUBLISH judged from its head is handed to the filters
// once its variable header is complete (every filter that wants heads
// must decide from such a head), so that no filter is asked twice about
// one packet.
type Chain struct {
	filters []Filter
	level   packets.Level
}

// NewChain returns the filters as one Filter for a session of the given
// protocol level: nil for none, the filter itself for one.
func NewChain(level packets.Level, filters ...Filter) Filter {
	var fs []Filter
	for _, f := range filters {
		if f != nil {
			fs = append(fs, f)
		}
	}
	switch len(fs) {
	case 0:
		return nil
	case 1:
		return fs[0]
	}
	return &Chain{filters: fs, level: level}
}

var _ Filter = (*Chain)(nil)

// Up runs a client packet through the filters, device side first.
func (c *Chain) Up(pkt []byte) Verdict {
	var replies []byte
	var wait time.Duration
	for i, f := range c.filters {
		v := f.Up(pkt)
		if i > 0 && v.Client != nil && !v.End {
			v.Client = c.toDevice(i, v.Client)
		}
		replies = append(replies, v.Client...)
		wait = max(wait, v.Wait)
		if v.End {
			v.Client = replies
			return v
		}
		if v.Broker == nil {
			return Verdict{Client: nilIfEmpty(replies), Wait: wait}
		}
		pkt = v.Broker
	}
	return Verdict{Broker: pkt, Client: nilIfEmpty(replies), Wait: wait}
}

// toDevice runs answers, the packets filter i answers the device with,
// through the filters before it, device side last, as Down runs a broker
// packet; a packet one of them withholds is left out.
func (c *Chain) toDevice(i int, answers []byte) []byte {
	var out []byte
	for len(answers) > 0 {
		h, err := packets.ParseHeader(answers)
		if err != nil || h.Size() > len(answers) {
			return append(out, answers...) // not whole packets: as they are
		}
		pkt := answers[:h.Size():h.Size()]
		answers = answers[h.Size():]
		for j := i - 1; j >= 0 && pkt != nil; j-- {
			if c.filters[j].WantsDown(h.Type) != WantPass {
				pkt = c.filters[j].Down(pkt).Client
			}
		}
		out = append(out, pkt...)
	}
	return out
}

// Malformed is the device side's verdict on a stream that cannot be
// framed.
func (c *Chain) Malformed(err error) Verdict { return c.filters[0].Malformed(err) }

// WantsDown is the most any filter wants of type t: a packet one wants
// whole is kept whole; one wanted by its head (and none whole) by its head.
func (c *Chain) WantsDown(t packets.Type) Want {
	w := WantPass
	for _, f := range c.filters {
		switch fw := f.WantsDown(t); {
		case fw == WantWhole:
			return WantWhole
		case fw == WantHead:
			w = WantHead
		}
	}
	return w
}

// Down runs a whole broker packet through the filters that want its
// type, broker side first.
func (c *Chain) Down(pkt []byte) Verdict {
	t := packets.Type(pkt[0] >> 4)
	var replies []byte
	for i := len(c.filters) - 1; i >= 0; i-- {
		f := c.filters[i]
		if f.WantsDown(t) == WantPass {
			continue
		}
		v := f.Down(pkt)
		replies = append(replies, v.Broker...)
		if v.End || v.Client == nil {
			v.Broker = nilIfEmpty(replies)
			return v
		}
		pkt = v.Client
	}
	return Verdict{Client: pkt, Broker: nilIfEmpty(replies)}
}

// DownHead runs the head of a large broker packet through the filters
// that want its type, once its variable header is complete; each gets the
// head as the filter before it left it (rewritten, perhaps).
func (c *Chain) DownHead(head []byte, size int) (Verdict, bool) {
	if _, _, err := packets.DecodePublishHead(head, c.level); errors.Is(err, packets.ErrTruncated) {
		return Verdict{}, false
	}
	t := packets.Type(head[0] >> 4)
	var replies []byte
	for i := len(c.filters) - 1; i >= 0; i-- {
		f := c.filters[i]
		switch f.WantsDown(t) {
		case WantPass:
			continue
		case WantWhole:
			// Wanted whole, it never comes here: WantsDown said WantWhole.
			return Verdict{End: true, Cause: "malformed"}, true
		}
		v, decided := f.DownHead(head, size)
		if !decided {
			// The contract: a complete variable header decides.
			return Verdict{End: true, Cause: "malformed"}, true
		}
		replies = append(replies, v.Broker...)
		if v.End || v.Client == nil {
			v.Broker = nilIfEmpty(replies)
			return v, true
		}
		size += len(v.Client) - len(head)
		head = v.Client
	}
	return Verdict{Client: head, Broker: nilIfEmpty(replies)}, true
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
