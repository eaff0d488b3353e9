package packets

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"testing/iotest"
)

// fuzzCap is the size cap the fuzz targets read with.
const fuzzCap = 4096

// runtimeMem measures heap bytes allocated by f.
type runtimeMem struct{}

func (runtimeMem) check(t testing.TB, f func(), limit uint64) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > limit {
		t.Fatalf("allocated %d bytes, limit %d", got, limit)
	}
}

// FuzzReadPacket frames arbitrary bytes: never more than the cap is
// allocated for a packet, a returned packet is whole and self-consistent,
// ReadPacket reads nothing past the packets it returns, a Reader fed the
// bytes in random chunks frames exactly the same packets and loses no byte
// it read, and the Scanner agrees with both about where each packet ends.
func FuzzReadPacket(f *testing.F) {
	for _, fx := range append(append([]fixture{}, validConnects...), invalidConnects...) {
		f.Add(fx.pkt)
	}
	f.Add(b(0x10, 0xFF, 0xFF, 0xFF, 0x7F))
	f.Add(b(0x30, 0x80, 0x80, 0x80, 0x80, 0x01))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		var sc Scanner
		bd, scanErr := sc.Feed(data)
		consumed := 0
		var pkts [][]byte
		var readErr error
		for {
			h, p, err := ReadPacket(r, fuzzCap)
			if err != nil {
				if p != nil {
					t.Fatal("packet returned with an error")
				}
				if errors.Is(err, ErrTooLarge) && h.Size() <= fuzzCap {
					t.Fatalf("ErrTooLarge for %d bytes", h.Size())
				}
				readErr = err
				break
			}
			if len(p) > fuzzCap || len(p) != h.Size() || h.Type != Type(p[0]>>4) {
				t.Fatalf("packet %d bytes, header %+v", len(p), h)
			}
			consumed += len(p)
			if read := len(data) - r.Len(); read != consumed {
				t.Fatalf("ReadPacket read %d bytes for packets of %d", read, consumed)
			}
			pkts = append(pkts, p)
		}
		// Every packet ReadPacket returned lies within the scanner's prefix
		// of whole packets, unless the scanner found a malformed header.
		if scanErr == nil && consumed > bd && consumed != 0 {
			t.Fatalf("ReadPacket consumed %d, scanner boundary %d", consumed, bd)
		}
		if errors.Is(readErr, ErrMalformedLength) && !errors.Is(scanErr, ErrMalformedLength) {
			t.Fatalf("ReadPacket: %v; scanner: %v", readErr, scanErr)
		}

		// The same bytes in random chunks (the split derived from the data).
		hash := fnv.New64a()
		hash.Write(data)
		rng := rand.New(rand.NewPCG(hash.Sum64(), uint64(len(data))))
		var chunks [][]byte
		for rest := data; len(rest) > 0; {
			n := 1 + rng.IntN(min(len(rest), 1+rng.IntN(64)))
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		var in io.Reader = &chunkReader{chunks: append([][]byte{}, chunks...)}
		if rng.IntN(2) == 0 {
			in = iotest.DataErrReader(in) // the last bytes come with io.EOF
		}
		src := &countReader{r: in}
		rd := NewReader(src, fuzzCap)
		returned := 0
		for i := 0; ; i++ {
			h, p, err := rd.Next()
			returned += len(p)
			if src.n != returned+len(rd.Buffered()) {
				t.Fatalf("Reader read %d bytes, returned %d and holds %d", src.n, returned, len(rd.Buffered()))
			}
			if err != nil {
				if p != nil || i != len(pkts) {
					t.Fatalf("Reader stopped at packet %d with %v, ReadPacket at %d", i, err, len(pkts))
				}
				if class(err) != class(readErr) {
					t.Fatalf("Reader: %v; ReadPacket: %v", err, readErr)
				}
				break
			}
			if i >= len(pkts) || !bytes.Equal(p, pkts[i]) || h.Size() != len(p) {
				t.Fatalf("Reader's packet %d is %x, ReadPacket's %d packets differ", i, p, len(pkts))
			}
		}

		// The scanner fed the same chunks finds the same ends.
		ends := map[int]bool{}
		for off, i := 0, 0; i < len(pkts); i++ {
			off += len(pkts[i])
			ends[off] = true
		}
		var cs Scanner
		pos := 0
		for _, c := range chunks {
			bd, err := cs.Feed(c)
			pos += len(c)
			if pos > consumed {
				break
			}
			want := 0
			for i := 1; i <= len(c); i++ {
				if ends[pos-len(c)+i] {
					want = i
				}
			}
			if err != nil || bd != want || cs.AtBoundary() != ends[pos] {
				t.Fatalf("chunk ending at %d: scanner boundary %d (%v), want %d", pos, bd, err, want)
			}
		}
	})
}

// class is a framing error's kind, for comparing readers.
func class(err error) error {
	for _, e := range []error{ErrTooLarge, ErrMalformedLength, ErrTruncated, io.EOF} {
		if errors.Is(err, e) {
			return e
		}
	}
	return err
}

// countReader counts the bytes read through it.
type countReader struct {
	r     io.Reader
	n     int
	reads int
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	c.reads++
	return n, err
}

// FuzzDecodeConnect decodes arbitrary bytes as CONNECT: no panic, errors are
// *Error, and anything accepted re-encodes to exactly the same bytes.
func FuzzDecodeConnect(f *testing.F) {
	for _, fx := range append(append([]fixture{}, validConnects...), invalidConnects...) {
		f.Add(fx.pkt)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeConnect(data)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not *Error", err)
			}
			return
		}
		out, err := AppendConnect(nil, c)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("accepted bytes do not round trip\n in %x\nout %x", data, out)
		}
	})
}

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed corpus under testdata/fuzz from the fixtures")

// TestSeedCorpus keeps testdata/fuzz in step with the fixtures: run with
// -update-corpus after adding a fixture. Without the flag it checks that
// every fixture is in the corpus.
func TestSeedCorpus(t *testing.T) {
	var seeds [][]byte
	for _, fx := range append(append([]fixture{}, validConnects...), invalidConnects...) {
		seeds = append(seeds, fx.pkt)
	}
	for _, target := range []string{"FuzzReadPacket", "FuzzDecodeConnect"} {
		checkCorpus(t, target, "fixture", seeds)
	}
}

// checkCorpus checks, or with -update-corpus writes, the seeds of a fuzz
// target under testdata/fuzz, each in a file named by prefix and index.
func checkCorpus(t *testing.T, target, prefix string, seeds [][]byte) {
	dir := filepath.Join("testdata", "fuzz", target)
	for i, seed := range seeds {
		name := filepath.Join(dir, fmt.Sprintf("%s-%02d", prefix, i))
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", seed)
		if *updateCorpus {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(name)
		if err != nil || string(got) != content {
			t.Fatalf("%s is missing or stale (%v): run go test ./packets -run TestSeedCorpus -update-corpus", name, err)
		}
	}
}
