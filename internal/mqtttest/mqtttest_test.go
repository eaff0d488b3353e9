package mqtttest

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// The encoders write the bytes the hand-written ones of internal/testenv
// and the bench wrote, reproduced here as the reference.
func refString(s string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(s))), s...)
}

func refProps(level packets.Level) []byte {
	if level == packets.V5 {
		return []byte{0}
	}
	return nil
}

func refPublish(level packets.Level, topic string, payload []byte, qos byte, retain bool, id uint16) []byte {
	first := byte(0x30) | qos<<1
	if retain {
		first |= 1
	}
	body := refString(topic)
	if qos > 0 {
		body = binary.BigEndian.AppendUint16(body, id)
	}
	body = append(append(body, refProps(level)...), payload...)
	return packets.AppendPacket(nil, first, body)
}

func refSubscribe(level packets.Level, id uint16, filter string, qos byte) []byte {
	body := append(binary.BigEndian.AppendUint16(nil, id), refProps(level)...)
	return packets.AppendPacket(nil, 0x82, append(append(body, refString(filter)...), qos))
}

func TestEncodersMatchTheReference(t *testing.T) {
	prefix := []byte("prefix")
	for _, lv := range []packets.Level{packets.V31, packets.V311, packets.V5} {
		for _, size := range []int{0, 5, 120, 200, 20000, 3 << 20} {
			payload := bytes.Repeat([]byte{'x'}, size)
			for qos := byte(0); qos < 3; qos++ {
				for _, retain := range []bool{false, true} {
					want := refPublish(lv, "a/b", payload, qos, retain, 0x1234)
					if got := AppendPublish(nil, lv, "a/b", payload, qos, retain, 0x1234); !bytes.Equal(got, want) {
						t.Fatalf("PUBLISH %v size %d qos %d retain %v:\n got % x\nwant % x", lv, size, qos, retain, head(got), head(want))
					}
					got := AppendPublish(bytes.Clone(prefix), lv, "a/b", payload, qos, retain, 0x1234)
					if !bytes.Equal(got, append(bytes.Clone(prefix), want...)) {
						t.Fatalf("PUBLISH after a prefix %v size %d: % x", lv, size, head(got))
					}
				}
			}
		}
		if got, want := AppendSubscribe(nil, lv, 9, "s/#", 1), refSubscribe(lv, 9, "s/#", 1); !bytes.Equal(got, want) {
			t.Fatalf("SUBSCRIBE %v: % x, want % x", lv, got, want)
		}
	}
	if got := AppendPuback(prefix[:1], 0x0102); !bytes.Equal(got, []byte{'p', 0x40, 2, 1, 2}) {
		t.Fatalf("PUBACK % x", got)
	}
}

func head(b []byte) []byte { return b[:min(len(b), 16)] }

// TestAppendPublishReusesItsBuffer: the bench's QoS 1 loop encodes each
// PUBLISH into one buffer without allocating.
func TestAppendPublishReusesItsBuffer(t *testing.T) {
	payload := make([]byte, 1024)
	var buf []byte
	id := uint16(0)
	allocs := testing.AllocsPerRun(100, func() {
		id++
		buf = AppendPublish(buf[:0], packets.V5, "bench/q1/3", payload, 1, false, id)
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per PUBLISH", allocs)
	}
}

func TestClientRoundTrip(t *testing.T) {
	for _, lv := range []packets.Level{packets.V311, packets.V5} {
		a, b := net.Pipe()
		sender, receiver := &Client{Conn: a, Level: lv}, &Client{Conn: b, Level: lv}
		done := make(chan error, 1)
		go func() { done <- sender.Publish("t/1", []byte("hello"), 1, false) }()
		m, err := receiver.ReadPublish(5 * time.Second)
		if err != nil || m.Topic != "t/1" || string(m.Payload) != "hello" || m.QoS != 1 {
			t.Fatalf("%v: %+v %v", lv, m, err)
		}
		if err := <-done; err != nil {
			t.Fatalf("%v: PUBACK: %v", lv, err)
		}
		go sender.Disconnect()
		h, _, err := receiver.ReadPacket(5 * time.Second)
		if err != nil || h.Type != packets.DISCONNECT {
			t.Fatalf("%v: %+v %v", lv, h, err)
		}
		receiver.Conn.Close()
	}
}
