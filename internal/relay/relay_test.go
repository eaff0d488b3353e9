package relay

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

type count struct{ n atomic.Int64 }

func (c *count) Add(f float64) { c.n.Add(int64(f)) }

// pipeSession is a session over net.Pipe ends: device and broker are the
// far ends the test drives.
func pipeSession(t *testing.T, e *Engine) (s *Session, device, broker net.Conn, ended chan struct{}) {
	t.Helper()
	client, device := net.Pipe()
	backend, broker := net.Pipe()
	t.Cleanup(func() { device.Close(); broker.Close() })
	ended = make(chan struct{})
	s = e.NewSession(Config{Client: Endpoint{Conn: client, Raw: client, Kind: Opaque}, Broker: Endpoint{Conn: backend, Raw: backend, Kind: Opaque},
		Up: &count{}, Down: &count{}, OnEnd: func() { close(ended) }})
	return s, device, broker, ended
}

// packetTypes splits a stream into packets, failing on a cut one.
func packetTypes(t *testing.T, b []byte) []byte {
	t.Helper()
	var seen []byte
	for off := 0; off < len(b); {
		h, err := packets.ParseHeader(b[off:])
		if err != nil || off+h.Size() > len(b) {
			t.Fatalf("stream cut inside a packet at %d of %d", off, len(b))
		}
		seen = append(seen, byte(h.Type))
		off += h.Size()
	}
	return seen
}

var disconnect98 = []byte{0xE0, 1, 0x98}

// TestEndBeforeFirstPacket: an end requested before the CONNACK is
// written is delivered right behind it, so no kick between the decision
// and the CONNACK is lost.
func TestEndBeforeFirstPacket(t *testing.T) {
	e := NewEngine()
	defer e.Close()
	s, device, _, ended := pipeSession(t, e)
	if !s.EndWith(disconnect98, time.Second) {
		t.Fatal("the first end was not the one")
	}
	if s.EndWith([]byte{0xE0, 1, 0x8B}, time.Second) {
		t.Fatal("a second end took effect")
	}
	got := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(device); got <- b }()
	if err := s.WriteFirst([]byte{0x20, 3, 0, 0, 0}); err != ErrEnded {
		t.Fatalf("WriteFirst: %v", err)
	}
	s.Close()
	<-ended
	if b := <-got; !bytes.Equal(b, []byte{0x20, 3, 0, 0, 0, 0xE0, 1, 0x98}) {
		t.Fatalf("the device got %x, want CONNACK then the first end's DISCONNECT", b)
	}
}

// TestEndRacingBrokerWrites: an end that lands while broker packets are
// being relayed delivers one DISCONNECT, after whole packets only, and
// nothing after it.
func TestEndRacingBrokerWrites(t *testing.T) {
	e := NewEngine()
	defer e.Close()
	pub := packets.AppendPacket(nil, 0x30, append([]byte{0, 3, 'a', '/', 'b', 0}, "payload"...))
	for i := range 300 {
		s, device, _, ended := pipeSession(t, e)
		got := make(chan []byte, 1)
		go func() { b, _ := io.ReadAll(device); got <- b }()
		if err := s.WriteFirst([]byte{0x20, 3, 0, 0, 0}); err != nil {
			t.Fatal(err)
		}
		writer := make(chan struct{})
		go func() {
			defer close(writer)
			// Whole packets, and packets split in two writes.
			for j := 0; ; j++ {
				var err error
				if j%3 == 0 {
					if err = s.writeClient(pub[:5]); err == nil {
						err = s.writeClient(pub[5:])
					}
				} else {
					err = s.writeClient(pub)
				}
				if err != nil {
					return
				}
			}
		}()
		if i%2 == 0 {
			runtime.Gosched()
		}
		s.EndWith(disconnect98, time.Second)
		<-writer
		s.Close()
		<-ended
		seen := packetTypes(t, <-got)
		if n := bytes.Count(seen, []byte{byte(packets.DISCONNECT)}); n != 1 || seen[len(seen)-1] != byte(packets.DISCONNECT) {
			t.Fatalf("round %d: packet types %v: want exactly one DISCONNECT, last", i, seen)
		}
	}
}

// TestInjectBetweenPackets: packets injected while the broker's packets
// flow, whole or split across writes, land between two of them, in the
// order given, and the relayed bytes are all there.
func TestInjectBetweenPackets(t *testing.T) {
	e := NewEngine()
	defer e.Close()
	s, device, _, _ := pipeSession(t, e)
	var want bytes.Buffer
	got := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(device); got <- b }()
	if err := s.WriteFirst([]byte{0x20, 2, 0, 0}); err != nil {
		t.Fatal(err)
	}
	pub := packets.AppendPacket(nil, 0x30, append([]byte{0, 1, 't'}, make([]byte, 300)...))
	injected := make(chan struct{})
	go func() {
		defer close(injected)
		for i := range 50 {
			_ = s.Inject([]byte{0x90, 3, 0, byte(i), 0}) // SUBACK
		}
	}()
	for i := range 200 {
		var err error
		if i%2 == 0 {
			err = s.writeClient(pub[:7])
			if err == nil {
				err = s.writeClient(pub[7:])
			}
		} else {
			err = s.writeClient(pub)
		}
		if err != nil {
			t.Fatal(err)
		}
		want.Write(pub)
	}
	<-injected
	// The last injections wait for a boundary: the stream is at one.
	s.mu.Lock()
	pending := len(s.inject)
	s.mu.Unlock()
	if pending != 0 {
		t.Fatalf("%d injected packets still waiting at a boundary", pending)
	}
	s.Close()
	b := <-got
	types := packetTypes(t, b[4:])
	var subacks, pubs int
	var relayed bytes.Buffer
	for off := 4; off < len(b); {
		h, _ := packets.ParseHeader(b[off:])
		switch h.Type {
		case packets.SUBACK:
			if int(b[off+3]) != subacks {
				t.Fatalf("SUBACK %d out of order", b[off+3])
			}
			subacks++
		case packets.PUBLISH:
			pubs++
			relayed.Write(b[off : off+h.Size()])
		}
		off += h.Size()
	}
	if subacks != 50 || pubs != 200 || !bytes.Equal(relayed.Bytes(), want.Bytes()) {
		t.Fatalf("%d SUBACKs, %d PUBLISHes (types %v...), relayed bytes equal: %v", subacks, pubs, types[:min(10, len(types))], bytes.Equal(relayed.Bytes(), want.Bytes()))
	}
}

// bufferedConn is a connection with a bufio.Reader in front: bytes can
// sit in user space, so its Kind is Opaque.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// TestRelayOverTCP: a session over real sockets moves bytes both ways,
// whatever the source's Kind, and counts them; an Opaque source whose
// reader already holds bytes at start loses none.
func TestRelayOverTCP(t *testing.T) {
	for _, kind := range []Kind{Socket, Opaque} {
		e := NewEngine()
		cw, devicePeer := tcpPair(t)
		bw, brokerPeer := tcpPair(t)
		client := Endpoint{Conn: cw, Raw: cw, Kind: Socket}
		if kind == Opaque {
			// The device's first bytes are already in the reader's buffer.
			_, _ = devicePeer.Write([]byte("early"))
			r := bufio.NewReader(cw)
			if _, err := r.Peek(5); err != nil {
				t.Fatal(err)
			}
			client = Endpoint{Conn: bufferedConn{cw, r}, Raw: cw, Kind: Opaque}
		}
		up, down := &count{}, &count{}
		ended := make(chan struct{})
		s := e.NewSession(Config{Client: client, Broker: Endpoint{Conn: bw, Raw: bw, Kind: Socket}, Up: up, Down: down,
			WriteTimeout: 5 * time.Second, OnEnd: func() { close(ended) }})
		if err := s.WriteFirst([]byte{0x20, 2, 0, 0}); err != nil {
			t.Fatal(err)
		}
		s.Start()
		ack := make([]byte, 4)
		if _, err := io.ReadFull(devicePeer, ack); err != nil {
			t.Fatal(err)
		}
		big := make([]byte, 1<<20)
		_, _ = rand.Read(big)
		go func() { _, _ = devicePeer.Write(big) }()
		wantUp := big
		if kind == Opaque {
			wantUp = append([]byte("early"), big...)
		}
		got := make([]byte, len(wantUp))
		if _, err := io.ReadFull(brokerPeer, got); err != nil || !bytes.Equal(got, wantUp) {
			t.Fatalf("%v: upstream bytes differ: %v", kind, err)
		}
		// Downstream must be MQTT: the relay follows its packet boundaries.
		var stream []byte
		for len(stream) < 300000 {
			stream = packets.AppendPacket(stream, 0x30, append([]byte{0, 1, 't'}, big[len(stream):len(stream)+997]...))
		}
		go func() { _, _ = brokerPeer.Write(stream) }()
		back := make([]byte, len(stream))
		if _, err := io.ReadFull(devicePeer, back); err != nil || !bytes.Equal(back, stream) {
			t.Fatalf("%v: downstream bytes differ: %v", kind, err)
		}
		brokerPeer.Close()
		select {
		case <-ended:
		case <-time.After(5 * time.Second):
			t.Fatalf("%v: the session did not end when the broker closed", kind)
		}
		if up.n.Load() != int64(len(wantUp)) || down.n.Load() != int64(len(stream)) {
			t.Fatalf("%v: counted %d up, %d down", kind, up.n.Load(), down.n.Load())
		}
		e.Close()
	}
}

// TestEngineCloseStopsItsLoop: closing an engine ends its epoll loop, so
// an engine per proxy leaves nothing behind.
func TestEngineCloseStopsItsLoop(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 20 {
		NewEngine().Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after closing 20 engines, %d before", n, before)
	}
}

// TestIdleDirectionsParkAndWake: on the fast path a session idle for
// idleAfter hands both directions to the reactor (no goroutine of its own
// left), and bytes that arrive later wake them.
func TestIdleDirectionsParkAndWake(t *testing.T) {
	if !fastPath {
		t.Skip("no reactor on this platform")
	}
	e := NewEngine()
	defer e.Close()
	cw, devicePeer := tcpPair(t)
	bw, brokerPeer := tcpPair(t)
	s := e.NewSession(Config{Client: Endpoint{Conn: cw, Raw: cw}, Broker: Endpoint{Conn: bw, Raw: bw}, Up: &count{}, Down: &count{}})
	defer s.Close()
	if err := s.WriteFirst([]byte{0x20, 2, 0, 0}); err != nil {
		t.Fatal(err)
	}
	s.Start()
	deadline := time.Now().Add(10 * time.Second)
	for e.parked.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d directions parked after 10 s idle", e.parked.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := devicePeer.Write([]byte{0xC0, 0}); err != nil { // PINGREQ
		t.Fatal(err)
	}
	b := make([]byte, 2)
	if _, err := io.ReadFull(brokerPeer, b); err != nil || b[0] != 0xC0 {
		t.Fatalf("parked upstream did not wake: %x %v", b, err)
	}
	if _, err := brokerPeer.Write([]byte{0xD0, 0}); err != nil { // PINGRESP
		t.Fatal(err)
	}
	b = make([]byte, 6)
	if _, err := io.ReadFull(devicePeer, b); err != nil || !bytes.Equal(b, []byte{0x20, 2, 0, 0, 0xD0, 0}) {
		t.Fatalf("parked downstream did not wake: %x %v", b, err)
	}
	if got := e.TakeParked(); got != 2 {
		t.Fatalf("TakeParked = %d, want 2", got)
	}
	if e.TakeParked() != 0 {
		t.Fatal("TakeParked did not reset")
	}
}
