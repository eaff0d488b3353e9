package packets

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

func TestDecodeConnectValid(t *testing.T) {
	for _, f := range validConnects {
		t.Run(f.name, func(t *testing.T) {
			c, err := DecodeConnect(f.pkt)
			if err != nil {
				t.Fatalf("DecodeConnect: %v", err)
			}
			out, err := AppendConnect(nil, c)
			if err != nil {
				t.Fatalf("AppendConnect: %v", err)
			}
			if !bytes.Equal(out, f.pkt) {
				t.Fatalf("round trip differs\n got %x\nwant %x", out, f.pkt)
			}
		})
	}
}

func TestDecodeConnectFields(t *testing.T) {
	c, err := DecodeConnect(validConnects[2].pkt)
	if err != nil {
		t.Fatal(err)
	}
	want := &Connect{ProtocolName: "MQTT", ProtocolLevel: V311, KeepAlive: 300, ClientID: "dev-42",
		WillFlag: true, WillQoS: 1, WillRetain: true, WillTopic: "devices/42/lwt", WillPayload: "offline",
		UsernameFlag: true, Username: "bob", PasswordFlag: true, Password: "\x00\xffbin"}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got %+v\nwant %+v", c, want)
	}

	c, err = DecodeConnect(validConnects[5].pkt)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		p    Properties
		id   PropertyID
		want Property
	}{
		{c.Properties, PropSessionExpiry, Property{ID: PropSessionExpiry, Int: 3600}},
		{c.Properties, PropReceiveMaximum, Property{ID: PropReceiveMaximum, Int: 20}},
		{c.Properties, PropMaximumPacketSize, Property{ID: PropMaximumPacketSize, Int: 65536}},
		{c.Properties, PropTopicAliasMaximum, Property{ID: PropTopicAliasMaximum, Int: 10}},
		{c.Properties, PropRequestResponseInfo, Property{ID: PropRequestResponseInfo, Int: 1}},
		{c.Properties, PropRequestProblemInfo, Property{ID: PropRequestProblemInfo, Int: 0}},
		{c.Properties, PropAuthMethod, Property{ID: PropAuthMethod, Str: "SCRAM-SHA-1"}},
		{c.Properties, PropAuthData, Property{ID: PropAuthData, Str: "\x01\x02"}},
		{c.WillProperties, PropWillDelay, Property{ID: PropWillDelay, Int: 5}},
		{c.WillProperties, PropPayloadFormat, Property{ID: PropPayloadFormat, Int: 1}},
		{c.WillProperties, PropMessageExpiry, Property{ID: PropMessageExpiry, Int: 60}},
		{c.WillProperties, PropContentType, Property{ID: PropContentType, Str: "text/plain"}},
		{c.WillProperties, PropResponseTopic, Property{ID: PropResponseTopic, Str: "reply/here"}},
		{c.WillProperties, PropCorrelationData, Property{ID: PropCorrelationData, Str: "\xca\xfe"}},
	}
	for _, ck := range checks {
		got, ok := ck.p.Get(ck.id)
		if !ok || got != ck.want {
			t.Errorf("property 0x%02X: got %+v %v, want %+v", byte(ck.id), got, ok, ck.want)
		}
	}
	if got := c.Properties.UserProperties(); !reflect.DeepEqual(got, [][2]string{{"k", "v"}, {"k", "v2"}}) {
		t.Errorf("user properties %v", got)
	}
	if _, ok := c.Properties.Get(PropWillDelay); ok {
		t.Error("will delay found in CONNECT properties")
	}
	if c.WillQoS != 2 || !c.WillRetain || !c.CleanStart || c.Username != "dave" || c.Password != "pw" || c.WillTopic != "lwt/dev-5" {
		t.Errorf("fields: %+v", c)
	}
}

func TestDecodeConnectInvalid(t *testing.T) {
	for _, f := range invalidConnects {
		t.Run(f.name, func(t *testing.T) {
			c, err := DecodeConnect(f.pkt)
			if err == nil {
				t.Fatalf("accepted: %+v", c)
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not *Error", err)
			}
			if pe.Code != f.code {
				t.Errorf("code %v, want %v (%v)", pe.Code, f.code, err)
			}
			if f.rule != "" && pe.Rule != f.rule {
				t.Errorf("rule %q, want %q (%v)", pe.Rule, f.rule, err)
			}
			if !errors.Is(err, f.code) {
				t.Errorf("errors.Is(err, %v) is false", f.code)
			}
		})
	}
}

func TestDecodeConnectTruncatedEverywhere(t *testing.T) {
	// Every proper prefix of a valid CONNECT is refused, never a panic.
	for _, f := range validConnects {
		for i := 0; i < len(f.pkt); i++ {
			if _, err := DecodeConnect(f.pkt[:i]); err == nil {
				t.Fatalf("%s: prefix of %d bytes accepted", f.name, i)
			}
		}
	}
}

// randomConnect builds a valid Connect from r.
func randomConnect(r *rand.Rand) *Connect {
	str := func(max int) string {
		const alphabet = "abcXYZ019/-_é€😀"
		var sb strings.Builder
		for n := r.IntN(max + 1); sb.Len() < n; {
			rs := []rune(alphabet)
			sb.WriteRune(rs[r.IntN(len(rs))])
		}
		return sb.String()
	}
	bin := func(max int) string {
		b := make([]byte, r.IntN(max+1))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return string(b)
	}
	c := &Connect{KeepAlive: uint16(r.Uint32())}
	switch r.IntN(3) {
	case 0:
		c.ProtocolName, c.ProtocolLevel = "MQIsdp", V31
	case 1:
		c.ProtocolName, c.ProtocolLevel = "MQTT", V311
	default:
		c.ProtocolName, c.ProtocolLevel = "MQTT", V5
	}
	c.CleanStart = r.IntN(2) == 0
	c.ClientID = str(30)
	if c.ClientID == "" && c.ProtocolLevel != V5 {
		c.ClientID, c.CleanStart = "id", true
	}
	if r.IntN(2) == 0 {
		c.WillFlag, c.WillQoS, c.WillRetain = true, byte(r.IntN(3)), r.IntN(2) == 0
		c.WillTopic = "t/" + str(10)
		c.WillPayload = bin(50)
	}
	if r.IntN(3) > 0 {
		c.UsernameFlag, c.Username = true, str(20)
	}
	if r.IntN(3) > 0 && (c.UsernameFlag || c.ProtocolLevel == V5) {
		c.PasswordFlag, c.Password = true, bin(40)
	}
	if c.ProtocolLevel == V5 {
		var p Properties
		if r.IntN(2) == 0 {
			p = p.With(Property{ID: PropSessionExpiry, Int: r.Uint32()})
		}
		for range r.IntN(3) {
			p = p.With(Property{ID: PropUserProperty, Str: str(5), Value: str(5)})
		}
		if r.IntN(2) == 0 {
			p = p.With(Property{ID: PropReceiveMaximum, Int: uint32(r.IntN(65535) + 1)})
		}
		c.Properties = p
		if c.WillFlag && r.IntN(2) == 0 {
			c.WillProperties = Properties{}.With(Property{ID: PropWillDelay, Int: r.Uint32()}).
				With(Property{ID: PropCorrelationData, Str: bin(8)})
		}
	}
	return c
}

func TestConnectEncodeDecodeRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 5000; i++ {
		c := randomConnect(r)
		enc, err := AppendConnect(nil, c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeConnect(enc)
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", c, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("decode(encode(p)) != p\n got %+v\nwant %+v", got, c)
		}
	}
}

func TestConnectRewriteCredentials(t *testing.T) {
	c, err := DecodeConnect(validConnects[5].pkt)
	if err != nil {
		t.Fatal(err)
	}
	c.Username, c.PasswordFlag, c.Password = "backend", false, ""
	out, err := AppendConnect(nil, c)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte("pw")) {
		t.Fatal("password still in rewritten CONNECT")
	}
	r, err := DecodeConnect(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.Username != "backend" || r.PasswordFlag || r.Properties != c.Properties || r.WillProperties != c.WillProperties || r.WillTopic != "lwt/dev-5" {
		t.Fatalf("rewrite lost fields: %+v", r)
	}
}

func TestReadPacket(t *testing.T) {
	valid := validConnects[2].pkt
	h, got, err := ReadPacket(bytes.NewReader(append(append([]byte{}, valid...), 0xC0, 0)), 1024)
	if err != nil || !bytes.Equal(got, valid) || h.Type != CONNECT || h.Size() != len(valid) {
		t.Fatalf("ReadPacket = %v %x %v", h, got, err)
	}

	cases := []struct {
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
	for _, c := range cases {
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

func TestConnack(t *testing.T) {
	cases := []struct {
		level Level
		sp    bool
		code  ReasonCode
		props Properties
		want  []byte
		ok    bool
	}{
		{V311, true, Success, Properties{}, b(0x20, 2, 1, 0), true},
		{V311, true, BadUserNameOrPassword, Properties{}, b(0x20, 2, 0, 4), true}, // no session present on failure
		{V31, false, NotAuthorized, Properties{}, b(0x20, 2, 0, 5), true},
		{V311, false, ClientIdentifierNotValid, Properties{}, b(0x20, 2, 0, 2), true},
		{V311, false, UnsupportedProtocolVersion, Properties{}, b(0x20, 2, 0, 1), true},
		{V311, false, ServerUnavailable, Properties{}, b(0x20, 2, 0, 3), true},
		{V311, false, MalformedPacket, Properties{}, nil, false},
		{V5, false, BadUserNameOrPassword, Properties{}, b(0x20, 3, 0, 0x86, 0), true},
		{V5, false, NotAuthorized, Properties{}.With(Property{ID: PropReasonString, Str: "no"}),
			pkt(0x20, b(0, 0x87), props(b(0x1F), s("no"))), true},
	}
	for _, c := range cases {
		got, ok := AppendConnack(nil, c.level, c.sp, c.code, c.props)
		if ok != c.ok || !bytes.Equal(got, c.want) {
			t.Errorf("AppendConnack(%d, %v, %v) = %x %v, want %x %v", c.level, c.sp, c.code, got, ok, c.want, c.ok)
			continue
		}
		if !ok {
			continue
		}
		ack, err := DecodeConnack(got, c.level)
		if err != nil {
			t.Fatalf("DecodeConnack(%x): %v", got, err)
		}
		wantCode := byte(c.code)
		if c.level != V5 {
			wantCode, _ = c.code.V3()
		}
		if ack.Code != wantCode || ack.SessionPresent != (c.sp && c.code == Success) || ack.Properties != c.props {
			t.Errorf("DecodeConnack(%x) = %+v", got, ack)
		}
	}
	for _, bad := range [][]byte{b(0x20, 2, 2, 0), b(0x20, 3, 0, 0, 9), b(0x30, 2, 0, 0), b(0x20, 1, 0), b(0x20, 4, 0, 0, 5, 0x7F)} {
		if _, err := DecodeConnack(bad, V5); err == nil {
			t.Errorf("DecodeConnack(%x) accepted", bad)
		}
	}
}

func TestDisconnect(t *testing.T) {
	if got := AppendDisconnect(nil, V5, AdministrativeAction); !bytes.Equal(got, b(0xE0, 1, 0x98)) {
		t.Errorf("v5 admin: %x", got)
	}
	if got := AppendDisconnect(nil, V5, ServerShuttingDown); !bytes.Equal(got, b(0xE0, 1, 0x8B)) {
		t.Errorf("v5 shutdown: %x", got)
	}
	if got := AppendDisconnect(nil, V311, ServerShuttingDown); !bytes.Equal(got, b(0xE0, 0)) {
		t.Errorf("v3: %x", got)
	}
}

// TestReasonTable pins DESIGN.md's "Decisions and CONNACK codes" table.
func TestReasonTable(t *testing.T) {
	table := []struct {
		v5 ReasonCode
		v3 byte
		ok bool
	}{
		{Success, 0x00, true},
		{BadUserNameOrPassword, 0x04, true},
		{NotAuthorized, 0x05, true},
		{ClientIdentifierNotValid, 0x02, true},
		{UnsupportedProtocolVersion, 0x01, true},
		{ServerUnavailable, 0x03, true},
		{MalformedPacket, 0, false},
		{ProtocolError, 0, false},
	}
	for _, r := range table {
		v3, ok := r.v5.V3()
		if v3 != r.v3 || ok != r.ok {
			t.Errorf("%v.V3() = 0x%02X %v, want 0x%02X %v", r.v5, v3, ok, r.v3, r.ok)
		}
	}
	if NotAuthorized.Error() != "mqtt: not authorized (0x87)" {
		t.Errorf("Error() = %q", NotAuthorized.Error())
	}
}

func TestPeekLevel(t *testing.T) {
	for _, f := range validConnects {
		c, _ := DecodeConnect(f.pkt)
		if got := PeekLevel(f.pkt); got != c.ProtocolLevel {
			t.Errorf("%s: PeekLevel = %d, want %d", f.name, got, c.ProtocolLevel)
		}
	}
	for _, p := range [][]byte{nil, b(0x10), b(0x10, 2, 0, 4), b(0x30, 3, 0, 1, 'x'), pkt(0x10, s("MQTT"))} {
		if got := PeekLevel(p); got != 0 {
			t.Errorf("PeekLevel(%x) = %d, want 0", p, got)
		}
	}
	if got := PeekLevel(pkt(0x10, s("MQTT"), b(5), b(0x01))); got != 5 {
		t.Errorf("PeekLevel of a malformed v5 CONNECT = %d", got)
	}
}
