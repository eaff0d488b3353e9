package packets

import (
	"bytes"
	"testing"
)

func benchDecode(b *testing.B, pkt []byte) {
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		if _, err := DecodeConnect(pkt); err != nil {
			b.Fatal(err)
		}
	}
}

func benchEncode(b *testing.B, pkt []byte) {
	c, err := DecodeConnect(pkt)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		if buf, err = AppendConnect(buf[:0], c); err != nil {
			b.Fatal(err)
		}
	}
}

// typical311 is a 3.1.1 CONNECT with user, password and will; typical5 a v5
// one with session expiry, receive maximum and a user property.
var (
	typical311 = validConnects[2].pkt
	typical5   = pkt(0x10, s("MQTT"), b(5), b(0xC2), b(0, 60),
		props(b(0x11, 0, 0, 0x0E, 0x10), b(0x21, 0, 20), b(0x26), s("fw"), s("1.2.3")),
		s("device-0001"), s("device-0001"), s("a-long-enough-password"))
)

func BenchmarkDecodeConnect311(b *testing.B) { benchDecode(b, typical311) }
func BenchmarkDecodeConnect5(b *testing.B)   { benchDecode(b, typical5) }
func BenchmarkEncodeConnect311(b *testing.B) { benchEncode(b, typical311) }
func BenchmarkEncodeConnect5(b *testing.B)   { benchEncode(b, typical5) }

func BenchmarkScanner(b *testing.B) {
	stream := make([]byte, 0, 64<<10)
	for len(stream) < 60<<10 {
		stream = append(stream, pkt(0x30, s("a/b"), make([]byte, 1000))...)
	}
	b.SetBytes(int64(len(stream)))
	var sc Scanner
	for b.Loop() {
		if _, err := sc.Feed(stream); err != nil {
			b.Fatal(err)
		}
	}
}

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
