package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"

	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// TestReadFirstPacket: the CONNACK is read with as few reads as possible;
// what the broker sent behind it is kept, and a huge or cut packet is refused.
func TestReadFirstPacket(t *testing.T) {
	connack := []byte{0x20, 2, 0, 0}
	publish := []byte{0x30, 5, 0, 1, 't', 'h', 'i'}
	big := append([]byte{0x20, 0x80, 0x02}, make([]byte, 256)...) // 256-byte body: more than the first read
	cases := []struct {
		name       string
		writes     [][]byte
		pkt, extra []byte
		err        error
	}{
		{"one read", [][]byte{connack}, connack, nil, nil},
		{"split header", [][]byte{connack[:1], connack[1:]}, connack, nil, nil},
		{"with a packet behind", [][]byte{append(append([]byte{}, connack...), publish...)}, connack, publish, nil},
		{"longer than the first read", [][]byte{big}, big, nil, nil},
		{"cut", [][]byte{connack[:3]}, nil, nil, packets.ErrTruncated},
		{"too large", [][]byte{{0x20, 0xFF, 0xFF, 0x03}}, nil, nil, packets.ErrTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, b := net.Pipe()
			go func() {
				for _, w := range c.writes {
					_, _ = b.Write(w)
				}
				b.Close()
			}()
			pkt, extra, err := readFirstPacket(a, 1024)
			if !errors.Is(err, c.err) || !bytes.Equal(pkt, c.pkt) || !bytes.Equal(extra, c.extra) {
				t.Fatalf("got %x %x %v; want %x %x %v", pkt, extra, err, c.pkt, c.extra, c.err)
			}
			// What was read behind the packet is read first from a prefixConn.
			if len(extra) > 0 {
				pc := &prefixConn{Conn: a, prefix: extra}
				got := make([]byte, 64)
				n, _ := pc.Read(got)
				if !bytes.Equal(got[:n], publish) {
					t.Fatalf("prefixConn read %x", got[:n])
				}
			}
		})
	}
}

// TestKickBeforeConnack: a kick that reaches a session registered but not
// yet acknowledged is delivered right behind the CONNACK (MQTT 5), so no
// kick between the decision and the CONNACK is lost.
func TestKickBeforeConnack(t *testing.T) {
	p, err := New(Config{Backend: Backend{Addr: "127.0.0.1:1"}, Auth: allowAll{}, RevalidateInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	client, device := net.Pipe()
	backend, broker := net.Pipe()
	defer device.Close()
	defer broker.Close()
	s := newSession(p, client, client, backend, authstore.Request{Username: "k", Protocol: packets.V5}, 60)
	if !p.addSession(s) {
		t.Fatal("not registered")
	}
	if got := p.Kick("k"); got != 1 {
		t.Fatalf("kicked %d sessions", got)
	}
	got := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(device); got <- b }()
	if err := s.writeConnack([]byte{0x20, 3, 0, 0, 0}); !errors.Is(err, errKicked) {
		t.Fatalf("writeConnack: %v", err)
	}
	s.close()
	if b := <-got; !bytes.Equal(b, []byte{0x20, 3, 0, 0, 0, 0xE0, 1, 0x98}) {
		t.Fatalf("the device got %x, want CONNACK then DISCONNECT 0x98", b)
	}
	if p.Sessions() != 0 {
		t.Fatal("session still registered")
	}
}

// TestKickRacingBrokerWrites: a kick that lands while broker packets are
// being relayed delivers one DISCONNECT, after whole packets only, and
// nothing after it (the review suspected broker bytes or a second
// DISCONNECT could follow the first).
func TestKickRacingBrokerWrites(t *testing.T) {
	p, err := New(Config{Backend: Backend{Addr: "127.0.0.1:1"}, Auth: allowAll{}, RevalidateInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	pub := packets.AppendPacket(nil, 0x30, append([]byte{0, 3, 'a', '/', 'b', 0}, "payload"...))
	for i := range 300 {
		client, device := net.Pipe()
		backend, broker := net.Pipe()
		s := newSession(p, client, client, backend, authstore.Request{Username: "k", Protocol: packets.V5}, 60)
		if !p.addSession(s) {
			t.Fatal("not registered")
		}
		got := make(chan []byte, 1)
		go func() { b, _ := io.ReadAll(device); got <- b }()
		if err := s.writeConnack([]byte{0x20, 3, 0, 0, 0}); err != nil {
			t.Fatal(err)
		}
		writer := make(chan struct{})
		go func() {
			defer close(writer)
			for s.writeClient(pub) == nil {
			}
		}()
		if i%2 == 0 {
			runtime.Gosched()
		}
		s.kick(packets.AdministrativeAction, "kicked")
		<-writer
		s.close()
		b := <-got
		device.Close()
		broker.Close()
		var seen []byte
		for off := 0; off < len(b); {
			h, err := packets.ParseHeader(b[off:])
			if err != nil || off+h.Size() > len(b) {
				t.Fatalf("round %d: stream cut inside a packet at %d of %d", i, off, len(b))
			}
			seen = append(seen, byte(h.Type))
			off += h.Size()
		}
		n := bytes.Count(seen, []byte{byte(packets.DISCONNECT)})
		if n != 1 || seen[len(seen)-1] != byte(packets.DISCONNECT) {
			t.Fatalf("round %d: packet types %v: want exactly one DISCONNECT, last", i, seen)
		}
	}
}
