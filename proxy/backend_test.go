package proxy

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// TestBrokerConnack: the broker's CONNACK is read with as few reads as
// possible (a packets.Reader); what the broker sent behind it is kept for
// the relay to send first, and a huge or cut CONNACK is refused.
func TestBrokerConnack(t *testing.T) {
	connack := []byte{0x20, 3, 0, 0, 0}
	publish := []byte{0x30, 6, 0, 1, 't', 0, 'h', 'i'}
	// A v5 CONNACK longer than the first read: a 600-byte reason string.
	big := append([]byte{0x20, 0xDF, 0x04, 0, 0, 0xDB, 0x04, 0x1F, 0x02, 0x58}, bytes.Repeat([]byte{'r'}, 600)...)
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
		{"too large", [][]byte{{0x20, 0xFF, 0xFF, 0x7F}}, nil, nil, packets.ErrTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go func() {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				defer conn.Close()
				if _, _, err := packets.ReadPacket(conn, 1<<16); err != nil {
					return
				}
				for _, w := range c.writes {
					_, _ = conn.Write(w)
					time.Sleep(5 * time.Millisecond) // separate segments: the split cases
				}
			}()
			b := Backend{Addr: l.Addr().String(), DialTimeout: 5 * time.Second}
			bc, err := b.connect(context.Background(), &packets.Connect{ProtocolName: "MQTT", ProtocolLevel: packets.V5, CleanStart: true, ClientID: "x"})
			var pkt, extra []byte
			if err == nil {
				pkt, extra = bc.ConnackPacket, bc.Early
				bc.Conn.Close()
			}
			if !errors.Is(err, c.err) || !bytes.Equal(pkt, c.pkt) || !bytes.Equal(extra, c.extra) {
				t.Fatalf("got %x %x %v; want %x %x %v", pkt, extra, err, c.pkt, c.extra, c.err)
			}
		})
	}
}
