package packets

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
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
// and the Scanner agrees with ReadPacket about where each packet ends.
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
		for {
			h, p, err := ReadPacket(r, fuzzCap)
			if err != nil {
				if p != nil {
					t.Fatal("packet returned with an error")
				}
				if errors.Is(err, ErrTooLarge) && h.Size() <= fuzzCap {
					t.Fatalf("ErrTooLarge for %d bytes", h.Size())
				}
				break
			}
			if len(p) > fuzzCap || len(p) != h.Size() || h.Type != Type(p[0]>>4) {
				t.Fatalf("packet %d bytes, header %+v", len(p), h)
			}
			consumed += len(p)
		}
		// Every packet ReadPacket returned lies within the scanner's prefix
		// of whole packets, unless the scanner found a malformed header.
		if scanErr == nil && consumed > bd && consumed != 0 {
			t.Fatalf("ReadPacket consumed %d, scanner boundary %d", consumed, bd)
		}
	})
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
	all := append(append([]fixture{}, validConnects...), invalidConnects...)
	for _, target := range []string{"FuzzReadPacket", "FuzzDecodeConnect"} {
		dir := filepath.Join("testdata", "fuzz", target)
		for i, fx := range all {
			name := filepath.Join(dir, fmt.Sprintf("fixture-%02d", i))
			content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", fx.pkt)
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
}
