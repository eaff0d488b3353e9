package packets

import (
	"errors"
	"fmt"
	"io"
)

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
