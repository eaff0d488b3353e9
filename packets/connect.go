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
// the packet, so a Connect stays valid after the caller reuses its buffer.
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
// included, as a server must. It makes two allocations: the Connect and one
// copy of the packet's body.
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
	d := decoder{s: string(pkt[h.HeaderLen:])}
	*c = Connect{}

	// Variable header: protocol name, level, flags, keep alive [MQTT-3.1.2].
	c.ProtocolName = d.str("protocol name")
	c.ProtocolLevel = Level(d.u8("protocol level"))
	flags := d.u8("connect flags")
	c.KeepAlive = d.u16("keep alive")
	if d.err != nil {
		return d.err
	}
	switch {
	case c.ProtocolName == "MQTT" && (c.ProtocolLevel == V311 || c.ProtocolLevel == V5):
	case c.ProtocolName == "MQIsdp" && c.ProtocolLevel == V31:
	case c.ProtocolName == "MQTT" || c.ProtocolName == "MQIsdp":
		// [MQTT-3.1.2-2]: an unsupported level gets CONNACK 0x01 (v5: 0x84).
		return &Error{Code: UnsupportedProtocolVersion, Rule: "MQTT-3.1.2-2",
			Msg: fmt.Sprintf("protocol %q level %d is not supported", c.ProtocolName, c.ProtocolLevel)}
	default:
		// [MQTT-3.1.2-1]: any other protocol name: close without CONNACK.
		return &Error{Code: MalformedPacket, Rule: "MQTT-3.1.2-1", Msg: fmt.Sprintf("protocol name %q is not MQTT", c.ProtocolName)}
	}
	v5 := c.ProtocolLevel == V5
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
	case !v5 && c.PasswordFlag && !c.UsernameFlag:
		return &Error{Code: MalformedPacket, Rule: "MQTT-3.1.2-22", Msg: "password without user name"}
	}
	if v5 {
		c.Properties = d.properties("CONNECT", propMaskConnect)
	}

	// Payload: client id, will properties, topic, payload, user name,
	// password, in this order [MQTT-3.1.3-1].
	c.ClientID = d.str("client identifier")
	if c.WillFlag {
		if v5 {
			c.WillProperties = d.properties("will", propMaskWill)
		}
		c.WillTopic = d.str("will topic")
		if d.err == nil {
			d.topicName("will topic", c.WillTopic)
		}
		c.WillPayload = d.bin("will payload")
	}
	if c.UsernameFlag {
		c.Username = d.str("user name")
	}
	if c.PasswordFlag {
		c.Password = d.bin("password")
	}
	if d.err != nil {
		return d.err
	}
	if d.off != len(d.s) {
		return &Error{Code: MalformedPacket, Rule: "MQTT-3.1.3-1", Msg: fmt.Sprintf("%d trailing bytes after the CONNECT payload", len(d.s)-d.off)}
	}
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
		rl += varintLen(c.Properties.size()) + c.Properties.size()
	}
	if c.WillFlag {
		if v5 {
			rl += varintLen(c.WillProperties.size()) + c.WillProperties.size()
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
		dst = appendVarint(dst, c.Properties.size())
		dst = append(dst, c.Properties.raw...)
	}
	dst = appendString(dst, c.ClientID)
	if c.WillFlag {
		if v5 {
			dst = appendVarint(dst, c.WillProperties.size())
			dst = append(dst, c.WillProperties.raw...)
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
