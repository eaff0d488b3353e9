package packets

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Level is an MQTT protocol level: the "protocol version" byte of CONNECT.
type Level byte

// Protocol levels.
const (
	V31  Level = 3 // MQTT 3.1, protocol name "MQIsdp"
	V311 Level = 4 // MQTT 3.1.1, protocol name "MQTT"
	V5   Level = 5 // MQTT 5.0, protocol name "MQTT"
)

// String returns the MQTT version: "3.1", "3.1.1", "5", or "Level(n)".
func (l Level) String() string {
	switch l {
	case V31:
		return "3.1"
	case V311:
		return "3.1.1"
	case V5:
		return "5"
	}
	return fmt.Sprintf("Level(%d)", byte(l))
}

// Connect is a decoded CONNECT packet. Every field a broker sees is kept so
// that AppendConnect re-encodes a decoded packet byte-for-byte; the flags
// byte is derived from the fields. String fields share one immutable copy of
// the packet, and the property lists are copies of their own, so a Connect
// stays valid after the caller reuses its buffer.
type Connect struct {
	ProtocolName  string // "MQTT", or "MQIsdp" for 3.1
	ProtocolLevel Level  // V31, V311 or V5
	CleanStart    bool   // clean session (3.1/3.1.1), clean start (5)
	KeepAlive     uint16 // seconds
	Properties    Properties
	ClientID      string

	WillFlag       bool
	WillQoS        byte
	WillRetain     bool
	WillProperties Properties // MQTT 5 only
	WillTopic      string
	WillPayload    string

	UsernameFlag bool
	Username     string
	PasswordFlag bool
	Password     string // binary data; never log it
}

// DecodeConnect decodes and validates a whole CONNECT packet, fixed header
// included, as a server must. The Connect owns its data: it makes two
// allocations, the Connect and one copy of the packet's body, and in MQTT 5
// one more per non-empty property list.
//
// A returned error is an *Error whose Code says how to answer:
// UnsupportedProtocolVersion (CONNACK 0x01 / 0x84), ClientIdentifierNotValid
// (0x02 / 0x85), MalformedPacket or ProtocolError (v5: CONNACK 0x81 / 0x82,
// v3: close without a CONNACK). Framing errors (ErrTruncated,
// ErrMalformedLength) are wrapped in an *Error with Code MalformedPacket.
func DecodeConnect(pkt []byte) (*Connect, error) {
	c := new(Connect)
	if err := c.decode(pkt); err != nil {
		return nil, err
	}
	return c, nil
}

// decode is DecodeConnect into an existing Connect.
func (c *Connect) decode(pkt []byte) error {
	h, err := ParseHeader(pkt)
	switch {
	case err != nil:
		return &Error{Code: MalformedPacket, Rule: "MQTT-1.5.5", Msg: "CONNECT fixed header: " + err.Error()}
	case h.Type != CONNECT:
		return &Error{Code: ProtocolError, Rule: "MQTT-3.1.0-1", Msg: fmt.Sprintf("first packet is %s, not CONNECT", h.Type)}
	case h.Flags != 0:
		return &Error{Code: MalformedPacket, Rule: "MQTT-2.1.3-1", Msg: fmt.Sprintf("CONNECT fixed header flags are 0x%X, must be 0", h.Flags)}
	case h.Size() > len(pkt):
		return &Error{Code: MalformedPacket, Msg: fmt.Sprintf("CONNECT truncated: %d of %d bytes", len(pkt), h.Size())}
	case h.Size() < len(pkt):
		return &Error{Code: MalformedPacket, Msg: fmt.Sprintf("%d bytes after the CONNECT packet", len(pkt)-h.Size())}
	}
	*c = Connect{}
	w := wire{b: pkt, off: h.HeaderLen, what: CONNECT}
	var f connectFields
	if err := c.variableHeader(&w, &f); err != nil {
		return err
	}
	c.payload(&w, &f)
	if w.err != nil {
		return w.err
	}
	if w.rest() != 0 {
		return &Error{Code: MalformedPacket, Rule: "MQTT-3.1.3-1", Msg: fmt.Sprintf("%d trailing bytes after the CONNECT payload", w.rest())}
	}
	c.own(pkt, h.HeaderLen, &f)
	if c.ClientID == "" {
		switch {
		case c.ProtocolLevel == V31:
			// MQTT 3.1 requires a client identifier of 1 to 23 characters.
			return &Error{Code: ClientIdentifierNotValid, Rule: "MQTT-3.1 3.1", Msg: "empty client identifier in MQTT 3.1"}
		case c.ProtocolLevel == V311 && !c.CleanStart:
			return &Error{Code: ClientIdentifierNotValid, Rule: "MQTT-3.1.3-8", Msg: "empty client identifier without clean session"}
		}
	}
	return nil
}

// connectFields are where the fields of a CONNECT are in the packet, as
// start and end offsets, until decode copies them out.
type connectFields struct {
	name, props, clientID, willProps, willTopic, willPayload, username, password [2]int
}

func span(start, end int) [2]int { return [2]int{start, end} }

// variableHeader reads the protocol name, level, flags and keep alive
// [MQTT-3.1.2] and checks them.
func (c *Connect) variableHeader(w *wire, f *connectFields) error {
	f.name = span(w.str("protocol name"))
	c.ProtocolLevel = Level(w.u8("protocol level"))
	flags := w.u8("connect flags")
	c.KeepAlive = w.u16("keep alive")
	if w.err != nil {
		return w.err
	}
	name := w.at(f.name)
	switch mqtt, isdp := string(name) == "MQTT", string(name) == "MQIsdp"; {
	case mqtt && (c.ProtocolLevel == V311 || c.ProtocolLevel == V5):
	case isdp && c.ProtocolLevel == V31:
	case mqtt || isdp:
		// [MQTT-3.1.2-2]: an unsupported level gets CONNACK 0x01 (v5: 0x84).
		return &Error{Code: UnsupportedProtocolVersion, Rule: "MQTT-3.1.2-2",
			Msg: fmt.Sprintf("protocol %q level %d is not supported", name, c.ProtocolLevel)}
	default:
		// [MQTT-3.1.2-1]: any other protocol name: close without CONNACK.
		return &Error{Code: MalformedPacket, Rule: "MQTT-3.1.2-1", Msg: fmt.Sprintf("protocol name %q is not MQTT", name)}
	}
	if flags&0x01 != 0 {
		return &Error{Code: MalformedPacket, Rule: "MQTT-3.1.2-3", Msg: "reserved connect flag is set"}
	}
	c.CleanStart = flags&0x02 != 0
	c.WillFlag = flags&0x04 != 0
	c.WillQoS = flags >> 3 & 0x03
	c.WillRetain = flags&0x20 != 0
	c.PasswordFlag = flags&0x40 != 0
	c.UsernameFlag = flags&0x80 != 0
	switch {
	case c.WillQoS == 3:
		return &Error{Code: MalformedPacket, Rule: "MQTT-3.1.2-14", Msg: "will QoS is 3"}
	case !c.WillFlag && c.WillQoS != 0:
		return &Error{Code: MalformedPacket, Rule: "MQTT-3.1.2-13", Msg: "will QoS set without will flag"}
	case !c.WillFlag && c.WillRetain:
		return &Error{Code: MalformedPacket, Rule: "MQTT-3.1.2-15", Msg: "will retain set without will flag"}
	case c.ProtocolLevel != V5 && c.PasswordFlag && !c.UsernameFlag:
		return &Error{Code: MalformedPacket, Rule: "MQTT-3.1.2-22", Msg: "password without user name"}
	}
	return nil
}

// at returns the bytes of field f of the packet w reads.
func (w *wire) at(f [2]int) []byte { return w.b[f[0]:f[1]] }

// payload reads the properties (MQTT 5) and the payload: client id, will
// properties, topic, payload, user name, password, in this order
// [MQTT-3.1.3-1].
func (c *Connect) payload(w *wire, f *connectFields) {
	v5 := c.ProtocolLevel == V5
	if v5 {
		f.props = span(w.properties(&propTable[CONNECT]))
	}
	f.clientID = span(w.str("client identifier"))
	if c.WillFlag {
		if v5 {
			f.willProps = span(w.properties(&willRules))
		}
		f.willTopic = span(w.str("will topic"))
		w.topicName("will topic", f.willTopic[0], f.willTopic[1], "MQTT-3.3.2-2")
		f.willPayload = span(w.bin("will payload"))
	}
	if c.UsernameFlag {
		f.username = span(w.str("user name"))
	}
	if c.PasswordFlag {
		f.password = span(w.bin("password"))
	}
}

// own copies the fields out of pkt, whose body starts at from: the strings
// share one copy of the body, each property list is a copy of its own.
func (c *Connect) own(pkt []byte, from int, f *connectFields) {
	body := string(pkt[from:])
	str := func(f [2]int) string {
		if f[1] == f[0] {
			return ""
		}
		return body[f[0]-from : f[1]-from]
	}
	c.ProtocolName, c.ClientID = str(f.name), str(f.clientID)
	c.WillTopic, c.WillPayload = str(f.willTopic), str(f.willPayload)
	c.Username, c.Password = str(f.username), str(f.password)
	c.Properties = ownProperties(pkt, f.props[0], f.props[1])
	c.WillProperties = ownProperties(pkt, f.willProps[0], f.willProps[1])
}

// flags returns the connect flags byte that the fields describe.
func (c *Connect) flags() byte {
	var f byte
	if c.CleanStart {
		f |= 0x02
	}
	if c.WillFlag {
		f |= 0x04 | c.WillQoS<<3
		if c.WillRetain {
			f |= 0x20
		}
	}
	if c.PasswordFlag {
		f |= 0x40
	}
	if c.UsernameFlag {
		f |= 0x80
	}
	return f
}

// ErrFieldTooLong is returned by AppendConnect for a string or binary field
// over 65,535 bytes, or a packet over MaxRemainingLength.
var ErrFieldTooLong = errors.New("packets: field too long to encode")

// AppendConnect appends the wire encoding of c to dst. The flags byte is
// derived from the fields, properties are written as held, and every length
// is minimally encoded, so AppendConnect of a decoded packet reproduces its
// bytes exactly. Set UsernameFlag/PasswordFlag together with Username and
// Password to rewrite credentials.
func AppendConnect(dst []byte, c *Connect) ([]byte, error) {
	v5 := c.ProtocolLevel == V5
	for _, s := range []string{c.ProtocolName, c.ClientID, c.WillTopic, c.WillPayload, c.Username, c.Password} {
		if len(s) > 0xFFFF {
			return dst, ErrFieldTooLong
		}
	}
	rl := 2 + len(c.ProtocolName) + 1 + 1 + 2 + 2 + len(c.ClientID)
	if v5 {
		rl += c.Properties.sizeWithLength()
	}
	if c.WillFlag {
		if v5 {
			rl += c.WillProperties.sizeWithLength()
		}
		rl += 2 + len(c.WillTopic) + 2 + len(c.WillPayload)
	}
	if c.UsernameFlag {
		rl += 2 + len(c.Username)
	}
	if c.PasswordFlag {
		rl += 2 + len(c.Password)
	}
	if rl > MaxRemainingLength {
		return dst, ErrFieldTooLong
	}
	dst = append(dst, byte(CONNECT)<<4)
	dst = appendVarint(dst, rl)
	dst = appendString(dst, c.ProtocolName)
	dst = append(dst, byte(c.ProtocolLevel), c.flags())
	dst = binary.BigEndian.AppendUint16(dst, c.KeepAlive)
	if v5 {
		dst = appendProperties(dst, c.Properties)
	}
	dst = appendString(dst, c.ClientID)
	if c.WillFlag {
		if v5 {
			dst = appendProperties(dst, c.WillProperties)
		}
		dst = appendString(dst, c.WillTopic)
		dst = appendString(dst, c.WillPayload)
	}
	if c.UsernameFlag {
		dst = appendString(dst, c.Username)
	}
	if c.PasswordFlag {
		dst = appendString(dst, c.Password)
	}
	return dst, nil
}

// PeekLevel returns the protocol level byte of a CONNECT packet that may be
// malformed further on, or 0 when the packet does not get that far. The
// proxy uses it to answer a refused CONNECT in the client's own version.
func PeekLevel(pkt []byte) Level {
	h, err := ParseHeader(pkt)
	if err != nil || h.Type != CONNECT {
		return 0
	}
	off := h.HeaderLen
	if len(pkt) < off+2 {
		return 0
	}
	off += 2 + (int(pkt[off])<<8 | int(pkt[off+1]))
	if off >= len(pkt) {
		return 0
	}
	return Level(pkt[off])
}
