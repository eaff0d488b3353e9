package packets

import (
	"bytes"
	"testing"
)

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

func TestDisconnectRoundTrip(t *testing.T) {
	d, err := DecodeDisconnect(validPkt("DISCONNECT 5 properties"), V5)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := d.Properties.Get(PropServerReference); !ok || p.Str != "other:1883" || d.Code != NormalDisconnection {
		t.Fatalf("%+v", d)
	}
	for _, c := range []struct {
		level Level
		code  ReasonCode
		want  []byte
	}{{V5, DisconnectWithWill, b(0xE0, 1, 4)}, {V5, Success, b(0xE0, 0)}, {V311, ProtocolError, b(0xE0, 0)}} {
		got := AppendDisconnectProperties(nil, c.level, c.code, Properties{})
		if !bytes.Equal(got, c.want) {
			t.Errorf("%s %v: %x", c.level, c.code, got)
		}
		if d, err := DecodeDisconnect(got, c.level); err != nil || c.level == V5 && d.Code != c.code {
			t.Errorf("decode %x: %+v %v", got, d, err)
		}
	}
}
