package packets

import "fmt"

// ReasonCode is an MQTT 5 reason code. It implements error so that a decoder
// or a decision can carry the code the client must be answered with. The v3
// return code each maps to is in the same table (V3).
type ReasonCode byte

// Reason codes used in CONNACK and DISCONNECT [MQTT-3.2.2.2], [MQTT-3.14.2.1].
const (
	Success                     ReasonCode = 0x00
	UnspecifiedError            ReasonCode = 0x80
	MalformedPacket             ReasonCode = 0x81
	ProtocolError               ReasonCode = 0x82
	ImplementationSpecificError ReasonCode = 0x83
	UnsupportedProtocolVersion  ReasonCode = 0x84
	ClientIdentifierNotValid    ReasonCode = 0x85
	BadUserNameOrPassword       ReasonCode = 0x86
	NotAuthorized               ReasonCode = 0x87
	ServerUnavailable           ReasonCode = 0x88
	ServerBusy                  ReasonCode = 0x89
	Banned                      ReasonCode = 0x8A
	ServerShuttingDown          ReasonCode = 0x8B
	PacketTooLarge              ReasonCode = 0x95
	AdministrativeAction        ReasonCode = 0x98
)

// reasons is the one table of reason codes: the v5 code, its name, and the
// MQTT 3.1/3.1.1 CONNACK return code it maps to (-1: v3 has none, the
// connection is closed without a CONNACK).
var reasons = map[ReasonCode]struct {
	name string
	v3   int
}{
	Success:                     {"success", 0x00},
	UnspecifiedError:            {"unspecified error", 0x03},
	MalformedPacket:             {"malformed packet", -1},
	ProtocolError:               {"protocol error", -1},
	ImplementationSpecificError: {"implementation specific error", 0x03},
	UnsupportedProtocolVersion:  {"unsupported protocol version", 0x01},
	ClientIdentifierNotValid:    {"client identifier not valid", 0x02},
	BadUserNameOrPassword:       {"bad user name or password", 0x04},
	NotAuthorized:               {"not authorized", 0x05},
	ServerUnavailable:           {"server unavailable", 0x03},
	ServerBusy:                  {"server busy", 0x03},
	Banned:                      {"banned", 0x05},
	ServerShuttingDown:          {"server shutting down", 0x03},
	PacketTooLarge:              {"packet too large", -1},
	AdministrativeAction:        {"administrative action", -1},
}

// V3 returns the MQTT 3.1/3.1.1 CONNACK return code for c, and false when
// v3 has no CONNACK for it (the connection is closed instead).
func (c ReasonCode) V3() (byte, bool) {
	r, ok := reasons[c]
	if !ok {
		if c < 0x80 {
			return 0, true
		}
		return 0x03, true // any other failure: server unavailable
	}
	if r.v3 < 0 {
		return 0, false
	}
	return byte(r.v3), true
}

// String returns the reason's name and code, e.g. "not authorized (0x87)".
func (c ReasonCode) String() string {
	if r, ok := reasons[c]; ok {
		return fmt.Sprintf("%s (0x%02X)", r.name, byte(c))
	}
	return fmt.Sprintf("reason 0x%02X", byte(c))
}

// Error makes a ReasonCode usable as an error.
func (c ReasonCode) Error() string { return "mqtt: " + c.String() }
