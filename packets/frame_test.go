package packets

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// TestFramer: whatever the chunking, the pieces are the stream in order,
// each packet's pieces begin with a First one carrying its header and end
// with a Last one, and a packet lying whole in a chunk at a boundary is
// one piece, a sub-slice of the chunk.
func TestFramer(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 300 {
		var stream []byte
		var sizes []int
		for range 1 + r.IntN(30) {
			body := make([]byte, []int{0, 1, 126, 127, 128, 300, 16383, 16384, 20000}[r.IntN(9)])
			p := AppendPacket(nil, byte(1+r.IntN(15))<<4|byte(r.IntN(16)), body)
			stream = append(stream, p...)
			sizes = append(sizes, len(p))
		}
		ends := map[int]bool{0: true}
		for i, end := 0, 0; i < len(sizes); i++ {
			end += sizes[i]
			ends[end] = true
		}
		var f Framer
		var rebuilt []byte
		pkt, got, fed := 0, 0, 0 // the packet in progress, its bytes so far; the bytes fed
		for rest := stream; len(rest) > 0; {
			chunk := rest[:1+r.IntN(min(len(rest), []int{1, 3, 200, 50000}[r.IntN(4)]))]
			rest = rest[len(chunk):]
			for len(chunk) > 0 {
				atStart := f.AtBoundary()
				p, n, err := f.Next(chunk)
				if err != nil || n == 0 {
					t.Fatalf("trial %d: Next took %d bytes: %v", trial, n, err)
				}
				if len(p.Bytes) > 0 && p.First != (got == 0) {
					t.Fatalf("trial %d: packet %d: First is %v after %d bytes", trial, pkt, p.First, got)
				}
				if atStart && len(chunk) >= sizes[pkt] && (!p.Last || &p.Bytes[0] != &chunk[0]) {
					t.Fatalf("trial %d: packet %d lies in the chunk but is not a sub-slice of it", trial, pkt)
				}
				rebuilt = append(rebuilt, p.Bytes...)
				got += len(p.Bytes)
				if len(p.Bytes) > 0 && p.Header.Size() != sizes[pkt] || p.Last != (got == sizes[pkt]) {
					t.Fatalf("trial %d: packet %d of %d bytes: header %+v, %d bytes, last %v", trial, pkt, sizes[pkt], p.Header, got, p.Last)
				}
				if p.Last {
					pkt, got = pkt+1, 0
				}
				if fed += n; f.AtBoundary() != ends[fed] {
					t.Fatalf("trial %d: AtBoundary %v after %d bytes", trial, f.AtBoundary(), fed)
				}
				chunk = chunk[n:]
			}
		}
		if !bytes.Equal(rebuilt, stream) || pkt != len(sizes) {
			t.Fatalf("trial %d: %d of %d packets, the stream not rebuilt", trial, pkt, len(sizes))
		}
	}
	var f Framer
	if _, _, err := f.Next(b(0x30, 0xFF, 0xFF)); err != nil {
		t.Fatalf("a header in progress: %v", err)
	}
	if _, _, err := f.Next(b(0xFF, 0xFF, 0x01)); !errors.Is(err, ErrMalformedLength) {
		t.Fatalf("five length bytes: %v", err)
	}
	if _, n, err := f.Next(b(0xC0, 0)); !errors.Is(err, ErrMalformedLength) || n != 0 || f.AtBoundary() {
		t.Fatalf("the error must be sticky: %v", err)
	}
}

func TestScanner(t *testing.T) {
	var stream []byte
	var ends []int
	for _, f := range validConnects {
		stream = append(stream, f.pkt...)
		ends = append(ends, len(stream))
		stream = append(stream, 0xC0, 0) // PINGREQ: zero-length body
		ends = append(ends, len(stream))
	}
	big := pkt(0x30, s("topic"), bytes.Repeat([]byte{'x'}, 20000)) // 3-byte length
	stream = append(stream, big...)
	ends = append(ends, len(stream))

	isEnd := map[int]bool{}
	for _, e := range ends {
		isEnd[e] = true
	}
	r := rand.New(rand.NewPCG(3, 4))
	for trial := 0; trial < 200; trial++ {
		var sc Scanner
		var chunks [][]byte
		pos := 0
		for pos < len(stream) {
			n := 1 + r.IntN(40)
			if trial%2 == 1 {
				n = 1 + r.IntN(5000)
			}
			chunk := stream[pos:min(pos+n, len(stream))]
			chunks = append(chunks, chunk)
			bd, err := sc.Feed(chunk)
			if err != nil {
				t.Fatal(err)
			}
			// bd must be the last packet end inside the chunk.
			want := 0
			for i := 1; i <= len(chunk); i++ {
				if isEnd[pos+i] {
					want = i
				}
			}
			if bd != want {
				t.Fatalf("trial %d at %d: boundary %d, want %d", trial, pos, bd, want)
			}
			pos += len(chunk)
			if sc.AtBoundary() != isEnd[pos] {
				t.Fatalf("trial %d: AtBoundary at %d = %v", trial, pos, sc.AtBoundary())
			}
		}
		// The same chunks through a Reader: the packets end where the
		// scanner found boundaries, and the last is the PUBLISH.
		rd := NewReader(&chunkReader{chunks: chunks}, 1<<20)
		var last FixedHeader
		end, count := 0, 0
		for {
			h, p, err := rd.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("trial %d: Reader: %v", trial, err)
			}
			end += len(p)
			count++
			if !isEnd[end] {
				t.Fatalf("trial %d: Reader's packet %d ends at %d, not a boundary", trial, count, end)
			}
			last = h
		}
		if count != len(ends) || last.Type != PUBLISH {
			t.Fatalf("packets %d (want %d), last %v", count, len(ends), last)
		}
	}

	// Fed one byte at a time, the scanner reports each packet's end once.
	var one Scanner
	count := 0
	for i := range stream {
		if bd, err := one.Feed(stream[i : i+1]); err != nil || bd == 1 != isEnd[i+1] {
			t.Fatalf("byte %d: boundary %d, %v", i, bd, err)
		} else if bd == 1 {
			count++
		}
	}
	if count != len(ends) {
		t.Fatalf("packets %d (want %d)", count, len(ends))
	}

	var sc Scanner
	if _, err := sc.Feed(b(0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01)); !errors.Is(err, ErrMalformedLength) {
		t.Fatalf("malformed length: %v", err)
	}
	if _, err := sc.Feed(b(0xC0, 0)); !errors.Is(err, ErrMalformedLength) || sc.AtBoundary() {
		t.Fatalf("error must be sticky: %v", err)
	}
}
