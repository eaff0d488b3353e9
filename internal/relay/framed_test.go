package relay

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// stream makes n packets of random types and sizes (some over 64 KiB).
func stream(r *rand.Rand, n int) (all []byte, pkts [][]byte) {
	types := []byte{0x30, 0x32, 0x40, 0x82, 0x90, 0xC0, 0xD0}
	for range n {
		size := r.IntN(300)
		if r.IntN(20) == 0 {
			size = 70000 + r.IntN(5000)
		}
		body := make([]byte, size)
		for i := range body {
			body[i] = byte(r.Uint32())
		}
		p := packets.AppendPacket(nil, types[r.IntN(len(types))], body)
		pkts = append(pkts, p)
		all = append(all, p...)
	}
	return all, pkts
}

// wantIf is a framer's want: t kept whole, the rest passing.
func wantIf(t packets.Type, w Want) func(packets.Type) Want {
	return func(got packets.Type) Want {
		if got == t {
			return w
		}
		return WantPass
	}
}

// TestFramerSplitsAnywhere: whatever the chunking, the packets kept whole
// are exactly the wanted ones, byte for byte, and what streams through
// plus them is the stream, in order.
func TestFramerSplitsAnywhere(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for round := range 200 {
		all, pkts := stream(r, 1+r.IntN(40))
		f := &framer{max: 1 << 20, want: wantIf(packets.PUBLISH, WantWhole)}
		var rebuilt []byte
		var wholes [][]byte
		for rest := all; len(rest) > 0; {
			n := 1 + r.IntN(min(len(rest), []int{1, 7, 300, 70000}[r.IntN(4)]))
			err := f.process(rest[:n], framedFuncs{
				pass: func(p []byte, _ bool) error { rebuilt = append(rebuilt, p...); return nil },
				whole: func(p []byte) error {
					wholes = append(wholes, append([]byte(nil), p...))
					rebuilt = append(rebuilt, p...)
					return nil
				}})
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			rest = rest[n:]
		}
		if !bytes.Equal(rebuilt, all) {
			t.Fatalf("round %d: the stream was not rebuilt", round)
		}
		var want [][]byte
		for _, p := range pkts {
			if p[0]>>4 == byte(packets.PUBLISH) {
				want = append(want, p)
			}
		}
		if len(wholes) != len(want) {
			t.Fatalf("round %d: %d whole packets, want %d", round, len(wholes), len(want))
		}
		for i := range want {
			if !bytes.Equal(wholes[i], want[i]) {
				t.Fatalf("round %d: whole packet %d differs", round, i)
			}
		}
	}
}

// TestFramerHeads: with PUBLISH wanted by its head, whatever the
// chunking, every PUBLISH is judged exactly once, in order (whole when it
// lies in a chunk, else from a head that begins it, no longer than the
// cap, asked again while the filter wants more), and the output is the
// stream with the verdicts applied: a passed packet whole, a replaced
// head followed by the rest of its packet, a withheld packet not at all,
// every other packet streaming through.
func TestFramerHeads(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	marker := []byte{0xAB, 0xCD}
	for round := range 300 {
		all, pkts := stream(r, 1+r.IntN(40))
		var publishes [][]byte
		var want []byte
		for _, p := range pkts {
			if p[0]>>4 != byte(packets.PUBLISH) {
				want = append(want, p...)
				continue
			}
			publishes = append(publishes, p)
			h, _ := packets.ParseHeader(p)
			switch verdictOf(p, h) {
			case 0:
				want = append(want, p...)
			case 1:
				want = append(append(want, marker...), p[h.HeaderLen:]...)
			}
		}
		const max = 4096
		f := &framer{max: max, want: wantIf(packets.PUBLISH, WantHead)}
		var out []byte
		judged := 0
		next := func(got []byte, size int) []byte {
			if judged >= len(publishes) {
				t.Fatalf("round %d: more verdicts than PUBLISHes", round)
			}
			p := publishes[judged]
			if size != len(p) || !bytes.HasPrefix(p, got) {
				t.Fatalf("round %d: PUBLISH %d judged from bytes that do not begin it", round, judged)
			}
			return p
		}
		for rest := all; len(rest) > 0; {
			n := 1 + r.IntN(min(len(rest), []int{1, 7, 300, 70000}[r.IntN(4)]))
			err := f.process(rest[:n], framedFuncs{
				pass: func(p []byte, _ bool) error { out = append(out, p...); return nil },
				whole: func(p []byte) error {
					next(p, len(p))
					judged++
					h, _ := packets.ParseHeader(p)
					switch verdictOf(p, h) {
					case 0:
						out = append(out, p...)
					case 1:
						out = append(append(out, marker...), p[h.HeaderLen:]...)
					}
					return nil
				},
				head: func(head []byte, size int) ([]byte, bool, error) {
					if len(head) > max {
						t.Fatalf("round %d: a head of %d bytes, cap %d", round, len(head), max)
					}
					next(head, size)
					h, err := packets.ParseHeader(head)
					if err != nil || len(head) < h.HeaderLen+3 {
						return nil, false, nil // wants more than the fixed header
					}
					judged++
					switch verdictOf(head, h) {
					case 0:
						return head, true, nil
					case 1:
						return append(append([]byte(nil), marker...), head[h.HeaderLen:]...), true, nil
					}
					return nil, true, nil
				}})
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			rest = rest[n:]
		}
		if judged != len(publishes) {
			t.Fatalf("round %d: %d verdicts for %d PUBLISHes", round, judged, len(publishes))
		}
		if !bytes.Equal(out, want) {
			t.Fatalf("round %d: the output is not the stream with the verdicts applied", round)
		}
	}
}

// verdictOf is TestFramerHeads' verdict on a packet, from its third body
// byte: 0 pass, 1 replace the fixed header, 2 withhold.
func verdictOf(p []byte, h packets.FixedHeader) int {
	if len(p) < h.HeaderLen+3 {
		return 0
	}
	return int(p[h.HeaderLen+2]) % 3
}

// TestFramerCap: a wanted packet over the cap is refused from its header,
// before its bytes are kept; an unwanted one streams through whatever its
// size.
func TestFramerCap(t *testing.T) {
	big := packets.AppendPacket(nil, 0x30, make([]byte, 5000))
	nop := func([]byte) error { return nil }
	f := &framer{max: 4096, want: wantIf(packets.PUBLISH, WantWhole)}
	err := f.process(big[:10], framedFuncs{pass: func([]byte, bool) error { return nil }, whole: nop})
	if !errors.Is(err, packets.ErrTooLarge) || len(f.carry) != 0 {
		t.Fatalf("over the cap: %v, %d bytes kept", err, len(f.carry))
	}
	f = &framer{max: 4096, want: wantIf(packets.SUBACK, WantWhole)}
	var passed int
	if err := f.process(big, framedFuncs{pass: func(p []byte, _ bool) error { passed += len(p); return nil }}); err != nil || passed != len(big) {
		t.Fatalf("unwanted big packet: %v, %d of %d bytes passed", err, passed, len(big))
	}
	f = &framer{max: 4096, want: func(packets.Type) Want { return WantWhole }}
	if err := f.process([]byte{0x30, 0x80, 0x80, 0x80, 0x80, 0x01}, framedFuncs{}); !errors.Is(err, packets.ErrMalformedLength) {
		t.Fatalf("bad remaining length: %v", err)
	}
	// A packet wanted by its head streams past the cap once judged; a head
	// the filter cannot judge within the cap is refused.
	f = &framer{max: 4096, want: wantIf(packets.PUBLISH, WantHead)}
	passed = 0
	decided := framedFuncs{pass: func(p []byte, _ bool) error { passed += len(p); return nil },
		head: func(h []byte, _ int) ([]byte, bool, error) { return h, true, nil }}
	for _, c := range [][]byte{big[:100], big[100:3000], big[3000:]} {
		if err := f.process(c, decided); err != nil {
			t.Fatal(err)
		}
	}
	if passed != len(big) {
		t.Fatalf("a big packet judged from its head: %d of %d bytes passed", passed, len(big))
	}
	f = &framer{max: 4096, want: wantIf(packets.PUBLISH, WantHead)}
	undecided := framedFuncs{head: func([]byte, int) ([]byte, bool, error) { return nil, false, nil }}
	if err := f.process(big[:3000], undecided); err != nil {
		t.Fatal(err)
	}
	if err := f.process(big[3000:], undecided); !errors.Is(err, packets.ErrTooLarge) {
		t.Fatalf("a head past the cap without a verdict: %v", err)
	}
}

// denyFilter withholds PUBLISHes to topic "no", acknowledging them, ends
// the session on a PUBLISH to "end", and rewrites SUBACKs to one 0x80.
type denyFilter struct{}

func (denyFilter) Up(pkt []byte) Verdict {
	if pkt[0]>>4 == byte(packets.PUBLISH) && len(pkt) > 5 {
		switch string(pkt[4:6]) {
		case "no":
			return Verdict{Client: []byte{0x40, 2, 0, 9}}
		case "en":
			return Verdict{End: true, Client: []byte{0xE0, 1, 0x87}}
		}
	}
	return Verdict{Broker: pkt}
}
func (denyFilter) Malformed(error) Verdict { return Verdict{End: true, Client: []byte{0xE0, 1, 0x81}} }
func (denyFilter) WantsDown(t packets.Type) Want {
	switch t {
	case packets.SUBACK:
		return WantWhole
	case packets.PUBLISH:
		return WantHead
	}
	return WantPass
}

// Down rewrites a SUBACK to one 0x80, and withholds a QoS 1 PUBLISH to
// "no", acknowledging it to the broker.
func (f denyFilter) Down(pkt []byte) Verdict {
	if pkt[0]>>4 == byte(packets.SUBACK) {
		return Verdict{Client: []byte{0x90, 3, pkt[2], pkt[3], 0x80}}
	}
	v, _ := f.DownHead(pkt, len(pkt))
	return v
}

func (denyFilter) DownHead(head []byte, _ int) (Verdict, bool) {
	if len(head) < 8 {
		return Verdict{}, false
	}
	if string(head[4:6]) == "no" {
		return Verdict{Broker: []byte{0x40, 2, head[6], head[7]}}, true
	}
	return Verdict{Client: head}, true
}

// TestFilteredSession: over real sockets, a filtered session forwards what
// the filter passes, answers what it withholds, rewrites what it wants
// from the broker, and ends with the filter's last packet.
func TestFilteredSession(t *testing.T) {
	e := NewEngine()
	defer e.Close()
	cw, device := tcpPair(t)
	bw, broker := tcpPair(t)
	ended := make(chan struct{})
	s := e.NewSession(Config{Client: Endpoint{Conn: cw, Raw: cw}, Broker: Endpoint{Conn: bw, Raw: bw}, Up: &count{}, Down: &count{},
		Filter: denyFilter{}, OnEnd: func() { close(ended) }})
	if err := s.WriteFirst([]byte{0x20, 2, 0, 0}); err != nil {
		t.Fatal(err)
	}
	s.Start()
	pub := func(topic string) []byte {
		return packets.AppendPacket(nil, 0x30, append([]byte{0, byte(len(topic))}, topic+"payload"...))
	}
	var up []byte
	for i := range 100 {
		up = append(up, pub("ok")...)
		if i%10 == 0 {
			up = append(up, pub("no")...)
		}
	}
	go func() { _, _ = device.Write(up) }()
	want := bytes.Repeat(pub("ok"), 100)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(broker, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("broker got %d bytes, %v; want the 100 allowed PUBLISHes only", len(got), err)
	}
	// The broker's SUBACK is rewritten; its other packets pass.
	go func() { _, _ = broker.Write(append([]byte{0x90, 3, 0, 7, 0x00}, pub("down")...)) }()
	got = make([]byte, 4+10*4+5+len(pub("down")))
	if _, err := io.ReadFull(device, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:4], []byte{0x20, 2, 0, 0}) || !bytes.Equal(got[4:44], bytes.Repeat([]byte{0x40, 2, 0, 9}, 10)) ||
		!bytes.Equal(got[44:49], []byte{0x90, 3, 0, 7, 0x80}) || !bytes.Equal(got[49:], pub("down")) {
		t.Fatalf("device got %x", got)
	}
	// A broker PUBLISH the filter withholds: the device never sees it,
	// the broker gets the filter's acknowledgement; the next passes.
	withheld := packets.AppendPacket(nil, 0x32, append([]byte{0, 2, 'n', 'o', 0, 7}, "secret"...))
	go func() { _, _ = broker.Write(append(withheld, pub("down")...)) }()
	got = make([]byte, len(pub("down")))
	if _, err := io.ReadFull(device, got); err != nil || !bytes.Equal(got, pub("down")) {
		t.Fatalf("after a withheld PUBLISH the device got %x, %v", got, err)
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(broker, ack); err != nil || !bytes.Equal(ack, []byte{0x40, 2, 0, 7}) {
		t.Fatalf("the broker got %x, %v; want the proxy's PUBACK", ack, err)
	}
	// A PUBLISH the filter ends the session on: its DISCONNECT, then EOF.
	if _, err := device.Write(pub("end")); err != nil {
		t.Fatal(err)
	}
	_ = device.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, _ := io.ReadAll(device)
	if !bytes.Equal(rest, []byte{0xE0, 1, 0x87}) {
		t.Fatalf("after the ending PUBLISH the device got %x", rest)
	}
	<-ended
	var ne net.Error
	if _, err := broker.Read(make([]byte, 1)); err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the broker connection is open: %v", err)
	}
}

// TestFramerBoundaries: what a chunk sends on, read only once the chunk
// has been handled (as the relay writes its batch), is the stream with the
// verdicts applied (a rewritten head keeps the packet's framing), and the
// boundaries the batch records are where a
// Scanner reading the output finds them: the client's side needs no
// second framing. Chunks of one to three bytes split fixed headers in
// every way, twice within a chunk too.
func TestFramerBoundaries(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	want := func(t packets.Type) Want {
		switch t {
		case packets.PUBLISH:
			return WantHead
		case packets.SUBACK:
			return WantWhole
		}
		return WantPass
	}
	for round := range 300 {
		all, _ := stream(r, 1+r.IntN(40))
		f := &framer{max: 1 << 20, want: want}
		var out []byte
		var sc packets.Scanner
		var b batch
		fn := framedFuncs{
			pass: func(p []byte, end bool) error { b.add(p, end); return nil },
			whole: func(p []byte) error {
				h, _ := packets.ParseHeader(p)
				switch {
				case h.Type != packets.PUBLISH || verdictOf(p, h) == 0:
					b.add(p, true)
				case verdictOf(p, h) == 1:
					b.add(flip(p), true)
				}
				return nil
			},
			head: func(head []byte, _ int) ([]byte, bool, error) {
				h, err := packets.ParseHeader(head)
				if err != nil || len(head) < h.HeaderLen+3 {
					return nil, false, nil
				}
				switch verdictOf(head, h) {
				case 0:
					return head, true, nil
				case 1:
					return flip(head), true, nil
				}
				return nil, true, nil
			}}
		for rest := all; len(rest) > 0; {
			n := 1 + r.IntN(min(len(rest), []int{3, 3, 300, 70000}[r.IntN(4)]))
			b.reset()
			if err := f.process(rest[:n], fn); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			rest = rest[n:]
			for i, seg := range b.segs {
				out = append(out, seg...)
				at, err := sc.Feed(seg)
				if err != nil || at != b.bounds[i] {
					t.Fatalf("round %d: a segment's last boundary at %d, the Scanner says %d (%v)", round, b.bounds[i], at, err)
				}
			}
		}
		var expect []byte
		var fr packets.Framer
		for rest := all; len(rest) > 0; {
			p, n, _ := fr.Next(rest)
			rest = rest[n:]
			switch {
			case p.Header.Type != packets.PUBLISH:
				expect = append(expect, p.Bytes...)
			case verdictOf(p.Bytes, p.Header) == 0:
				expect = append(expect, p.Bytes...)
			case verdictOf(p.Bytes, p.Header) == 1:
				expect = append(expect, flip(p.Bytes)...)
			}
		}
		if !bytes.Equal(out, expect) {
			t.Fatalf("round %d: the output is not the stream with the verdicts applied", round)
		}
	}
}

// flip rewrites a packet's first byte: the RETAIN flag of a PUBLISH.
func flip(p []byte) []byte {
	out := bytes.Clone(p)
	out[0] ^= 0x01
	return out
}
