// Package packets is the only place where mqtt-authproxy parses bytes that
// come from devices. It frames MQTT packets with a caller-given size cap
// (enforced before any allocation for the body), decodes and re-encodes
// CONNECT for MQTT 3.1, 3.1.1 and 5, encodes CONNACK, decodes and encodes
// the packets after CONNECT that the relay judges (PUBLISH, SUBSCRIBE,
// SUBACK, UNSUBSCRIBE, UNSUBACK, PUBACK to PUBCOMP, DISCONNECT), and scans
// a byte stream for packet boundaries without decoding packets.
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

// Reader frames whole packets from a byte stream with a size cap: the one
// framing reader of this package (ReadPacket is a Reader in exact mode).
//
// A packet over the cap is refused from its fixed header, before anything
// is allocated for its body. The buffer grows with the bytes that arrive,
// never ahead of them to the declared size, so a header announcing a large
// packet costs no memory until its bytes come. A Reader reads as much as
// its buffer holds (a small packet is usually one Read), so it may read past
// the packet it returns: those bytes are kept for the next Next, and
// Buffered returns them for a caller that hands the stream on.
type Reader struct {
	src   io.Reader
	max   int
	exact bool   // never read past the packet (ReadPacket)
	buf   []byte // bytes read, not yet returned; the capacity past len is free
	err   error  // a read error that came with bytes, returned by the next read
}

// NewReader returns a Reader of packets of at most maxSize bytes from r.
func NewReader(r io.Reader, maxSize int) *Reader { return &Reader{src: r, max: maxSize} }

// Next reads and returns the next whole packet, fixed header included, with
// its decoded header. The returned slice is owned by the caller: later calls
// never write to it. Errors are ReadPacket's: io.EOF when the stream ends
// on a packet boundary, ErrTruncated when it ends inside a packet,
// ErrMalformedLength, ErrTooLarge (with the header), or the read error. A
// framing error repeats on every later call; after a read error (a
// timeout) Next may be called again and resumes where it stopped.
func (r *Reader) Next() (FixedHeader, []byte, error) {
	h, need, err := headerNeed(r.buf)
	for need > 0 {
		if err := r.fill(need, 0); err != nil {
			if len(r.buf) > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("%w: %w", ErrTruncated, err)
			}
			return FixedHeader{}, nil, err
		}
		h, need, err = headerNeed(r.buf)
	}
	if err != nil {
		return FixedHeader{}, nil, err
	}
	size := h.Size()
	if size > r.max {
		return h, nil, fmt.Errorf("%w: %s of %d bytes, cap %d", ErrTooLarge, h.Type, size, r.max)
	}
	for len(r.buf) < size {
		if err := r.fill(size-len(r.buf), size); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return h, nil, fmt.Errorf("%w: %s: %w", ErrTruncated, h.Type, io.ErrUnexpectedEOF)
			}
			return h, nil, err
		}
	}
	pkt := r.buf[:size:size]
	if r.buf = r.buf[size:]; cap(r.buf) == 0 {
		r.buf = nil
	}
	return h, pkt, nil
}

// Buffered returns the bytes read past the last packet Next returned (none
// in exact mode). The caller may keep them: the Reader never writes to them.
func (r *Reader) Buffered() []byte { return r.buf[:len(r.buf):len(r.buf)] }

// fill reads at least one byte into the buffer, or returns an error. need
// is how many bytes the current step still lacks (at least 1), size the
// packet's size once its header is known, else 0. An error that comes with
// bytes is held and returned by the next call.
func (r *Reader) fill(need, size int) error {
	if err := r.err; err != nil {
		r.err = nil
		return err
	}
	if cap(r.buf)-len(r.buf) < min(need, minRead) {
		r.grow(size)
	}
	p := r.buf[len(r.buf):cap(r.buf)]
	if r.exact {
		p = p[:min(len(p), need)]
	}
	n, err := r.src.Read(p)
	r.buf = r.buf[:len(r.buf)+n]
	if err != nil && n == 0 {
		return err
	}
	r.err = err
	return nil
}

// grow moves the buffered bytes to a larger buffer: before the header is
// known, one that holds a header (exact) or firstRead bytes; after, one
// that doubles what is held, at least readChunk, at most the packet.
func (r *Reader) grow(size int) {
	var c int
	switch {
	case size == 0 && r.exact:
		c = maxHeaderLen
	case size == 0:
		c = firstRead
	default:
		c = min(size, max(readChunk, 2*len(r.buf)))
		if !r.exact {
			c = max(c, firstRead) // room for what follows a small packet
		}
	}
	b := make([]byte, len(r.buf), c)
	copy(b, r.buf)
	r.buf = b
}

const (
	// firstRead is a Reader's first buffer: a CONNACK and what follows it.
	firstRead = 512
	// readChunk is the first buffer for a packet's body: most packets fit.
	readChunk = 2048
	// minRead: free space below this (and below what is missing) is not
	// worth a Read; the buffer grows first.
	minRead = 64
)

// ReadPacket reads one whole packet from r and returns it, fixed header
// included, with its decoded header. maxSize caps the whole packet: a larger
// declared size returns ErrTooLarge before anything is allocated for the
// body, and nothing past the fixed header is read. ReadPacket never reads
// past the packet (it is a Reader in exact mode: each Read asks only for
// bytes the packet still lacks), so the stream can be handed on after it;
// the buffer grows with the bytes that arrive, as a Reader's does. The
// returned slice is owned by the caller.
func ReadPacket(r io.Reader, maxSize int) (FixedHeader, []byte, error) {
	rd := Reader{src: r, max: maxSize, exact: true}
	return rd.Next()
}

// Scanner follows packet boundaries in a byte stream fed to it in arbitrary
// chunks, without decoding or buffering packets. The relay uses it to know
// whether the bytes it has forwarded end on a packet boundary, so that a
// packet it injects (a DISCONNECT) never lands inside another packet.
type Scanner struct {
	hdr    [maxHeaderLen]byte
	hdrLen int // bytes of a partial fixed header held in hdr
	remain int // body bytes of the current packet not yet seen
	err    error
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
				boundary = i
			}
			continue
		}
		s.hdr[s.hdrLen] = p[i]
		s.hdrLen++
		i++
		h, need, err := headerNeed(s.hdr[:s.hdrLen])
		if need > 0 {
			continue
		}
		if err != nil {
			s.err = err
			return boundary, err
		}
		s.hdrLen = 0
		s.remain = h.RemainingLength
		if s.remain == 0 {
			boundary = i
		}
	}
	return boundary, nil
}
