package relay

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// waitFilter holds back every PUBLISH after the first by wait, as a rate
// limit of one PUBLISH per wait does, and counts the PUBLISHes it judged.
type waitFilter struct {
	wait time.Duration
	seen atomic.Int64
}

func (f *waitFilter) Up(pkt []byte) Verdict {
	if packets.Type(pkt[0]>>4) != packets.PUBLISH {
		return Verdict{Broker: pkt}
	}
	if f.seen.Add(1) == 1 {
		return Verdict{Broker: pkt}
	}
	return Verdict{Broker: pkt, Wait: f.wait}
}
func (*waitFilter) Malformed(error) Verdict              { return Verdict{End: true} }
func (*waitFilter) WantsDown(packets.Type) Want          { return WantPass }
func (*waitFilter) Down(pkt []byte) Verdict              { return Verdict{Client: pkt} }
func (*waitFilter) DownHead([]byte, int) (Verdict, bool) { return Verdict{}, false }

// TestWaitHoldsTheDevice: a filter's wait holds the client's packets back
// in order, loses none, spaces them by the wait (a lower bound: the relay
// never sends one early), and the broker's direction keeps flowing
// meanwhile; over a socket and over an opaque reader.
func TestWaitHoldsTheDevice(t *testing.T) {
	for _, kind := range []Kind{Socket, Opaque} {
		t.Run(fmt.Sprint(kind), func(t *testing.T) {
			e := NewEngine()
			defer e.Close()
			cw, devicePeer := tcpPair(t)
			bw, brokerPeer := tcpPair(t)
			f := &waitFilter{wait: 20 * time.Millisecond}
			s := e.NewSession(Config{Client: Endpoint{Conn: cw, Raw: cw, Kind: kind}, Broker: Endpoint{Conn: bw, Raw: bw, Kind: Socket},
				Up: &count{}, Down: &count{}, Filter: f, WriteTimeout: 5 * time.Second})
			defer s.Close()
			if err := s.WriteFirst([]byte{0x20, 2, 0, 0}); err != nil {
				t.Fatal(err)
			}
			s.Start()
			if _, err := io.ReadFull(devicePeer, make([]byte, 4)); err != nil {
				t.Fatal(err)
			}
			const n = 40
			var all []byte
			for i := range n {
				all = append(all, pub("t", 0, fmt.Sprintf("m%03d", i))...)
			}
			start := time.Now()
			go func() { _, _ = devicePeer.Write(all) }() // one write: the relay reads them in one chunk
			// The broker's direction is not held: a PINGRESP reaches the
			// device while the device's PUBLISHes wait.
			if _, err := brokerPeer.Write([]byte{0xD0, 0}); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(devicePeer, make([]byte, 2)); err != nil {
				t.Fatal(err)
			}
			if f.seen.Load() == n {
				t.Fatalf("all %d PUBLISHes judged before the broker's PINGRESP came through", n)
			}
			got := make([]byte, len(all))
			if _, err := io.ReadFull(brokerPeer, got); err != nil || !bytes.Equal(got, all) {
				t.Fatalf("the broker got other bytes: %v", err)
			}
			if took, least := time.Since(start), (n-1)*f.wait; took < least {
				t.Fatalf("%d PUBLISHes, each after a wait of %v, took %v: less than %v", n, f.wait, took, least)
			}
			// After the waits the direction reads again as before.
			if _, err := devicePeer.Write([]byte{0xC0, 0}); err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 2)
			if _, err := io.ReadFull(brokerPeer, b); err != nil || b[0] != 0xC0 {
				t.Fatalf("no PINGREQ after the waits: %x %v", b, err)
			}
		})
	}
}

// TestCloseDuringWait: a session closed while its client's direction
// waits stops the wait: nothing is sent after the close, and no goroutine
// is left behind.
func TestCloseDuringWait(t *testing.T) {
	e := NewEngine()
	defer e.Close()
	before := runtime.NumGoroutine()
	cw, devicePeer := tcpPair(t)
	bw, brokerPeer := tcpPair(t)
	f := &waitFilter{wait: time.Hour}
	ended := make(chan struct{})
	s := e.NewSession(Config{Client: Endpoint{Conn: cw, Raw: cw, Kind: Socket}, Broker: Endpoint{Conn: bw, Raw: bw, Kind: Socket},
		Up: &count{}, Down: &count{}, Filter: f, OnEnd: func() { close(ended) }})
	if err := s.WriteFirst([]byte{0x20, 2, 0, 0}); err != nil {
		t.Fatal(err)
	}
	s.Start()
	first, second := pub("t", 0, "1"), pub("t", 0, "2")
	if _, err := devicePeer.Write(append(first, second...)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(first))
	if _, err := io.ReadFull(brokerPeer, got); err != nil || !bytes.Equal(got, first) {
		t.Fatalf("the first PUBLISH did not go through: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.seen.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the second PUBLISH was never judged")
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.Close()
	<-ended
	if n, err := brokerPeer.Read(make([]byte, 64)); err != io.EOF {
		t.Fatalf("the broker read %d bytes after the close (%v), want EOF", n, err)
	}
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after the close, %d before", n, before)
	}
}

// TestChainRoutesAnswersAndWaits: an answer of a filter on the broker's
// side reaches the device through the filters before it (the SUBACK a
// later filter answers alone is merged by the one before), and the chain
// waits as long as its longest wait.
func TestChainRoutesAnswersAndWaits(t *testing.T) {
	c := NewChain(packets.V311, &markFilter{}, answerFilter{})
	v := c.Up([]byte{0x82, 6, 0, 7, 0, 1, 'a', 0})
	if v.Broker != nil || !bytes.Equal(v.Client, []byte{0x90, 3, 0, 7, 0x01}) {
		t.Fatalf("SUBACK answered by the second filter came out as %x (broker %x), want it marked by the first", v.Client, v.Broker)
	}
	v = c.Up(pub("t", 0, "x"))
	if v.Wait != time.Second || v.Broker == nil {
		t.Fatalf("chain verdict %+v, want the PUBLISH forwarded after 1s", v)
	}
}

// markFilter passes everything up, and turns a SUBACK's code 0x80 into
// 0x01 on its way to the device.
type markFilter struct{}

func (*markFilter) Up(pkt []byte) Verdict   { return Verdict{Broker: pkt} }
func (*markFilter) Malformed(error) Verdict { return Verdict{End: true} }
func (*markFilter) WantsDown(t packets.Type) Want {
	if t == packets.SUBACK {
		return WantWhole
	}
	return WantPass
}
func (*markFilter) Down(pkt []byte) Verdict {
	out := bytes.Clone(pkt)
	out[len(out)-1] = 0x01
	return Verdict{Client: out}
}
func (*markFilter) DownHead([]byte, int) (Verdict, bool) { return Verdict{}, false }

// answerFilter answers every SUBSCRIBE itself with a SUBACK 0x80, and
// makes every PUBLISH wait a second.
type answerFilter struct{}

func (answerFilter) Up(pkt []byte) Verdict {
	switch packets.Type(pkt[0] >> 4) {
	case packets.SUBSCRIBE:
		return Verdict{Client: []byte{0x90, 3, pkt[2], pkt[3], 0x80}}
	case packets.PUBLISH:
		return Verdict{Broker: pkt, Wait: time.Second}
	}
	return Verdict{Broker: pkt}
}
func (answerFilter) Malformed(error) Verdict              { return Verdict{End: true} }
func (answerFilter) WantsDown(packets.Type) Want          { return WantPass }
func (answerFilter) Down(pkt []byte) Verdict              { return Verdict{Client: pkt} }
func (answerFilter) DownHead([]byte, int) (Verdict, bool) { return Verdict{}, false }
