package packets

// Raw-byte fixtures, one comment per field. pkt computes the remaining
// length so that each fixture lists only the fields it is about.

func b(v ...byte) []byte { return v }

// s is a two-byte-length-prefixed string or binary field.
func s(v string) []byte { return append([]byte{byte(len(v) >> 8), byte(len(v))}, v...) }

// props is a length-prefixed v5 property list.
func props(parts ...[]byte) []byte {
	var body []byte
	for _, p := range parts {
		body = append(body, p...)
	}
	return append(appendVarint(nil, len(body)), body...)
}

// pkt is a packet: first byte, remaining length, then the fields.
func pkt(first byte, parts ...[]byte) []byte {
	var body []byte
	for _, p := range parts {
		body = append(body, p...)
	}
	return append(appendVarint([]byte{first}, len(body)), body...)
}

type fixture struct {
	name string
	pkt  []byte
	rule string     // for invalid fixtures: the rule the error cites
	code ReasonCode // for invalid fixtures: the reason the server answers
}

var validConnects = []fixture{
	{name: "3.1 MQIsdp user and password", pkt: pkt(0x10,
		s("MQIsdp"),  // protocol name
		b(3),         // protocol level 3.1
		b(0xC2),      // flags: user name, password, clean session
		b(0, 30),     // keep alive 30 s
		s("sensor1"), // client id
		s("alice"),   // user name
		s("s3cret"),  // password
	)},
	{name: "3.1.1 minimal", pkt: pkt(0x10,
		s("MQTT"), // protocol name
		b(4),      // protocol level 3.1.1
		b(0x02),   // flags: clean session
		b(0, 60),  // keep alive 60 s
		s(""),     // empty client id, allowed with clean session [MQTT-3.1.3-7]
	)},
	{name: "3.1.1 user, password, will", pkt: pkt(0x10,
		s("MQTT"),           // protocol name
		b(4),                // protocol level 3.1.1
		b(0xEC),             // flags: user, password, will retain, will QoS 1, will
		b(0x01, 0x2C),       // keep alive 300 s
		s("dev-42"),         // client id
		s("devices/42/lwt"), // will topic
		s("offline"),        // will payload
		s("bob"),            // user name
		s("\x00\xffbin"),    // password: binary data is allowed
	)},
	{name: "3.1.1 user name only, persistent session", pkt: pkt(0x10,
		s("MQTT"),  // protocol name
		b(4),       // protocol level 3.1.1
		b(0x80),    // flags: user name, clean session 0
		b(0, 0),    // keep alive off
		s("c1"),    // client id
		s("carol"), // user name
	)},
	{name: "5 minimal", pkt: pkt(0x10,
		s("MQTT"), // protocol name
		b(5),      // protocol level 5
		b(0x00),   // flags: none (clean start 0, empty id allowed in v5)
		b(0, 10),  // keep alive 10 s
		props(),   // no properties
		s(""),     // client id: server assigns
	)},
	{name: "5 every CONNECT and will property", pkt: pkt(0x10,
		s("MQTT"), // protocol name
		b(5),      // protocol level 5
		b(0xF6),   // flags: user, password, will retain, will QoS 2, will, clean start
		b(0, 60),  // keep alive 60 s
		props(
			b(0x11, 0, 0, 0x0E, 0x10), // session expiry 3600
			b(0x21, 0, 20),            // receive maximum 20
			b(0x27, 0, 1, 0, 0),       // maximum packet size 65536
			b(0x22, 0, 10),            // topic alias maximum 10
			b(0x19, 1),                // request response information
			b(0x17, 0),                // request problem information off
			b(0x26), s("k"), s("v"),   // user property k=v
			b(0x26), s("k"), s("v2"), // user property again: allowed
			b(0x15), s("SCRAM-SHA-1"), // authentication method
			b(0x16), s("\x01\x02"), // authentication data
		),
		s("dev-5"), // client id
		props(
			b(0x18, 0, 0, 0, 5),      // will delay 5 s
			b(0x01, 1),               // payload format: UTF-8
			b(0x02, 0, 0, 0, 60),     // message expiry 60 s
			b(0x03), s("text/plain"), // content type
			b(0x08), s("reply/here"), // response topic
			b(0x09), s("\xca\xfe"), // correlation data
			b(0x26), s("w"), s("1"), // user property
		),
		s("lwt/dev-5"), // will topic
		s("gone"),      // will payload
		s("dave"),      // user name
		s("pw"),        // password
	)},
	{name: "5 password without user name", pkt: pkt(0x10,
		s("MQTT"),  // protocol name
		b(5),       // protocol level 5
		b(0x42),    // flags: password, clean start (allowed in v5 [MQTT-3.1.2.9])
		b(0, 60),   // keep alive
		props(),    // no properties
		s("x"),     // client id
		s("token"), // password
	)},
}

var invalidConnects = []fixture{
	{name: "not a CONNECT", code: ProtocolError, rule: "MQTT-3.1.0-1", pkt: pkt(0x30, s("t"), s("x"))},
	{name: "fixed header flags", code: MalformedPacket, rule: "MQTT-2.1.3-1", pkt: pkt(0x11, s("MQTT"), b(4, 2, 0, 60), s("c"))},
	{name: "reserved flag", code: MalformedPacket, rule: "MQTT-3.1.2-3", pkt: pkt(0x10,
		s("MQTT"), b(4), b(0x03), b(0, 60), s("c"))}, // flags: clean session + reserved bit
	{name: "will QoS 3", code: MalformedPacket, rule: "MQTT-3.1.2-14", pkt: pkt(0x10,
		s("MQTT"), b(4), b(0x1E), b(0, 60), s("c"), s("t"), s("m"))}, // flags: will QoS 3, will, clean
	{name: "will QoS without will flag", code: MalformedPacket, rule: "MQTT-3.1.2-13", pkt: pkt(0x10,
		s("MQTT"), b(4), b(0x0A), b(0, 60), s("c"))}, // flags: will QoS 1, clean
	{name: "will retain without will flag", code: MalformedPacket, rule: "MQTT-3.1.2-15", pkt: pkt(0x10,
		s("MQTT"), b(4), b(0x22), b(0, 60), s("c"))}, // flags: will retain, clean
	{name: "3.1.1 password without user name", code: MalformedPacket, rule: "MQTT-3.1.2-22", pkt: pkt(0x10,
		s("MQTT"), b(4), b(0x42), b(0, 60), s("c"), s("pw"))},
	{name: "3.1 password without user name", code: MalformedPacket, rule: "MQTT-3.1.2-22", pkt: pkt(0x10,
		s("MQIsdp"), b(3), b(0x42), b(0, 60), s("c"), s("pw"))},
	{name: "MQTT with level 3", code: UnsupportedProtocolVersion, rule: "MQTT-3.1.2-2", pkt: pkt(0x10,
		s("MQTT"), b(3), b(0x02), b(0, 60), s("c"))},
	{name: "MQIsdp with level 4", code: UnsupportedProtocolVersion, rule: "MQTT-3.1.2-2", pkt: pkt(0x10,
		s("MQIsdp"), b(4), b(0x02), b(0, 60), s("c"))},
	{name: "level 6", code: UnsupportedProtocolVersion, rule: "MQTT-3.1.2-2", pkt: pkt(0x10,
		s("MQTT"), b(6), b(0x02), b(0, 60), s("c"))},
	{name: "unknown protocol name", code: MalformedPacket, rule: "MQTT-3.1.2-1", pkt: pkt(0x10,
		s("HTTP"), b(4), b(0x02), b(0, 60), s("c"))},
	{name: "client id not UTF-8", code: MalformedPacket, rule: "MQTT-1.5.4-1", pkt: pkt(0x10,
		s("MQTT"), b(4), b(0x02), b(0, 60), s("c\xff"))},
	{name: "client id with surrogate", code: MalformedPacket, rule: "MQTT-1.5.4-1", pkt: pkt(0x10,
		s("MQTT"), b(4), b(0x02), b(0, 60), s("\xed\xa0\x80"))}, // U+D800 encoded
	{name: "user name with U+0000", code: MalformedPacket, rule: "MQTT-1.5.4-2", pkt: pkt(0x10,
		s("MQTT"), b(4), b(0x82), b(0, 60), s("c"), s("al\x00ice"))},
	{name: "will topic with wildcard", code: ProtocolError, rule: "MQTT-3.3.2-2", pkt: pkt(0x10,
		s("MQTT"), b(4), b(0x06), b(0, 60), s("c"), s("a/#"), s("m"))},
	{name: "empty will topic", code: ProtocolError, rule: "MQTT-4.7.3-1", pkt: pkt(0x10,
		s("MQTT"), b(4), b(0x06), b(0, 60), s("c"), s(""), s("m"))},
	{name: "trailing bytes", code: MalformedPacket, rule: "MQTT-3.1.3-1", pkt: pkt(0x10,
		s("MQTT"), b(4), b(0x02), b(0, 60), s("c"), b(0xAA))},
	{name: "truncated client id", code: MalformedPacket, pkt: pkt(0x10,
		s("MQTT"), b(4), b(0x02), b(0, 60), b(0, 5), []byte("abc"))},
	{name: "user name flag, no user name", code: MalformedPacket, pkt: pkt(0x10,
		s("MQTT"), b(4), b(0x82), b(0, 60), s("c"))},
	{name: "3.1.1 empty client id, no clean session", code: ClientIdentifierNotValid, rule: "MQTT-3.1.3-8", pkt: pkt(0x10,
		s("MQTT"), b(4), b(0x00), b(0, 60), s(""))},
	{name: "3.1 empty client id", code: ClientIdentifierNotValid, pkt: pkt(0x10,
		s("MQIsdp"), b(3), b(0x02), b(0, 60), s(""))},
	{name: "5 duplicate session expiry", code: ProtocolError, rule: "MQTT-3.1.2.11", pkt: pkt(0x10,
		s("MQTT"), b(5), b(0x02), b(0, 60), props(b(0x11, 0, 0, 0, 1), b(0x11, 0, 0, 0, 2)), s("c"))},
	{name: "5 property not allowed in CONNECT", code: MalformedPacket, rule: "MQTT-2.2.2-2", pkt: pkt(0x10,
		s("MQTT"), b(5), b(0x02), b(0, 60), props(b(0x23, 0, 1)), s("c"))}, // topic alias
	{name: "5 unknown property", code: MalformedPacket, rule: "MQTT-2.2.2-2", pkt: pkt(0x10,
		s("MQTT"), b(5), b(0x02), b(0, 60), props(b(0x7F, 0)), s("c"))},
	{name: "5 will property in CONNECT properties", code: MalformedPacket, rule: "MQTT-2.2.2-2", pkt: pkt(0x10,
		s("MQTT"), b(5), b(0x02), b(0, 60), props(b(0x18, 0, 0, 0, 1)), s("c"))},
	{name: "5 CONNECT property in will properties", code: MalformedPacket, rule: "MQTT-2.2.2-2", pkt: pkt(0x10,
		s("MQTT"), b(5), b(0x06), b(0, 60), props(), s("c"), props(b(0x11, 0, 0, 0, 1)), s("t"), s("m"))},
	{name: "5 receive maximum 0", code: ProtocolError, rule: "MQTT-3.1.2.11.3", pkt: pkt(0x10,
		s("MQTT"), b(5), b(0x02), b(0, 60), props(b(0x21, 0, 0)), s("c"))},
	{name: "5 maximum packet size 0", code: ProtocolError, rule: "MQTT-3.1.2.11.4", pkt: pkt(0x10,
		s("MQTT"), b(5), b(0x02), b(0, 60), props(b(0x27, 0, 0, 0, 0)), s("c"))},
	{name: "5 request problem information 2", code: ProtocolError, rule: "MQTT-3.1.2.11", pkt: pkt(0x10,
		s("MQTT"), b(5), b(0x02), b(0, 60), props(b(0x17, 2)), s("c"))},
	{name: "5 auth data without method", code: ProtocolError, rule: "MQTT-3.1.2.11.10", pkt: pkt(0x10,
		s("MQTT"), b(5), b(0x02), b(0, 60), props(b(0x16), s("x")), s("c"))},
	{name: "5 properties longer than packet", code: MalformedPacket, pkt: pkt(0x10,
		s("MQTT"), b(5), b(0x02), b(0, 60), b(50), s("c"))},
	{name: "5 non-minimal properties length", code: MalformedPacket, rule: "MQTT-1.5.5-1", pkt: pkt(0x10,
		s("MQTT"), b(5), b(0x02), b(0, 60), b(0x80, 0x00), s("c"))},
	{name: "5 user property key not UTF-8", code: MalformedPacket, rule: "MQTT-1.5.4-1", pkt: pkt(0x10,
		s("MQTT"), b(5), b(0x02), b(0, 60), props(b(0x26), s("\xc0"), s("v")), s("c"))},
	{name: "5 response topic with wildcard", code: ProtocolError, rule: "MQTT-3.3.2-2", pkt: pkt(0x10,
		s("MQTT"), b(5), b(0x06), b(0, 60), props(), s("c"), props(b(0x08), s("r/+")), s("t"), s("m"))},
	{name: "5 payload format 2", code: ProtocolError, rule: "MQTT-3.1.2.11", pkt: pkt(0x10,
		s("MQTT"), b(5), b(0x06), b(0, 60), props(), s("c"), props(b(0x01, 2)), s("t"), s("m"))},
}
