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

// TestFramerSplitsAnywhere: whatever the chunking, the packets kept whole
// are exactly the wanted ones, byte for byte, and what streams through
// plus them is the stream, in order.
func TestFramerSplitsAnywhere(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for round := range 200 {
		all, pkts := stream(r, 1+r.IntN(40))
		f := &framer{max: 1 << 20, wantWhole: func(t packets.Type) bool { return t == packets.PUBLISH }}
		var rebuilt []byte
		var wholes [][]byte
		for rest := all; len(rest) > 0; {
			n := 1 + r.IntN(min(len(rest), []int{1, 7, 300, 70000}[r.IntN(4)]))
			err := f.process(rest[:n],
				func(p []byte) error { rebuilt = append(rebuilt, p...); return nil },
				func(p []byte) error {
					wholes = append(wholes, append([]byte(nil), p...))
					rebuilt = append(rebuilt, p...)
					return nil
				})
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

// TestFramerCap: a wanted packet over the cap is refused from its header,
// before its bytes are kept; an unwanted one streams through whatever its
// size.
func TestFramerCap(t *testing.T) {
	big := packets.AppendPacket(nil, 0x30, make([]byte, 5000))
	f := &framer{max: 4096, wantWhole: func(t packets.Type) bool { return t == packets.PUBLISH }}
	err := f.process(big[:10], func([]byte) error { return nil }, func([]byte) error { return nil })
	if !errors.Is(err, packets.ErrTooLarge) || len(f.carry) != 0 {
		t.Fatalf("over the cap: %v, %d bytes kept", err, len(f.carry))
	}
	f = &framer{max: 4096, wantWhole: func(t packets.Type) bool { return t == packets.SUBACK }}
	var passed int
	if err := f.process(big, func(p []byte) error { passed += len(p); return nil }, nil); err != nil || passed != len(big) {
		t.Fatalf("unwanted big packet: %v, %d of %d bytes passed", err, passed, len(big))
	}
	f = &framer{max: 4096, wantWhole: func(packets.Type) bool { return true }}
	if err := f.process([]byte{0x30, 0x80, 0x80, 0x80, 0x80, 0x01}, nil, nil); !errors.Is(err, packets.ErrMalformedLength) {
		t.Fatalf("bad remaining length: %v", err)
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
func (denyFilter) Malformed(error) Verdict       { return Verdict{End: true, Client: []byte{0xE0, 1, 0x81}} }
func (denyFilter) WantsDown(t packets.Type) bool { return t == packets.SUBACK }
func (denyFilter) Down(pkt []byte) []byte        { return []byte{0x90, 3, pkt[2], pkt[3], 0x80} }

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
