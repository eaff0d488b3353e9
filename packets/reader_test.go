package packets

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"testing/iotest"
)

// TestReaderReads: a small packet is one Read, what came behind it is
// Buffered and framed next without another Read; ReadPacket asks only for
// the bytes its packet lacks, so the stream can be handed on after it.
func TestReaderReads(t *testing.T) {
	connack := b(0x20, 2, 0, 0)
	publish := pkt(0x30, s("t"), []byte("hi"))

	src := &countReader{r: bytes.NewReader(connack)}
	rd := NewReader(src, 1024)
	if _, p, err := rd.Next(); err != nil || !bytes.Equal(p, connack) || src.reads != 1 || len(rd.Buffered()) != 0 {
		t.Fatalf("CONNACK alone: %x %v after %d reads, buffered %x", p, err, src.reads, rd.Buffered())
	}

	src = &countReader{r: bytes.NewReader(append(append([]byte{}, connack...), publish...))}
	rd = NewReader(src, 1024)
	h, p, err := rd.Next()
	if err != nil || h.Type != CONNACK || !bytes.Equal(p, connack) || src.reads != 1 {
		t.Fatalf("CONNACK: %v %x %v after %d reads", h, p, err, src.reads)
	}
	if !bytes.Equal(rd.Buffered(), publish) {
		t.Fatalf("buffered %x, want %x", rd.Buffered(), publish)
	}
	if h, p, err := rd.Next(); err != nil || h.Type != PUBLISH || !bytes.Equal(p, publish) || src.reads != 1 {
		t.Fatalf("PUBLISH: %v %x %v after %d reads", h, p, err, src.reads)
	}
	if _, _, err := rd.Next(); err != io.EOF {
		t.Fatalf("at the end: %v", err)
	}

	// ReadPacket: header and body, two reads, and the next packet intact.
	connect := validConnects[2].pkt
	r := bytes.NewReader(append(append([]byte{}, connect...), publish...))
	src = &countReader{r: r}
	if _, p, err := ReadPacket(src, 1024); err != nil || !bytes.Equal(p, connect) || src.reads != 2 || r.Len() != len(publish) {
		t.Fatalf("ReadPacket: %x %v after %d reads, %d bytes left", p, err, src.reads, r.Len())
	}
	if _, p, err := ReadPacket(r, 1024); err != nil || !bytes.Equal(p, publish) {
		t.Fatalf("ReadPacket after: %x %v", p, err)
	}
}

// framingErrors are streams that cannot be framed, with their caps and
// errors: Reader's and ReadPacket's alike.
var framingErrors = []struct {
	name string
	in   []byte
	max  int
	want error
}{
	{"empty stream", nil, 100, io.EOF},
	{"type byte only", b(0x10), 100, ErrTruncated},
	{"length continues past end", b(0x10, 0x80), 100, ErrTruncated},
	{"body truncated", b(0x10, 5, 1, 2), 100, ErrTruncated},
	{"five length bytes", b(0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F), 1 << 30, ErrMalformedLength},
	{"non-minimal length", b(0x10, 0x85, 0x00, 1, 2, 3, 4, 5), 100, ErrMalformedLength},
	{"over the cap", b(0x10, 0xFF, 0xFF, 0xFF, 0x7F), 65536, ErrTooLarge},
	{"one over the cap", pkt(0x10, make([]byte, 99)), 100, ErrTooLarge},
}

// TestReaderErrors: the errors are ReadPacket's.
func TestReaderErrors(t *testing.T) {
	for _, c := range framingErrors {
		for name, in := range map[string]func() io.Reader{
			"whole":       func() io.Reader { return bytes.NewReader(c.in) },
			"byte a time": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(c.in)) },
			"EOF w/ data": func() io.Reader { return iotest.DataErrReader(bytes.NewReader(c.in)) },
		} {
			rd := NewReader(in(), c.max)
			for range 2 { // a framing error repeats
				if _, got, err := rd.Next(); !errors.Is(err, c.want) || got != nil {
					t.Fatalf("%s, %s: got %x, %v; want %v", c.name, name, got, err, c.want)
				}
			}
		}
	}
}

// timeoutOnce fails its first Read after the first n bytes with a timeout.
type timeoutOnce struct {
	r    io.Reader
	n    int
	done bool
}

func (t *timeoutOnce) Read(p []byte) (int, error) {
	if t.n == 0 && !t.done {
		t.done = true
		return 0, os.ErrDeadlineExceeded
	}
	if !t.done {
		p = p[:min(len(p), t.n)]
	}
	n, err := t.r.Read(p)
	t.n -= n
	return n, err
}

// TestReaderResumes: a read error (a timeout) inside a packet is returned,
// and the next call goes on with the bytes already read.
func TestReaderResumes(t *testing.T) {
	connect := validConnects[5].pkt
	for _, cut := range []int{0, 1, 2, len(connect) / 2, len(connect) - 1} {
		rd := NewReader(&timeoutOnce{r: bytes.NewReader(connect), n: cut}, 1024)
		if _, _, err := rd.Next(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		if _, p, err := rd.Next(); err != nil || !bytes.Equal(p, connect) {
			t.Fatalf("cut at %d, resumed: %x %v", cut, p, err)
		}
	}
}

// TestReaderPacketsAreOwned: a packet stays as it was when later packets
// are read, whatever the chunks, and the buffer follows the bytes: a
// header announcing 64 KiB costs a few KiB until the body comes.
func TestReaderPacketsAreOwned(t *testing.T) {
	var stream []byte
	var want [][]byte
	for i := range 300 {
		p := pkt(0x30, s("t"), bytes.Repeat([]byte{byte(i)}, i*7%3000))
		want = append(want, p)
		stream = append(stream, p...)
	}
	for name, in := range map[string]io.Reader{
		"whole":  bytes.NewReader(stream),
		"halves": iotest.HalfReader(bytes.NewReader(stream)),
		"bytes":  iotest.OneByteReader(bytes.NewReader(stream)),
	} {
		rd := NewReader(in, 1<<16)
		var got [][]byte
		for {
			_, p, err := rd.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			got = append(got, p)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d packets, want %d", name, len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("%s: packet %d changed", name, i)
			}
		}
	}

	header := b(0x10, 0xFF, 0xFF, 0x03) // CONNECT, 65535 bytes to come
	var ms runtimeMem
	ms.check(t, func() {
		for range 100 {
			if _, _, err := NewReader(bytes.NewReader(header), 1<<20).Next(); !errors.Is(err, ErrTruncated) {
				t.Fatal(err)
			}
		}
	}, 100*4<<10)
}

func TestReadPacket(t *testing.T) {
	valid := validConnects[2].pkt
	h, got, err := ReadPacket(bytes.NewReader(append(append([]byte{}, valid...), 0xC0, 0)), 1024)
	if err != nil || !bytes.Equal(got, valid) || h.Type != CONNECT || h.Size() != len(valid) {
		t.Fatalf("ReadPacket = %v %x %v", h, got, err)
	}

	for _, c := range framingErrors {
		t.Run(c.name, func(t *testing.T) {
			_, got, err := ReadPacket(bytes.NewReader(c.in), c.max)
			if !errors.Is(err, c.want) || got != nil {
				t.Fatalf("got %x, %v; want %v", got, err, c.want)
			}
		})
	}
	if _, got, err := ReadPacket(bytes.NewReader(pkt(0x10, make([]byte, 98))), 100); err != nil || len(got) != 100 {
		t.Fatalf("packet exactly at the cap: %d bytes, %v", len(got), err)
	}
}

// countingReader fails the test if more than limit bytes are read.
type countingReader struct {
	r     io.Reader
	n     int
	limit int
	t     *testing.T
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	if c.n > c.limit {
		c.t.Fatalf("read %d bytes, more than %d", c.n, c.limit)
	}
	return n, err
}

func TestReadPacketTooLargeReadsOnlyHeader(t *testing.T) {
	// A 4-byte length declaring 256 MiB, then an endless stream.
	in := io.MultiReader(bytes.NewReader(b(0x10, 0xFF, 0xFF, 0xFF, 0x7F)), neverEnding{})
	cr := &countingReader{r: in, limit: 5, t: t}
	allocs := testing.AllocsPerRun(10, func() {
		cr.n = 0
		cr.r = io.MultiReader(bytes.NewReader(b(0x10, 0xFF, 0xFF, 0xFF, 0x7F)), neverEnding{})
		if _, _, err := ReadPacket(cr, 65536); !errors.Is(err, ErrTooLarge) {
			t.Fatal(err)
		}
	})
	var ms runtimeMem
	ms.check(t, func() {
		_, _, _ = ReadPacket(io.MultiReader(bytes.NewReader(b(0x10, 0xFF, 0xFF, 0xFF, 0x7F)), neverEnding{}), 65536)
	}, 64<<10)
	t.Logf("allocations for a refused 256 MiB header: %v", allocs)
}

// TestReadPacketGrowsWithTheBytes is the review's finding: a fixed header
// announcing 64 KiB made ReadPacket allocate 64 KiB before any body byte
// arrived (1,500 such connections: +69 MiB). The buffer now grows with the
// bytes that come, and a packet that arrives a byte at a time or in halves
// still reads whole.
func TestReadPacketGrowsWithTheBytes(t *testing.T) {
	header := b(0x10, 0xFF, 0xFF, 0x03) // CONNECT, 65535 bytes to come
	var ms runtimeMem
	ms.check(t, func() {
		for range 100 {
			if _, _, err := ReadPacket(bytes.NewReader(header), 1<<20); !errors.Is(err, ErrTruncated) {
				t.Fatal(err)
			}
		}
	}, 100*4<<10)

	body := make([]byte, 65535)
	for i := range body {
		body[i] = byte(i)
	}
	whole := append(append([]byte(nil), header...), body...)
	for name, r := range map[string]func() io.Reader{
		"one byte at a time": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(whole)) },
		"halves":             func() io.Reader { return iotest.HalfReader(bytes.NewReader(whole)) },
		"data with EOF":      func() io.Reader { return iotest.DataErrReader(bytes.NewReader(whole)) },
	} {
		_, pkt, err := ReadPacket(r(), 1<<20)
		if err != nil || !bytes.Equal(pkt, whole) {
			t.Fatalf("%s: %d bytes, %v", name, len(pkt), err)
		}
	}
	if _, _, err := ReadPacket(bytes.NewReader(whole[:len(whole)-1]), 1<<20); !errors.Is(err, ErrTruncated) {
		t.Fatalf("one byte short: %v", err)
	}
}

// chunkReader returns its chunks one per Read (split when p is shorter).
type chunkReader struct{ chunks [][]byte }

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	if c.chunks[0] = c.chunks[0][n:]; len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

type neverEnding struct{}

func (neverEnding) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'A'
	}
	return len(p), nil
}
