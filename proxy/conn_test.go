package proxy

import (
	"bytes"
	"errors"
	"net"
	"testing"

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
