package packets

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
)

// Fuzz targets of the decoders after CONNECT, one per decoder. Each forces
// the type nibble of the first byte to its decoder's type (the type check
// itself is covered by the fixtures) and decodes the bytes at every
// protocol level, asserting:
//   - no panic; a refusal is an *Error with a code the decoder documents;
//   - an accepted packet re-encodes to the same bytes, or, for the MQTT 5
//     acknowledgements and DISCONNECT that may be written longer than
//     needed, to a shorter canonical form that decodes to itself;
//   - a Publish's slices lie within the input, capped at their ends; every
//     other result owns its data (it survives scribbling over the input);
//   - a decoded filter's validity is ValidateFilter's.

func fuzzAfter(t *testing.T, typ Type, data []byte) {
	if len(data) == 0 {
		return
	}
	for _, level := range lvAll {
		buf := bytes.Clone(data)
		d, err := decodeWith(typ, buf, level)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("%s: error %v is not *Error", level, err)
			}
			switch pe.Code {
			case MalformedPacket, ProtocolError:
			case TopicNameInvalid, TopicAliasInvalid:
				if typ != PUBLISH {
					t.Fatalf("%s: %s refused with %v", level, typ, pe.Code)
				}
			default:
				t.Fatalf("%s: unexpected code %v", level, pe.Code)
			}
			if !errors.Is(err, pe.Code) || pe.Error() == "" {
				t.Fatalf("%s: %v", level, err)
			}
			continue
		}
		out, err := d.encode()
		if err != nil {
			t.Fatalf("%s: re-encoding: %v", level, err)
		}
		if !bytes.Equal(out, data) {
			if !lenient(typ, level) || len(out) >= len(data) {
				t.Fatalf("%s: accepted bytes do not round trip\n in %x\nout %x", level, data, out)
			}
			again, _, err := decodeAs(typ, out, level)
			if err != nil || !bytes.Equal(again, out) {
				t.Fatalf("%s: canonical form %x does not round trip: %x %v", level, out, again, err)
			}
		}
		for i, v := range d.views {
			if cap(v) != len(v) {
				t.Fatalf("%s: view %d has capacity %d past its length %d", level, i, cap(v), len(v))
			}
			if len(v) == 0 {
				continue
			}
			base, p := reflect.ValueOf(buf).Pointer(), reflect.ValueOf(v).Pointer()
			if p < base || p+uintptr(len(v)) > base+uintptr(len(buf)) {
				t.Fatalf("%s: view %d is not within the input", level, i)
			}
		}
		if typ != PUBLISH {
			for i := range buf {
				buf[i] ^= 0x5A
			}
			if after, _ := d.encode(); !bytes.Equal(after, out) {
				t.Fatalf("%s: result changed with the input buffer", level)
			}
		}
		switch typ {
		case SUBSCRIBE:
			s, _ := DecodeSubscribe(data, level)
			for _, f := range s.Filters {
				if (f.Err == nil) != (ValidateFilter(f.Filter) == nil) {
					t.Fatalf("%s: filter %q: %v, ValidateFilter %v", level, f.Filter, f.Err, ValidateFilter(f.Filter))
				}
			}
		case UNSUBSCRIBE:
			u, _ := DecodeUnsubscribe(data, level)
			for _, f := range u.Filters {
				if (f.Err == nil) != (ValidateFilter(f.Filter) == nil) {
					t.Fatalf("%s: filter %q: %v, ValidateFilter %v", level, f.Filter, f.Err, ValidateFilter(f.Filter))
				}
			}
		}
	}
}

// withType sets the type nibble of data's first byte to t.
func withType(data []byte, t Type) []byte {
	if len(data) == 0 {
		return data
	}
	data = bytes.Clone(data)
	data[0] = byte(t)<<4 | data[0]&0x0F
	return data
}

// fuzzSeeds are a target's seeds: the fixtures of its types and random
// valid packets of them.
func fuzzSeeds(types ...Type) [][]byte {
	is := func(p []byte) bool {
		for _, t := range types {
			if len(p) > 0 && Type(p[0]>>4) == t {
				return true
			}
		}
		return false
	}
	var seeds [][]byte
	for _, f := range append(append([]pfix{}, validAfterConnect...), invalidAfterConnect...) {
		if is(f.pkt) && (f.as == 0 || is([]byte{byte(f.as) << 4})) {
			seeds = append(seeds, f.pkt)
		}
	}
	g := gen{rand.New(rand.NewPCG(uint64(types[0]), 99))}
	for n := 0; n < 8; {
		if p := g.packet(lvAll[n%3]); is(p) {
			seeds = append(seeds, p)
			n++
		}
	}
	return seeds
}

var fuzzTargetsAfter = []struct {
	name  string
	types []Type
}{
	{"FuzzDecodePublish", []Type{PUBLISH}},
	{"FuzzDecodePublishHead", []Type{PUBLISH}},
	{"FuzzDecodeSubscribe", []Type{SUBSCRIBE}},
	{"FuzzDecodeSuback", []Type{SUBACK}},
	{"FuzzDecodeUnsubscribe", []Type{UNSUBSCRIBE}},
	{"FuzzDecodeUnsuback", []Type{UNSUBACK}},
	{"FuzzDecodeAck", []Type{PUBACK, PUBREC, PUBREL, PUBCOMP}},
	{"FuzzDecodeDisconnect", []Type{DISCONNECT}},
}

func fuzzOne(f *testing.F, types ...Type) {
	for _, s := range fuzzSeeds(types...) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		typ := types[0]
		if len(data) > 0 && len(types) > 1 {
			typ = types[int(data[0]>>4)%len(types)]
		}
		fuzzAfter(t, typ, withType(data, typ))
	})
}

func FuzzDecodePublish(f *testing.F)     { fuzzOne(f, PUBLISH) }
func FuzzDecodeSubscribe(f *testing.F)   { fuzzOne(f, SUBSCRIBE) }
func FuzzDecodeSuback(f *testing.F)      { fuzzOne(f, SUBACK) }
func FuzzDecodeUnsubscribe(f *testing.F) { fuzzOne(f, UNSUBSCRIBE) }
func FuzzDecodeUnsuback(f *testing.F)    { fuzzOne(f, UNSUBACK) }
func FuzzDecodeAck(f *testing.F)         { fuzzOne(f, PUBACK, PUBREC, PUBREL, PUBCOMP) }
func FuzzDecodeDisconnect(f *testing.F)  { fuzzOne(f, DISCONNECT) }

// TestSeedCorpusAfterConnect keeps testdata/fuzz of these targets in step
// with the fixtures, as TestSeedCorpus does for CONNECT: run with
// -update-corpus after changing a fixture. Crashers the fuzzer found are
// kept there under their own names, beside the seeds.
func TestSeedCorpusAfterConnect(t *testing.T) {
	for _, target := range fuzzTargetsAfter {
		checkCorpus(t, target.name, "seed", fuzzSeeds(target.types...))
	}
}

// FuzzDecodePublishHead: on every beginning of a PUBLISH that decodes
// whole, DecodePublishHead either asks for more (ErrTruncated, only while
// the headers are not complete) or agrees with DecodePublish on every
// header field, the payload's length and the payload's first bytes; on
// any bytes it never panics.
func FuzzDecodePublishHead(f *testing.F) {
	for _, s := range fuzzSeeds(PUBLISH) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		data = withType(data, PUBLISH)
		for _, level := range lvAll {
			whole, werr := DecodePublish(data, level)
			for n := 0; n <= len(data); n++ {
				if n > 300 && n < len(data) {
					n = len(data)
				}
				head, plen, err := DecodePublishHead(data[:n], level)
				if werr != nil {
					continue // only that it does not panic
				}
				if errors.Is(err, ErrTruncated) {
					if n == len(data) {
						t.Fatalf("%s: the whole packet is truncated", level)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: head of %d bytes: %v, whole decodes", level, n, err)
				}
				if !bytes.Equal(head.Topic, whole.Topic) || head.PacketID != whole.PacketID || head.QoS != whole.QoS ||
					head.Dup != whole.Dup || head.Retain != whole.Retain || !bytes.Equal(head.Properties, whole.Properties) ||
					plen != len(whole.Payload) || !bytes.HasPrefix(whole.Payload, head.Payload) {
					t.Fatalf("%s: head of %d bytes %+v (payload %d) differs from %+v", level, n, head, plen, whole)
				}
				// Its head re-encoded, with the rest of the payload behind
				// it, is the packet.
				out, err := AppendPublishHead(nil, level, &head, plen)
				if err != nil || !bytes.Equal(append(out, whole.Payload...), data) {
					t.Fatalf("%s: head re-encoded %x %v", level, out, err)
				}
			}
		}
	})
}
