// Package packets is the only place where mqtt-authproxy parses bytes that
// come from devices, and the one owner of MQTT syntax. It frames MQTT
// packets with a caller-given size cap (enforced before any allocation for
// the body), decodes and re-encodes CONNECT for MQTT 3.1, 3.1.1 and 5,
// encodes and decodes CONNACK, decodes and encodes the packets after
// CONNECT that the relay judges (PUBLISH, SUBSCRIBE, SUBACK, UNSUBSCRIBE,
// UNSUBACK, PUBACK to PUBCOMP, DISCONNECT), follows a byte stream's packet
// boundaries without buffering packets (Framer, Scanner), and validates
// topic filters and shared subscriptions (ValidateFilter, SplitShared).
//
// Every decoder reads with one field reader: a []byte with explicit
// offsets and a bounds check on every field. MQTT 5 properties are checked
// by one validator, from one table of what each packet may carry.
// Validation follows what the MQTT 3.1.1 and 5.0 specifications require of
// a server; each check cites its rule.
package packets

import (
	"errors"
	"fmt"
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

// maxHeaderLen is the longest fixed header: one type byte and four length bytes.
const maxHeaderLen = 5

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

// headerNeed parses the fixed header at the start of b, which may hold only
// part of it. need > 0 says b ends inside the header and how many more bytes
// are needed, at least, to get further; otherwise h is the header or err is
// ErrMalformedLength. Reader and Scanner both frame with it.
func headerNeed(b []byte) (h FixedHeader, need int, err error) {
	h, err = ParseHeader(b)
	if err == ErrTruncated { // only below maxHeaderLen bytes
		if len(b) < 2 {
			return h, 2 - len(b), nil
		}
		return h, 1, nil
	}
	return h, 0, err
}

// Framer finds the packets of a byte stream fed to it in chunks of any
// size, without buffering or decoding them: it holds only a fixed header
// split across chunks. Scanner, and the relay's framing of a filtered
// session, follow a stream with it; Reader, which keeps the bytes it
// frames, parses headers the same way (headerNeed).
type Framer struct {
	part    [maxHeaderLen]byte // a fixed header split across chunks, so far
	partLen int
	whole   [maxHeaderLen]byte // the last such header, once whole
	h       FixedHeader        // the packet in progress
	remain  int                // bytes of it not yet taken
	err     error
}

// A Piece is what Framer.Next took from a chunk: bytes of one packet.
type Piece struct {
	Header FixedHeader // the packet's
	// Bytes are a sub-slice of the chunk; or, when the packet's fixed
	// header was split across chunks, that header, held by the Framer
	// (valid until it completes another split header, which takes a later
	// chunk).
	Bytes []byte
	First bool // Bytes begin the packet: its fixed header comes first
	Last  bool // Bytes end the packet
}

// AtBoundary reports whether every byte fed so far belongs to a whole
// packet.
func (f *Framer) AtBoundary() bool { return f.partLen == 0 && f.remain == 0 && f.err == nil }

// Next takes the next bytes of chunk and returns how many it took (at
// least one, for a non-empty chunk) and what they are. At a packet
// boundary it takes the whole packet when it lies whole in chunk, else its
// fixed header and what follows of it in chunk; inside a packet, the next
// bytes of the packet. A fixed header that chunk ends inside is kept until
// the next chunks complete it: the piece is then empty. A malformed
// remaining length is an error (ErrMalformedLength), returned again by
// every later call.
func (f *Framer) Next(chunk []byte) (p Piece, n int, err error) {
	switch {
	case f.err != nil:
		return Piece{}, 0, f.err
	case f.remain > 0:
		n = min(f.remain, len(chunk))
		f.remain -= n
		return Piece{Header: f.h, Bytes: chunk[:n], Last: f.remain == 0}, n, nil
	case f.partLen == 0:
		h, need, err := headerNeed(chunk)
		if err != nil {
			f.err = err
			return Piece{}, 0, err
		}
		if need == 0 {
			n = min(h.Size(), len(chunk))
			f.h, f.remain = h, h.Size()-n
			return Piece{Header: h, Bytes: chunk[:n], First: true, Last: f.remain == 0}, n, nil
		}
	}
	for n < len(chunk) {
		f.part[f.partLen] = chunk[n]
		f.partLen++
		n++
		h, need, err := headerNeed(f.part[:f.partLen])
		switch {
		case need > 0:
			continue
		case err != nil:
			f.err = err
			return Piece{}, n, err
		}
		f.whole, f.partLen = f.part, 0
		f.h, f.remain = h, h.RemainingLength
		return Piece{Header: h, Bytes: f.whole[:h.HeaderLen], First: true, Last: f.remain == 0}, n, nil
	}
	return Piece{}, n, nil
}

// Scanner follows packet boundaries in a byte stream fed to it in arbitrary
// chunks, without decoding or buffering packets. The relay uses it to know
// whether the bytes it forwards unframed end on a packet boundary, so that
// a packet it injects (a DISCONNECT) never lands inside another packet.
type Scanner struct{ f Framer }

// AtBoundary reports whether every byte fed so far belongs to a whole packet.
func (s *Scanner) AtBoundary() bool { return s.f.AtBoundary() }

// Feed advances the scanner over p. It returns the length of the longest
// prefix of p after which the stream is at a packet boundary (0 when no
// packet ends inside p), and a framing error once the stream is malformed;
// the error is sticky.
func (s *Scanner) Feed(p []byte) (boundary int, err error) {
	for off := 0; off < len(p); {
		piece, n, err := s.f.Next(p[off:])
		if err != nil {
			return boundary, err
		}
		if off += n; piece.Last {
			boundary = off
		}
	}
	return boundary, nil
}
