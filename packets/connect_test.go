package packets

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
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
	if r.Username != "backend" || r.PasswordFlag || !bytes.Equal(r.Properties, c.Properties) || !bytes.Equal(r.WillProperties, c.WillProperties) || r.WillTopic != "lwt/dev-5" {
		t.Fatalf("rewrite lost fields: %+v", r)
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
