// Package packets is the only place where mqtt-authproxy parses bytes that
// come from devices. It frames MQTT packets with a caller-given size cap
// (enforced before any allocation for the body), decodes and re-encodes
// CONNECT for MQTT 3.1, 3.1.1 and 5, encodes CONNACK and DISCONNECT, and
// scans a byte stream for packet boundaries without decoding packets.
//
// Every decoder works on a []byte with explicit offsets and a bounds check on
// every field. Validation follows what the MQTT 3.1.1 and 5.0 specifications
// require of a server; each check cites its rule.
package packets

import (
	"errors"
	"fmt"
	"io"
)

// Type is an MQTT control packet type (the high nibble of the first byte).
type Type byte

// Control packet types.
const (
	CONNECT     Type = 1
	CONNACK     Type = 2
	PUBLISH     Type = 3
	PUBACK      Type = 4
	PUBREC      Type = 5
	PUBREL      Type = 6
	PUBCOMP     Type = 7
	SUBSCRIBE   Type = 8
	SUBACK      Type = 9
	UNSUBSCRIBE Type = 10
	UNSUBACK    Type = 11
	PINGREQ     Type = 12
	PINGRESP    Type = 13
	DISCONNECT  Type = 14
	AUTH        Type = 15
)

var typeNames = [...]string{"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL",
	"PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH"}

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", byte(t))
}

// MaxRemainingLength is the largest remaining length the variable byte
// integer can express (four bytes) [MQTT-1.5.5].
const MaxRemainingLength = 268_435_455

// MaxHeaderLen is the longest fixed header: one type byte and four length bytes.
const MaxHeaderLen = 5

// Framing errors. They are returned wrapped; test with errors.Is.
var (
	// ErrTooLarge: the packet's declared size is over the caller's cap. It is
	// reported from the fixed header alone, before the body is read.
	ErrTooLarge = errors.New("packets: packet larger than the size cap")
	// ErrMalformedLength: the remaining length is more than four bytes or
	// not minimally encoded [MQTT-1.5.5-1].
	ErrMalformedLength = errors.New("packets: malformed remaining length")
	// ErrTruncated: the stream or buffer ended inside a packet.
	ErrTruncated = errors.New("packets: truncated packet")
)

// FixedHeader is the first part of every MQTT packet.
type FixedHeader struct {
	Type            Type
	Flags           byte // low nibble of the first byte
	RemainingLength int  // length of variable header plus payload
	HeaderLen       int  // bytes taken by the fixed header itself (2..5)
}

// Size is the whole packet's size in bytes, fixed header included.
func (h FixedHeader) Size() int { return h.HeaderLen + h.RemainingLength }

// decodeVarint reads a variable byte integer [MQTT-1.5.5] from b. It returns
// ErrTruncated when b ends before the last byte, and ErrMalformedLength for a
// fifth continuation byte or a non-minimal encoding [MQTT-1.5.5-1].
func decodeVarint(b []byte) (value, n int, err error) {
	for i := 0; i < 4; i++ {
		if i >= len(b) {
			return 0, 0, ErrTruncated
		}
		c := b[i]
		value |= int(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			if i > 0 && c == 0 {
				return 0, 0, ErrMalformedLength // non-minimal encoding
			}
			return value, i + 1, nil
		}
	}
	return 0, 0, ErrMalformedLength
}

// appendVarint appends v as a minimally encoded variable byte integer.
// v must be in 0..MaxRemainingLength.
func appendVarint(dst []byte, v int) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v > 0 {
			c |= 0x80
		}
		dst = append(dst, c)
		if v == 0 {
			return dst
		}
	}
}

// AppendPacket appends a packet with the given first byte (type and flags)
// and body, the remaining length encoded in front of the body.
func AppendPacket(dst []byte, first byte, body []byte) []byte {
	return append(appendVarint(append(dst, first), len(body)), body...)
}

func varintLen(v int) int {
	switch {
	case v < 1<<7:
		return 1
	case v < 1<<14:
		return 2
	case v < 1<<21:
		return 3
	default:
		return 4
	}
}

// ParseHeader decodes the fixed header at the start of b. It returns
// ErrTruncated when b holds less than a whole fixed header (not the body:
// the caller compares Size with len(b)).
func ParseHeader(b []byte) (FixedHeader, error) {
	if len(b) < 2 {
		return FixedHeader{}, ErrTruncated
	}
	rl, n, err := decodeVarint(b[1:])
	if err != nil {
		return FixedHeader{}, err
	}
	return FixedHeader{Type: Type(b[0] >> 4), Flags: b[0] & 0x0f, RemainingLength: rl, HeaderLen: 1 + n}, nil
}

// ReadPacket reads one whole packet from r and returns it, fixed header
// included, with its decoded header. maxSize caps the whole packet: a larger
// declared size returns ErrTooLarge before anything is allocated for the
// body, and nothing past the fixed header is read. The buffer grows with
// the bytes that arrive (from readChunk, doubling), never ahead of them to
// the declared size, so a header that announces a large packet costs no
// memory until its bytes come. The returned slice is owned by the caller.
func ReadPacket(r io.Reader, maxSize int) (FixedHeader, []byte, error) {
	var hdr [MaxHeaderLen]byte
	n := 0
	for {
		if _, err := io.ReadFull(r, hdr[n:n+1]); err != nil {
			if n > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return FixedHeader{}, nil, fmt.Errorf("%w: %w", ErrTruncated, err)
			}
			return FixedHeader{}, nil, err
		}
		n++
		if n < 2 {
			continue
		}
		h, err := ParseHeader(hdr[:n])
		if errors.Is(err, ErrTruncated) && n < MaxHeaderLen {
			continue
		}
		if err != nil {
			return FixedHeader{}, nil, err
		}
		if h.Size() > maxSize {
			return h, nil, fmt.Errorf("%w: %s of %d bytes, cap %d", ErrTooLarge, h.Type, h.Size(), maxSize)
		}
		pkt := make([]byte, n, min(h.Size(), readChunk))
		copy(pkt, hdr[:n])
		for len(pkt) < h.Size() {
			if len(pkt) == cap(pkt) {
				grown := make([]byte, len(pkt), min(h.Size(), 2*cap(pkt)))
				copy(grown, pkt)
				pkt = grown
			}
			m, err := r.Read(pkt[len(pkt):cap(pkt)])
			pkt = pkt[:len(pkt)+m]
			if err != nil && len(pkt) < h.Size() {
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
					return h, nil, fmt.Errorf("%w: %s: %w", ErrTruncated, h.Type, io.ErrUnexpectedEOF)
				}
				return h, nil, err
			}
		}
		return h, pkt, nil
	}
}

// readChunk is ReadPacket's first buffer: most packets fit in it.
const readChunk = 2048

// Scanner follows packet boundaries in a byte stream fed to it in arbitrary
// chunks, without decoding or buffering packets. The relay uses it to know
// whether the bytes it has forwarded end on a packet boundary, so that a
// packet it injects (a DISCONNECT) never lands inside another packet.
type Scanner struct {
	hdr     [MaxHeaderLen]byte
	hdrLen  int   // bytes of a partial fixed header held in hdr
	remain  int   // body bytes of the current packet not yet seen
	Packets int64 // whole packets seen
	Last    FixedHeader
	err     error
}

// AtBoundary reports whether every byte fed so far belongs to a whole packet.
func (s *Scanner) AtBoundary() bool { return s.hdrLen == 0 && s.remain == 0 && s.err == nil }

// Feed advances the scanner over p. It returns the length of the longest
// prefix of p after which the stream is at a packet boundary (0 when no
// packet ends inside p), and a framing error once the stream is malformed;
// the error is sticky.
func (s *Scanner) Feed(p []byte) (boundary int, err error) {
	if s.err != nil {
		return 0, s.err
	}
	i := 0
	for i < len(p) {
		if s.remain > 0 {
			take := min(s.remain, len(p)-i)
			s.remain -= take
			i += take
			if s.remain == 0 {
				s.Packets++
				boundary = i
			}
			continue
		}
		s.hdr[s.hdrLen] = p[i]
		s.hdrLen++
		i++
		if s.hdrLen < 2 {
			continue
		}
		h, err := ParseHeader(s.hdr[:s.hdrLen])
		if errors.Is(err, ErrTruncated) && s.hdrLen < MaxHeaderLen {
			continue
		}
		if err != nil {
			s.err = err
			return boundary, err
		}
		s.hdrLen = 0
		s.Last = h
		s.remain = h.RemainingLength
		if s.remain == 0 {
			s.Packets++
			boundary = i
		}
	}
	return boundary, nil
}
