package packets

import "fmt"

// ReasonCode is an MQTT 5 reason code. It implements error so that a decoder
// or a decision can carry the code the client must be answered with. The v3
// return code each maps to is in the same table (V3).
type ReasonCode byte

// Reason codes [MQTT-2.4], Table 2-6. 0x00 is Success, Normal disconnection
// (DISCONNECT) and Granted QoS 0 (SUBACK).
const (
	Success                             ReasonCode = 0x00
	NormalDisconnection                 ReasonCode = 0x00
	GrantedQoS0                         ReasonCode = 0x00
	GrantedQoS1                         ReasonCode = 0x01
	GrantedQoS2                         ReasonCode = 0x02
	DisconnectWithWill                  ReasonCode = 0x04
	NoMatchingSubscribers               ReasonCode = 0x10
	NoSubscriptionExisted               ReasonCode = 0x11
	ContinueAuthentication              ReasonCode = 0x18
	ReAuthenticate                      ReasonCode = 0x19
	UnspecifiedError                    ReasonCode = 0x80
	MalformedPacket                     ReasonCode = 0x81
	ProtocolError                       ReasonCode = 0x82
	ImplementationSpecificError         ReasonCode = 0x83
	UnsupportedProtocolVersion          ReasonCode = 0x84
	ClientIdentifierNotValid            ReasonCode = 0x85
	BadUserNameOrPassword               ReasonCode = 0x86
	NotAuthorized                       ReasonCode = 0x87
	ServerUnavailable                   ReasonCode = 0x88
	ServerBusy                          ReasonCode = 0x89
	Banned                              ReasonCode = 0x8A
	ServerShuttingDown                  ReasonCode = 0x8B
	BadAuthenticationMethod             ReasonCode = 0x8C
	KeepAliveTimeout                    ReasonCode = 0x8D
	SessionTakenOver                    ReasonCode = 0x8E
	TopicFilterInvalid                  ReasonCode = 0x8F
	TopicNameInvalid                    ReasonCode = 0x90
	PacketIdentifierInUse               ReasonCode = 0x91
	PacketIdentifierNotFound            ReasonCode = 0x92
	ReceiveMaximumExceeded              ReasonCode = 0x93
	TopicAliasInvalid                   ReasonCode = 0x94
	PacketTooLarge                      ReasonCode = 0x95
	MessageRateTooHigh                  ReasonCode = 0x96
	QuotaExceeded                       ReasonCode = 0x97
	AdministrativeAction                ReasonCode = 0x98
	PayloadFormatInvalid                ReasonCode = 0x99
	RetainNotSupported                  ReasonCode = 0x9A
	QoSNotSupported                     ReasonCode = 0x9B
	UseAnotherServer                    ReasonCode = 0x9C
	ServerMoved                         ReasonCode = 0x9D
	SharedSubscriptionsNotSupported     ReasonCode = 0x9E
	ConnectionRateExceeded              ReasonCode = 0x9F
	MaximumConnectTime                  ReasonCode = 0xA0
	SubscriptionIdentifiersNotSupported ReasonCode = 0xA1
	WildcardSubscriptionsNotSupported   ReasonCode = 0xA2
)

// Packet sets for the table: the packets a code may be sent in (Table 2-6).
const (
	inConnack    = 1 << CONNACK
	inPuback     = 1 << PUBACK
	inPubrec     = 1 << PUBREC
	inPubrel     = 1 << PUBREL
	inPubcomp    = 1 << PUBCOMP
	inSuback     = 1 << SUBACK
	inUnsuback   = 1 << UNSUBACK
	inDisconnect = 1 << DISCONNECT
	inAuth       = 1 << AUTH
	// inFailure: the packets of the common failure codes 0x80, 0x83, 0x87.
	inFailure = inConnack | inPuback | inPubrec | inSuback | inUnsuback | inDisconnect
)

// reasons is the one table of reason codes: the v5 code, its name, the
// MQTT 3.1/3.1.1 CONNACK return code it maps to (-1: v3 has none, the
// connection is closed without a CONNACK), and the packets MQTT 5 allows it
// in (Table 2-6).
var reasons = map[ReasonCode]struct {
	name string
	v3   int
	pkts uint16
}{
	Success:                             {"success", 0x00, inConnack | inPuback | inPubrec | inPubrel | inPubcomp | inSuback | inUnsuback | inDisconnect | inAuth},
	GrantedQoS1:                         {"granted QoS 1", 0x00, inSuback},
	GrantedQoS2:                         {"granted QoS 2", 0x00, inSuback},
	DisconnectWithWill:                  {"disconnect with will message", 0x00, inDisconnect},
	NoMatchingSubscribers:               {"no matching subscribers", 0x00, inPuback | inPubrec},
	NoSubscriptionExisted:               {"no subscription existed", 0x00, inUnsuback},
	ContinueAuthentication:              {"continue authentication", 0x00, inAuth},
	ReAuthenticate:                      {"re-authenticate", 0x00, inAuth},
	UnspecifiedError:                    {"unspecified error", 0x03, inFailure},
	MalformedPacket:                     {"malformed packet", -1, inConnack | inDisconnect},
	ProtocolError:                       {"protocol error", -1, inConnack | inDisconnect},
	ImplementationSpecificError:         {"implementation specific error", 0x03, inFailure},
	UnsupportedProtocolVersion:          {"unsupported protocol version", 0x01, inConnack},
	ClientIdentifierNotValid:            {"client identifier not valid", 0x02, inConnack},
	BadUserNameOrPassword:               {"bad user name or password", 0x04, inConnack},
	NotAuthorized:                       {"not authorized", 0x05, inFailure},
	ServerUnavailable:                   {"server unavailable", 0x03, inConnack},
	ServerBusy:                          {"server busy", 0x03, inConnack | inDisconnect},
	Banned:                              {"banned", 0x05, inConnack},
	ServerShuttingDown:                  {"server shutting down", 0x03, inDisconnect},
	BadAuthenticationMethod:             {"bad authentication method", 0x04, inConnack | inDisconnect},
	KeepAliveTimeout:                    {"keep alive timeout", -1, inDisconnect},
	SessionTakenOver:                    {"session taken over", -1, inDisconnect},
	TopicFilterInvalid:                  {"topic filter invalid", -1, inSuback | inUnsuback | inDisconnect},
	TopicNameInvalid:                    {"topic name invalid", -1, inConnack | inPuback | inPubrec | inDisconnect},
	PacketIdentifierInUse:               {"packet identifier in use", -1, inPuback | inPubrec | inSuback | inUnsuback},
	PacketIdentifierNotFound:            {"packet identifier not found", -1, inPubrel | inPubcomp},
	ReceiveMaximumExceeded:              {"receive maximum exceeded", -1, inDisconnect},
	TopicAliasInvalid:                   {"topic alias invalid", -1, inDisconnect},
	PacketTooLarge:                      {"packet too large", -1, inConnack | inDisconnect},
	MessageRateTooHigh:                  {"message rate too high", -1, inDisconnect},
	QuotaExceeded:                       {"quota exceeded", 0x05, inConnack | inPuback | inPubrec | inSuback | inDisconnect}, // max_sessions: "not authorized", as the quota will not pass by waiting
	AdministrativeAction:                {"administrative action", -1, inDisconnect},
	PayloadFormatInvalid:                {"payload format invalid", -1, inConnack | inPuback | inPubrec | inDisconnect},
	RetainNotSupported:                  {"retain not supported", -1, inConnack | inDisconnect},
	QoSNotSupported:                     {"QoS not supported", -1, inConnack | inDisconnect},
	UseAnotherServer:                    {"use another server", 0x03, inConnack | inDisconnect},
	ServerMoved:                         {"server moved", 0x03, inConnack | inDisconnect},
	SharedSubscriptionsNotSupported:     {"shared subscriptions not supported", -1, inSuback | inDisconnect},
	ConnectionRateExceeded:              {"connection rate exceeded", 0x05, inConnack | inDisconnect}, // too many failed attempts: "not authorized" rather than "come back soon"
	MaximumConnectTime:                  {"maximum connect time", -1, inDisconnect},
	SubscriptionIdentifiersNotSupported: {"subscription identifiers not supported", -1, inSuback | inDisconnect},
	WildcardSubscriptionsNotSupported:   {"wildcard subscriptions not supported", -1, inSuback | inDisconnect},
}

// V3 returns the MQTT 3.1/3.1.1 CONNACK return code for c, and false when
// v3 has no CONNACK for it (the connection is closed instead). Every error
// a decoder returns after CONNECT maps to false: a v3 server just closes.
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

// ValidFor reports whether MQTT 5 allows c in a packet of type t (Table
// 2-6): GrantedQoS1 in SUBACK, PacketIdentifierNotFound in PUBREL, etc.
func (c ReasonCode) ValidFor(t Type) bool {
	r, ok := reasons[c]
	return ok && t < 16 && r.pkts&(1<<t) != 0
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
