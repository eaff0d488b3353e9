package packets

import (
	"bytes"
	"math/rand/v2"
	"testing"

	paho "github.com/eclipse/paho.golang/packets"
	mochi "github.com/mochi-mqtt/server/v2/packets"
)

// Differential tests: the same bytes through this codec, mochi-mqtt's
// packets (all versions) and paho.golang's (v5 only). Where they accept, they
// must agree on every field. Where they disagree about validity, the
// disagreement must be one of those documented here, each with the rule this
// codec follows.

// connFields is the comparable view of a CONNECT that all three decoders give.
type connFields struct {
	name, clientID, willTopic, willPayload, username, password string
	level, willQoS                                             byte
	clean, will, willRetain, userFlag, passFlag                bool
	keepAlive                                                  uint16
	sessionExpiry                                              uint32
	receiveMax                                                 uint16
	authMethod                                                 string
	users                                                      int
}

func oursFields(c *Connect) connFields {
	f := connFields{name: c.ProtocolName, clientID: c.ClientID, willTopic: c.WillTopic, willPayload: c.WillPayload,
		username: c.Username, password: c.Password, level: byte(c.ProtocolLevel), willQoS: c.WillQoS, clean: c.CleanStart,
		will: c.WillFlag, willRetain: c.WillRetain, userFlag: c.UsernameFlag, passFlag: c.PasswordFlag, keepAlive: c.KeepAlive}
	if p, ok := c.Properties.Get(PropSessionExpiry); ok {
		f.sessionExpiry = p.Int
	}
	if p, ok := c.Properties.Get(PropReceiveMaximum); ok {
		f.receiveMax = uint16(p.Int)
	}
	if p, ok := c.Properties.Get(PropAuthMethod); ok {
		f.authMethod = p.Str
	}
	f.users = len(c.Properties.UserProperties())
	return f
}

// decodeMochi runs mochi's fixed header, CONNECT decoder and validator.
func decodeMochi(pkt []byte) (connFields, bool) {
	var pk mochi.Packet
	if len(pkt) < 2 || pk.FixedHeader.Decode(pkt[0]) != nil {
		return connFields{}, false
	}
	h, err := ParseHeader(pkt)
	if err != nil || h.Size() != len(pkt) || pk.FixedHeader.Type != mochi.Connect {
		return connFields{}, false
	}
	pk.FixedHeader.Remaining = h.RemainingLength
	if err := pk.ConnectDecode(pkt[h.HeaderLen:]); err != nil {
		return connFields{}, false
	}
	if code := pk.ConnectValidate(); code != mochi.CodeSuccess {
		return connFields{}, false
	}
	c := pk.Connect
	f := connFields{name: string(c.ProtocolName), clientID: c.ClientIdentifier, willTopic: c.WillTopic,
		willPayload: string(c.WillPayload), username: string(c.Username), password: string(c.Password),
		level: pk.ProtocolVersion, willQoS: c.WillQos, clean: c.Clean, will: c.WillFlag, willRetain: c.WillRetain,
		userFlag: c.UsernameFlag, passFlag: c.PasswordFlag, keepAlive: c.Keepalive}
	if pk.Properties.SessionExpiryIntervalFlag {
		f.sessionExpiry = pk.Properties.SessionExpiryInterval
	}
	f.receiveMax = pk.Properties.ReceiveMaximum
	f.authMethod = pk.Properties.AuthenticationMethod
	f.users = len(pk.Properties.User)
	return f, true
}

// decodePaho runs paho.golang's v5 reader.
func decodePaho(pkt []byte) (connFields, bool) {
	cp, err := paho.ReadPacket(bytes.NewReader(pkt))
	if err != nil {
		return connFields{}, false
	}
	c, ok := cp.Content.(*paho.Connect)
	if !ok {
		return connFields{}, false
	}
	f := connFields{name: c.ProtocolName, clientID: c.ClientID, willTopic: c.WillTopic, willPayload: string(c.WillMessage),
		username: c.Username, password: string(c.Password), level: c.ProtocolVersion, willQoS: c.WillQOS,
		clean: c.CleanStart, will: c.WillFlag, willRetain: c.WillRetain, userFlag: c.UsernameFlag, passFlag: c.PasswordFlag,
		keepAlive: c.KeepAlive}
	if p := c.Properties; p != nil {
		if p.SessionExpiryInterval != nil {
			f.sessionExpiry = *p.SessionExpiryInterval
		}
		if p.ReceiveMaximum != nil {
			f.receiveMax = *p.ReceiveMaximum
		}
		f.authMethod = p.AuthMethod
		f.users = len(p.User)
	}
	return f, true
}

// mochiDisagreement explains why mochi refuses a packet this codec accepts,
// or accepts one this codec refuses; "" means unexplained.
func mochiDisagreement(pkt []byte, ours *Connect, oursErr error) string {
	if ours != nil {
		switch {
		case ours.PasswordFlag && ours.Password == "":
			// mochi requires a non-empty password when the flag is set; the
			// spec allows zero-length binary data [MQTT-1.5.6].
			return "empty password is allowed [MQTT-1.5.6]"
		case ours.WillFlag && ours.WillPayload == "":
			// mochi refuses an empty will payload; the spec allows it
			// [MQTT-3.1.3.4] (binary data of 0..65535 bytes).
			return "empty will payload is allowed [MQTT-3.1.3-4]"
		}
		return ""
	}
	// mochi does not check these; this codec follows the rule cited.
	if pe, ok := oursErr.(*Error); ok {
		switch pe.Rule {
		case "MQTT-3.1.2-13", "MQTT-3.1.2-14", "MQTT-3.1.2-22", "MQTT-3.1.3-1", "MQTT-1.5.4-1", "MQTT-1.5.4-2",
			"MQTT-3.3.2-2", "MQTT-4.7.3-1", "MQTT-3.1.3-8", "MQTT-2.2.2-2", "MQTT-3.1.2.11", "MQTT-3.1.2.11.3",
			"MQTT-3.1.2.11.4", "MQTT-3.1.2.11.10", "MQTT-1.5.5-1", "MQTT-2.1.3-1", "MQTT-3.1 3.1":
			return pe.Rule
		}
		if pe.Code == ClientIdentifierNotValid {
			return "client identifier rules"
		}
	}
	return ""
}

func differential(t *testing.T, name string, pkt []byte) {
	t.Helper()
	ours, err := DecodeConnect(pkt)
	mf, mok := decodeMochi(pkt)
	switch {
	case err == nil && mok:
		if of := oursFields(ours); of != mf {
			t.Errorf("%s: mochi disagrees on fields\nours  %+v\nmochi %+v", name, of, mf)
		}
	case (err == nil) != mok:
		if why := mochiDisagreement(pkt, ours, err); why == "" {
			t.Errorf("%s: unexplained disagreement with mochi: ours err=%v, mochi ok=%v", name, err, mok)
		}
	}
	if len(pkt) > 9 && Level(pkt[8]) == V5 || ours != nil && ours.ProtocolLevel == V5 {
		pf, pok := decodePaho(pkt)
		if err == nil && pok {
			if of := oursFields(ours); of != pf {
				t.Errorf("%s: paho disagrees on fields\nours %+v\npaho %+v", name, of, pf)
			}
		}
		// paho validates almost nothing (it is a client library): it
		// accepts much that a server must refuse. It must never refuse
		// what we accept, except trailing-byte-free packets it cannot read.
		if err == nil && !pok {
			t.Errorf("%s: paho refuses a packet this codec accepts", name)
		}
	}
}

func TestDifferentialFixtures(t *testing.T) {
	for _, f := range validConnects {
		differential(t, f.name, f.pkt)
		// The comparison above only means something if the others read it.
		if _, ok := decodeMochi(f.pkt); !ok {
			t.Errorf("%s: mochi refuses a valid fixture", f.name)
		}
		if _, ok := decodePaho(f.pkt); Level(f.pkt[8]) == V5 && !ok {
			t.Errorf("%s: paho refuses a valid v5 fixture", f.name)
		}
	}
	for _, f := range invalidConnects {
		differential(t, f.name, f.pkt)
	}
}

func TestDifferentialRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 3000; i++ {
		c := randomConnect(r)
		pkt, err := AppendConnect(nil, c)
		if err != nil {
			t.Fatal(err)
		}
		differential(t, "random", pkt)
		// And a mutated copy: flip one byte.
		m := append([]byte{}, pkt...)
		m[r.IntN(len(m))] ^= byte(1 << r.IntN(8))
		if _, err := DecodeConnect(m); err == nil {
			differential(t, "mutated", m)
		}
	}
}
