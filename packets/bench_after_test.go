package packets

import (
	"bytes"
	"testing"
)

// A 1 KiB payload PUBLISH as the relay sees them: 3.1.1 QoS 1, and 5 QoS 1
// with the properties a device typically sends (a topic alias setting its
// mapping, a message expiry, a content type and a user property).
var (
	payloadKiB    = bytes.Repeat([]byte{'p'}, 1024)
	publish311KiB = pkt(0x32, s("devices/0001/telemetry"), b(0x12, 0x34), payloadKiB)
	publish5KiB   = pkt(0x32, s("devices/0001/telemetry"), b(0x12, 0x34),
		props(b(0x23, 0, 7), b(0x02, 0, 0, 0x0E, 0x10), b(0x03), s("application/cbor"), b(0x26), s("fw"), s("1.2.3")),
		payloadKiB)
)

func benchDecodePublish(b *testing.B, pkt []byte, level Level) {
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	var alias uint16
	for b.Loop() {
		p, err := DecodePublish(pkt, level)
		if err != nil {
			b.Fatal(err)
		}
		a, _ := p.TopicAlias()
		alias += a
	}
	_ = alias
}

func BenchmarkDecodePublish311(b *testing.B) { benchDecodePublish(b, publish311KiB, V311) }
func BenchmarkDecodePublish5(b *testing.B)   { benchDecodePublish(b, publish5KiB, V5) }

func benchAppendPublish(b *testing.B, pkt []byte, level Level) {
	p, err := DecodePublish(pkt, level)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 2048)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		if buf, err = AppendPublish(buf[:0], level, &p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendPublish311(b *testing.B) { benchAppendPublish(b, publish311KiB, V311) }
func BenchmarkAppendPublish5(b *testing.B)   { benchAppendPublish(b, publish5KiB, V5) }
