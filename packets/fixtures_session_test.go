package packets

// Raw-byte fixtures of the packets after CONNECT, one comment per field.
// Each is decoded at the protocol levels it lists: a valid fixture must be
// accepted at each and re-encode to its own bytes (unless loose: a valid
// but not shortest MQTT 5 acknowledgement), an invalid one refused at each
// with its code and rule.

type pfix struct {
	name   string
	levels []Level
	pkt    []byte
	rule   string     // invalid fixtures: the rule the error cites ("" when none)
	code   ReasonCode // invalid fixtures: the reason the error carries
	loose  bool       // valid, not the canonical encoding
	as     Type       // the decoder to use; 0: the one of the type byte
}

var (
	lv3   = []Level{V31, V311}
	lv311 = []Level{V311}
	lv31  = []Level{V31}
	lv5   = []Level{V5}
	lvAll = []Level{V31, V311, V5}
)

var validAfterConnect = []pfix{
	// PUBLISH
	{name: "PUBLISH 3.1.1 QoS 0", levels: lv3, pkt: pkt(0x30, // PUBLISH, QoS 0
		s("a/b"),     // topic name
		[]byte("hi"), // payload
	)},
	{name: "PUBLISH 3.1.1 QoS 1 DUP RETAIN", levels: lv3, pkt: pkt(0x3B, // PUBLISH, DUP, QoS 1, RETAIN
		s("sensors/42/temp"), // topic name
		b(0x00, 0x07),        // packet identifier 7
		[]byte("21.5"),       // payload
	)},
	{name: "PUBLISH 3.1.1 QoS 2 empty payload", levels: lv3, pkt: pkt(0x34, // PUBLISH, QoS 2
		s("t"),        // topic name
		b(0x12, 0x34), // packet identifier 0x1234; no payload: clears a retained message
	)},
	{name: "PUBLISH 3.1.1 UTF-8 topic, binary payload", levels: lv3, pkt: pkt(0x31, // PUBLISH, QoS 0, RETAIN
		s("Zürich/€/😀"),     // topic name with 2-, 3- and 4-byte characters
		b(0x00, 0xFF, 0x2B), // payload: any bytes, '+' included
	)},
	{name: "PUBLISH 3.1.1 topic of separators", levels: lv3, pkt: pkt(0x30, // PUBLISH, QoS 0
		s("/"), // topic name "/": two empty levels, valid
	)},
	{name: "PUBLISH 5 QoS 0 no properties", levels: lv5, pkt: pkt(0x30, // PUBLISH, QoS 0
		s("a/b"),     // topic name
		props(),      // property length 0
		[]byte("hi"), // payload
	)},
	{name: "PUBLISH 5 every PUBLISH property", levels: lv5, pkt: pkt(0x3A, // PUBLISH, DUP, QoS 1
		s("req/42"), // topic name
		b(0, 9),     // packet identifier 9
		props(
			b(0x01, 1),                     // payload format: UTF-8
			b(0x02, 0, 0, 0x0E, 0x10),      // message expiry 3600 s
			b(0x03), s("application/json"), // content type
			b(0x08), s("resp/42"), // response topic
			b(0x09), s("\x00\x01corr"), // correlation data
			b(0x0B, 0x81, 0x01),     // subscription identifier 129 (two-byte varint)
			b(0x0B, 0x02),           // subscription identifier 2: may repeat in PUBLISH
			b(0x23, 0, 5),           // topic alias 5
			b(0x26), s("k"), s("v"), // user property k=v
			b(0x26), s("k"), s("v"), // the same user property again
		),
		[]byte(`{"t":21.5}`), // payload
	)},
	{name: "PUBLISH 5 topic alias only", levels: lv5, pkt: pkt(0x32, // PUBLISH, QoS 1
		s(""),                // empty topic name: the alias stands for it
		b(0, 1),              // packet identifier 1
		props(b(0x23, 0, 3)), // topic alias 3
		[]byte("x"),          // payload
	)},
	{name: "PUBLISH 5 topic and alias", levels: lv5, pkt: pkt(0x30, // PUBLISH, QoS 0
		s("a/long/topic/name"),     // topic name: sets alias 0xFFFF
		props(b(0x23, 0xFF, 0xFF)), // topic alias 65535
	)},

	// SUBSCRIBE
	{name: "SUBSCRIBE 3.1.1 one filter", levels: lv3, pkt: pkt(0x82, // SUBSCRIBE, flags 0010
		b(0, 10),   // packet identifier 10
		s("a/+/c"), // topic filter
		b(1),       // requested QoS 1
	)},
	{name: "SUBSCRIBE 3.1.1 wildcards and shared", levels: lv3, pkt: pkt(0x82, // SUBSCRIBE
		b(0xFF, 0xFF), // packet identifier 65535
		s("#"), b(0),  // multi-level wildcard alone, QoS 0
		s("+"), b(1), // single-level wildcard alone, QoS 1
		s("sport/tennis/#"), b(2), // '#' last, QoS 2
		s("+/+/x/+"), b(0), // several '+'
		s("/"), b(0), // two empty levels
		s("$share/grp/a/#"), b(1), // shared subscription (brokers accept it from 3.1.1)
		s("$share"), b(0), // not shared: a plain one-level filter
		s("$SYS/#"), b(0), // '$' topics
	)},
	{name: "SUBSCRIBE 3.1.1 invalid filters decode", levels: lv3, pkt: pkt(0x82, // SUBSCRIBE
		b(0, 1),         // packet identifier 1
		s("ok/+"), b(0), // filter 0: valid
		s(""), b(0), // filter 1: empty [MQTT-4.7.3-1]
		s("a/#/b"), b(1), // filter 2: '#' not last [MQTT-4.7.1-1]
		s("a+/b"), b(1), // filter 3: '+' not alone [MQTT-4.7.1-2]
		s("a/b#"), b(2), // filter 4: '#' not alone [MQTT-4.7.1-1]
		s("$share//x"), b(0), // filter 5: empty share name [MQTT-4.8.2-1]
		s("$share/g"), b(0), // filter 6: no filter after the share name [MQTT-4.8.2-2]
		s("$share/g+/x"), b(0), // filter 7: wildcard in share name [MQTT-4.8.2-2]
		s("$share/g/"), b(0), // filter 8: empty filter after the share name [MQTT-4.8.2-2]
		s("$share/g/a#"), b(0), // filter 9: shared filter itself invalid [MQTT-4.7.1-1]
	)},
	{name: "SUBSCRIBE 5 options and properties", levels: lv5, pkt: pkt(0x82, // SUBSCRIBE
		b(0, 2), // packet identifier 2
		props(
			b(0x0B, 0xFF, 0xFF, 0xFF, 0x7F), // subscription identifier 268,435,455
			b(0x26), s("client"), s("x"),    // user property
		),
		s("a/b"), b(0x2E), // QoS 2, no local, retain as published, retain handling 2
		s("c/#"), b(0x11), // QoS 1, retain handling 1
		s("$share/g/d"), b(0x08), // shared: retain as published, QoS 0 (no local not set)
	)},
	{name: "SUBSCRIBE 5 no properties", levels: lv5, pkt: pkt(0x82, // SUBSCRIBE
		b(0, 3), // packet identifier 3
		props(), // property length 0
		s("x"),  // topic filter
		b(0x00), // QoS 0
	)},

	// SUBACK
	{name: "SUBACK 3.1.1", levels: lv311, pkt: pkt(0x90, // SUBACK
		b(0, 10),            // packet identifier 10
		b(0x00, 0x01, 0x02), // granted QoS 0, 1, 2
		b(0x80),             // failure [MQTT-3.9.3-2]
	)},
	{name: "SUBACK 3.1", levels: lv31, pkt: pkt(0x90, // SUBACK
		b(0, 10),      // packet identifier 10
		b(0x02, 0x00), // granted QoS 2, 0
	)},
	{name: "SUBACK 5", levels: lv5, pkt: pkt(0x90, // SUBACK
		b(0, 2), // packet identifier 2
		props(
			b(0x1F), s("some refused"), // reason string
			b(0x26), s("a"), s("b"), // user property
		),
		b(0x02, 0x87, 0x8F, 0x9E, 0xA1, 0xA2, 0x00, 0x91, 0x97, 0x80, 0x83, 0x01), // one code per filter
	)},
	{name: "SUBACK 5 no properties", levels: lv5, pkt: pkt(0x90, // SUBACK
		b(0, 2), // packet identifier 2
		props(), // property length 0
		b(0x01), // granted QoS 1
	)},

	// UNSUBSCRIBE
	{name: "UNSUBSCRIBE 3.1.1", levels: lv3, pkt: pkt(0xA2, // UNSUBSCRIBE, flags 0010
		b(0, 11),        // packet identifier 11
		s("a/+/c"),      // topic filter
		s("$share/g/#"), // shared topic filter
		s("a/#/b"),      // invalid topic filter: decodes, flagged
	)},
	{name: "UNSUBSCRIBE 5", levels: lv5, pkt: pkt(0xA2, // UNSUBSCRIBE
		b(0, 12),                       // packet identifier 12
		props(b(0x26), s("k"), s("v")), // user property
		s("x/y"),                       // topic filter
	)},

	// UNSUBACK
	{name: "UNSUBACK 3.1.1", levels: lv3, pkt: pkt(0xB0, // UNSUBACK
		b(0, 11), // packet identifier 11, nothing else
	)},
	{name: "UNSUBACK 5", levels: lv5, pkt: pkt(0xB0, // UNSUBACK
		b(0, 12),                    // packet identifier 12
		props(b(0x1F), s("partly")), // reason string
		b(0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91), // every UNSUBACK code
	)},

	// PUBACK, PUBREC, PUBREL, PUBCOMP
	{name: "PUBACK 3.1.1", levels: lv3, pkt: pkt(0x40, b(0, 1))},           // PUBACK, packet identifier 1
	{name: "PUBREC 3.1.1", levels: lv3, pkt: pkt(0x50, b(0, 2))},           // PUBREC, packet identifier 2
	{name: "PUBREL 3.1.1", levels: lv3, pkt: pkt(0x62, b(0, 3))},           // PUBREL, flags 0010, packet identifier 3
	{name: "PUBCOMP 3.1.1", levels: lv3, pkt: pkt(0x70, b(1, 0))},          // PUBCOMP, packet identifier 256
	{name: "PUBACK 5 success short", levels: lv5, pkt: pkt(0x40, b(0, 1))}, // remaining length 2: success, no properties
	{name: "PUBACK 5 code", levels: lv5, pkt: pkt(0x40,
		b(0, 1), // packet identifier 1
		b(0x10), // no matching subscribers; no property length
	)},
	{name: "PUBACK 5 code and properties", levels: lv5, pkt: pkt(0x40,
		b(0, 1),                     // packet identifier 1
		b(0x87),                     // not authorized
		props(b(0x1F), s("denied")), // reason string
	)},
	{name: "PUBACK 5 success with properties", levels: lv5, pkt: pkt(0x40,
		b(0, 1),                        // packet identifier 1
		b(0x00),                        // success, written because properties follow
		props(b(0x26), s("k"), s("v")), // user property
	)},
	{name: "PUBREC 5 code", levels: lv5, pkt: pkt(0x50, b(0, 2), b(0x91))},  // packet identifier in use
	{name: "PUBREL 5 code", levels: lv5, pkt: pkt(0x62, b(0, 3), b(0x92))},  // packet identifier not found
	{name: "PUBCOMP 5 code", levels: lv5, pkt: pkt(0x70, b(0, 4), b(0x92))}, // packet identifier not found
	{name: "PUBACK 5 loose success code", levels: lv5, loose: true, pkt: pkt(0x40,
		b(0, 1), // packet identifier 1
		b(0x00), // success written out: allowed, not shortest
	)},
	{name: "PUBACK 5 loose empty properties", levels: lv5, loose: true, pkt: pkt(0x40,
		b(0, 1), // packet identifier 1
		b(0x10), // no matching subscribers
		props(), // property length 0: allowed, not shortest
	)},

	// DISCONNECT
	{name: "DISCONNECT 3.1.1", levels: lvAll, pkt: pkt(0xE0)}, // no body (v5: normal disconnection)
	{name: "DISCONNECT 5 with will", levels: lv5, pkt: pkt(0xE0,
		b(0x04), // disconnect with will message; no property length
	)},
	{name: "DISCONNECT 5 properties", levels: lv5, pkt: pkt(0xE0,
		b(0x00), // normal disconnection
		props(
			b(0x11, 0, 0, 0, 0), // session expiry 0
			b(0x1F), s("bye"),   // reason string
			b(0x26), s("k"), s("v"), // user property
			b(0x1C), s("other:1883"), // server reference
		),
	)},
	{name: "DISCONNECT 5 loose", levels: lv5, loose: true, pkt: pkt(0xE0,
		b(0x00), // normal disconnection written out
		props(), // property length 0
	)},
}

var invalidAfterConnect = []pfix{
	// PUBLISH
	{name: "PUBLISH QoS 3", levels: lvAll, code: MalformedPacket, rule: "MQTT-3.3.1-4", pkt: pkt(0x36,
		s("t"), b(0, 1))}, // flags: QoS bits 11
	{name: "PUBLISH DUP with QoS 0", levels: lvAll, code: MalformedPacket, rule: "MQTT-3.3.1-2", pkt: pkt(0x38,
		s("t"))}, // flags: DUP, QoS 0
	{name: "PUBLISH QoS 1 packet identifier 0", levels: lv3, code: ProtocolError, rule: "MQTT-2.2.1-3", pkt: pkt(0x32,
		s("t"), b(0, 0))},
	{name: "PUBLISH 5 QoS 2 packet identifier 0", levels: lv5, code: ProtocolError, rule: "MQTT-2.2.1-3", pkt: pkt(0x34,
		s("t"), b(0, 0), props())},
	{name: "PUBLISH topic with +", levels: lv3, code: TopicNameInvalid, rule: "MQTT-3.3.2-2", pkt: pkt(0x30,
		s("a/+/c"))},
	{name: "PUBLISH 5 topic with #", levels: lv5, code: TopicNameInvalid, rule: "MQTT-3.3.2-2", pkt: pkt(0x30,
		s("a/#"), props())},
	{name: "PUBLISH topic not UTF-8", levels: lvAll, code: MalformedPacket, rule: "MQTT-1.5.4-1", pkt: pkt(0x30,
		s("a\xff"), props())},
	{name: "PUBLISH topic with surrogate", levels: lvAll, code: MalformedPacket, rule: "MQTT-1.5.4-1", pkt: pkt(0x30,
		s("\xed\xa0\x80"), props())}, // U+D800 encoded
	{name: "PUBLISH topic with U+0000", levels: lvAll, code: MalformedPacket, rule: "MQTT-1.5.4-2", pkt: pkt(0x30,
		s("a\x00b"), props())},
	{name: "PUBLISH 3.1.1 empty topic", levels: lv3, code: ProtocolError, rule: "MQTT-4.7.3-1", pkt: pkt(0x30,
		s(""), []byte("x"))},
	{name: "PUBLISH 5 empty topic without alias", levels: lv5, code: ProtocolError, rule: "MQTT-3.3.2.1", pkt: pkt(0x30,
		s(""), props(b(0x02, 0, 0, 0, 1)), []byte("x"))},
	{name: "PUBLISH 5 topic alias 0", levels: lv5, code: TopicAliasInvalid, rule: "MQTT-3.3.2-8", pkt: pkt(0x30,
		s("t"), props(b(0x23, 0, 0)))},
	{name: "PUBLISH 5 topic alias twice", levels: lv5, code: ProtocolError, rule: "MQTT-3.3.2.3", pkt: pkt(0x30,
		s("t"), props(b(0x23, 0, 1), b(0x23, 0, 2)))},
	{name: "PUBLISH 5 message expiry twice", levels: lv5, code: ProtocolError, rule: "MQTT-3.3.2.3", pkt: pkt(0x30,
		s("t"), props(b(0x02, 0, 0, 0, 1), b(0x02, 0, 0, 0, 1)))},
	{name: "PUBLISH 5 CONNECT property", levels: lv5, code: MalformedPacket, rule: "MQTT-2.2.2-2", pkt: pkt(0x30,
		s("t"), props(b(0x11, 0, 0, 0, 1)))}, // session expiry
	{name: "PUBLISH 5 reason string", levels: lv5, code: MalformedPacket, rule: "MQTT-2.2.2-2", pkt: pkt(0x30,
		s("t"), props(b(0x1F), s("x")))},
	{name: "PUBLISH 5 unknown property", levels: lv5, code: MalformedPacket, rule: "MQTT-2.2.2-2", pkt: pkt(0x30,
		s("t"), props(b(0x7F, 0)))},
	{name: "PUBLISH 5 payload format 2", levels: lv5, code: ProtocolError, rule: "MQTT-3.3.2.3.2", pkt: pkt(0x30,
		s("t"), props(b(0x01, 2)))},
	{name: "PUBLISH 5 subscription identifier 0", levels: lv5, code: ProtocolError, rule: "MQTT-3.3.2.3.8", pkt: pkt(0x30,
		s("t"), props(b(0x0B, 0)))},
	{name: "PUBLISH 5 response topic with wildcard", levels: lv5, code: ProtocolError, rule: "MQTT-3.3.2-14", pkt: pkt(0x30,
		s("t"), props(b(0x08), s("r/#")))},
	{name: "PUBLISH 5 empty response topic", levels: lv5, code: ProtocolError, rule: "MQTT-4.7.3-1", pkt: pkt(0x30,
		s("t"), props(b(0x08), s("")))},
	{name: "PUBLISH 5 user property not UTF-8", levels: lv5, code: MalformedPacket, rule: "MQTT-1.5.4-1", pkt: pkt(0x30,
		s("t"), props(b(0x26), s("k"), s("\xc0\x80")))}, // overlong NUL
	{name: "PUBLISH 5 properties longer than packet", levels: lv5, code: MalformedPacket, pkt: pkt(0x30,
		s("t"), b(9), b(0x23, 0, 1))},
	{name: "PUBLISH 5 property value truncated", levels: lv5, code: MalformedPacket, pkt: pkt(0x30,
		s("t"), b(2), b(0x23, 0))}, // property length 2 holds only half the alias
	{name: "PUBLISH 5 non-minimal property length", levels: lv5, code: MalformedPacket, rule: "MQTT-1.5.5-1", pkt: pkt(0x30,
		s("t"), b(0x80, 0x00))},
	{name: "PUBLISH 5 non-minimal subscription identifier", levels: lv5, code: MalformedPacket, rule: "MQTT-1.5.5-1", pkt: pkt(0x30,
		s("t"), props(b(0x0B, 0x81, 0x00)))},
	{name: "PUBLISH topic longer than packet", levels: lvAll, code: MalformedPacket, pkt: pkt(0x30,
		b(0, 9), []byte("abc"))},
	{name: "PUBLISH QoS 1 without packet identifier", levels: lv3, code: MalformedPacket, pkt: pkt(0x32,
		s("t"), b(7))}, // one byte of identifier
	{name: "PUBLISH non-minimal remaining length", levels: lvAll, code: MalformedPacket, rule: "MQTT-1.5.5-1", pkt: b(0x30,
		0x83, 0x00, 0, 1, 't')},
	{name: "PUBLISH bytes after the packet", levels: lv3, code: MalformedPacket, pkt: append(pkt(0x30, s("t")), 0xC0, 0)},
	{name: "PUBLISH decoder given a PUBACK", levels: lvAll, code: ProtocolError, as: PUBLISH, pkt: pkt(0x40, b(0, 1))},

	// SUBSCRIBE
	{name: "SUBSCRIBE flags 0000", levels: lvAll, code: MalformedPacket, rule: "MQTT-3.8.1-1", pkt: pkt(0x80,
		b(0, 1), props(), s("a"), b(0))},
	{name: "SUBSCRIBE flags with DUP", levels: lvAll, code: MalformedPacket, rule: "MQTT-3.8.1-1", pkt: pkt(0x8A,
		b(0, 1), props(), s("a"), b(0))},
	{name: "SUBSCRIBE packet identifier 0", levels: lv3, code: ProtocolError, rule: "MQTT-2.2.1-3", pkt: pkt(0x82,
		b(0, 0), s("a"), b(0))},
	{name: "SUBSCRIBE no filter", levels: lv3, code: ProtocolError, rule: "MQTT-3.8.3-2", pkt: pkt(0x82,
		b(0, 1))},
	{name: "SUBSCRIBE 5 no filter", levels: lv5, code: ProtocolError, rule: "MQTT-3.8.3-2", pkt: pkt(0x82,
		b(0, 1), props(b(0x26), s("k"), s("v")))},
	{name: "SUBSCRIBE 3.1.1 QoS 3", levels: lv3, code: MalformedPacket, rule: "MQTT-3-8.3-4", pkt: pkt(0x82,
		b(0, 1), s("a"), b(3))},
	{name: "SUBSCRIBE 3.1.1 v5 option bits", levels: lv3, code: MalformedPacket, rule: "MQTT-3-8.3-4", pkt: pkt(0x82,
		b(0, 1), s("a"), b(0x04))}, // no local does not exist in 3.1.1
	{name: "SUBSCRIBE 5 reserved option bits", levels: lv5, code: MalformedPacket, rule: "MQTT-3.8.3-5", pkt: pkt(0x82,
		b(0, 1), props(), s("a"), b(0x41))},
	{name: "SUBSCRIBE 5 QoS 3", levels: lv5, code: ProtocolError, rule: "MQTT-3.8.3.1", pkt: pkt(0x82,
		b(0, 1), props(), s("a"), b(0x03))},
	{name: "SUBSCRIBE 5 retain handling 3", levels: lv5, code: ProtocolError, rule: "MQTT-3.8.3.1", pkt: pkt(0x82,
		b(0, 1), props(), s("a"), b(0x31))},
	{name: "SUBSCRIBE 5 no local on a shared subscription", levels: lv5, code: ProtocolError, rule: "MQTT-3.8.3-4", pkt: pkt(0x82,
		b(0, 1), props(), s("ok"), b(0x04), s("$share/g/a"), b(0x05))},
	{name: "SUBSCRIBE 5 subscription identifier 0", levels: lv5, code: ProtocolError, rule: "MQTT-3.8.2.1.2", pkt: pkt(0x82,
		b(0, 1), props(b(0x0B, 0)), s("a"), b(0))},
	{name: "SUBSCRIBE 5 subscription identifier twice", levels: lv5, code: ProtocolError, rule: "MQTT-3.8.2.1", pkt: pkt(0x82,
		b(0, 1), props(b(0x0B, 1), b(0x0B, 2)), s("a"), b(0))},
	{name: "SUBSCRIBE 5 topic alias property", levels: lv5, code: MalformedPacket, rule: "MQTT-2.2.2-2", pkt: pkt(0x82,
		b(0, 1), props(b(0x23, 0, 1)), s("a"), b(0))},
	{name: "SUBSCRIBE filter without options", levels: lv3, code: MalformedPacket, pkt: pkt(0x82,
		b(0, 1), s("a"), b(0), s("b"))},
	{name: "SUBSCRIBE 5 filter without options", levels: lv5, code: MalformedPacket, pkt: pkt(0x82,
		b(0, 1), props(), s("a"))}, // mochi-mqtt panics on this one
	{name: "SUBSCRIBE filter not UTF-8", levels: lv3, code: MalformedPacket, rule: "MQTT-1.5.4-1", pkt: pkt(0x82,
		b(0, 1), s("a/\xfe"), b(0))},
	{name: "SUBSCRIBE filter with U+0000", levels: lv3, code: MalformedPacket, rule: "MQTT-1.5.4-2", pkt: pkt(0x82,
		b(0, 1), s("a/\x00"), b(0))},
	{name: "SUBSCRIBE filter longer than packet", levels: lv3, code: MalformedPacket, pkt: pkt(0x82,
		b(0, 1), b(0, 5), []byte("ab"))},

	// SUBACK
	{name: "SUBACK no code", levels: lv3, code: ProtocolError, rule: "MQTT-3.8.4-6", pkt: pkt(0x90, b(0, 1))},
	{name: "SUBACK 5 no code", levels: lv5, code: ProtocolError, rule: "MQTT-3.8.4-6", pkt: pkt(0x90, b(0, 1), props())},
	{name: "SUBACK 3.1.1 v5 failure code", levels: lv311, code: ProtocolError, rule: "MQTT-3.9.3-2", pkt: pkt(0x90,
		b(0, 1), b(0x00, 0x87))},
	{name: "SUBACK 3.1.1 QoS 3", levels: lv311, code: ProtocolError, rule: "MQTT-3.9.3-2", pkt: pkt(0x90,
		b(0, 1), b(0x03))},
	{name: "SUBACK 3.1 failure code", levels: lv31, code: ProtocolError, rule: "MQTT-3.1 3.9", pkt: pkt(0x90,
		b(0, 1), b(0x80))}, // 0x80 came with 3.1.1
	{name: "SUBACK 5 code not for SUBACK", levels: lv5, code: ProtocolError, rule: "MQTT-3.9.3", pkt: pkt(0x90,
		b(0, 1), props(), b(0x01, 0x81))}, // malformed packet is a DISCONNECT code
	{name: "SUBACK flags", levels: lvAll, code: MalformedPacket, rule: "MQTT-2.1.3-1", pkt: pkt(0x92,
		b(0, 1), props(), b(0))},
	{name: "SUBACK packet identifier 0", levels: lv3, code: ProtocolError, rule: "MQTT-2.2.1-6", pkt: pkt(0x90,
		b(0, 0), b(0))},
	{name: "SUBACK 5 subscription identifier property", levels: lv5, code: MalformedPacket, rule: "MQTT-2.2.2-2", pkt: pkt(0x90,
		b(0, 1), props(b(0x0B, 1)), b(0))},
	{name: "SUBACK 5 reason string twice", levels: lv5, code: ProtocolError, rule: "MQTT-3.9.2.1", pkt: pkt(0x90,
		b(0, 1), props(b(0x1F), s("a"), b(0x1F), s("b")), b(0))},

	// UNSUBSCRIBE
	{name: "UNSUBSCRIBE flags 0000", levels: lvAll, code: MalformedPacket, rule: "MQTT-3.10.1-1", pkt: pkt(0xA0,
		b(0, 1), props(), s("a"))},
	{name: "UNSUBSCRIBE no filter", levels: lv3, code: ProtocolError, rule: "MQTT-3.10.3-2", pkt: pkt(0xA2, b(0, 1))},
	{name: "UNSUBSCRIBE 5 no filter", levels: lv5, code: ProtocolError, rule: "MQTT-3.10.3-2", pkt: pkt(0xA2, b(0, 1), props())},
	{name: "UNSUBSCRIBE packet identifier 0", levels: lv3, code: ProtocolError, rule: "MQTT-2.2.1-3", pkt: pkt(0xA2,
		b(0, 0), s("a"))},
	{name: "UNSUBSCRIBE 5 subscription identifier property", levels: lv5, code: MalformedPacket, rule: "MQTT-2.2.2-2", pkt: pkt(0xA2,
		b(0, 1), props(b(0x0B, 1)), s("a"))},
	{name: "UNSUBSCRIBE filter not UTF-8", levels: lv3, code: MalformedPacket, rule: "MQTT-1.5.4-1", pkt: pkt(0xA2,
		b(0, 1), s("\x80"))},
	{name: "UNSUBSCRIBE filter truncated", levels: lv3, code: MalformedPacket, pkt: pkt(0xA2,
		b(0, 1), s("a"), b(0))}, // a second filter's length cut short

	// UNSUBACK
	{name: "UNSUBACK 3.1.1 with a code", levels: lv3, code: MalformedPacket, rule: "MQTT-3.11.1", pkt: pkt(0xB0,
		b(0, 1), b(0))},
	{name: "UNSUBACK 5 no code", levels: lv5, code: ProtocolError, rule: "MQTT-3.11.3", pkt: pkt(0xB0, b(0, 1), props())},
	{name: "UNSUBACK 5 code not for UNSUBACK", levels: lv5, code: ProtocolError, rule: "MQTT-3.11.3", pkt: pkt(0xB0,
		b(0, 1), props(), b(0x00, 0x01))},
	{name: "UNSUBACK packet identifier 0", levels: lvAll, code: ProtocolError, rule: "MQTT-2.2.1-6", pkt: pkt(0xB0, b(0, 0))},
	{name: "UNSUBACK flags", levels: lvAll, code: MalformedPacket, rule: "MQTT-2.1.3-1", pkt: pkt(0xB8, b(0, 1))},

	// PUBACK, PUBREC, PUBREL, PUBCOMP
	{name: "PUBREL flags 0000", levels: lvAll, code: MalformedPacket, rule: "MQTT-3.6.1-1", pkt: pkt(0x60, b(0, 1))},
	{name: "PUBREL flags with DUP", levels: lvAll, code: MalformedPacket, rule: "MQTT-3.6.1-1", pkt: pkt(0x6A, b(0, 1))},
	{name: "PUBACK flags", levels: lvAll, code: MalformedPacket, rule: "MQTT-2.1.3-1", pkt: pkt(0x42, b(0, 1))},
	{name: "PUBCOMP packet identifier 0", levels: lvAll, code: ProtocolError, rule: "MQTT-2.2.1-5", pkt: pkt(0x70, b(0, 0))},
	{name: "PUBACK 3.1.1 with a code", levels: lv3, code: MalformedPacket, rule: "MQTT-3.4.1", pkt: pkt(0x40,
		b(0, 1), b(0x00))},
	{name: "PUBREC packet identifier truncated", levels: lvAll, code: MalformedPacket, pkt: pkt(0x50, b(1))},
	{name: "PUBACK 5 code for PUBREL", levels: lv5, code: ProtocolError, rule: "MQTT-2.4", pkt: pkt(0x40,
		b(0, 1), b(0x92))},
	{name: "PUBREL 5 code for PUBACK", levels: lv5, code: ProtocolError, rule: "MQTT-2.4", pkt: pkt(0x62,
		b(0, 1), b(0x10))},
	{name: "PUBCOMP 5 undefined code", levels: lv5, code: ProtocolError, rule: "MQTT-2.4", pkt: pkt(0x70,
		b(0, 1), b(0x05))},
	{name: "PUBACK 5 topic alias property", levels: lv5, code: MalformedPacket, rule: "MQTT-2.2.2-2", pkt: pkt(0x40,
		b(0, 1), b(0x00), props(b(0x23, 0, 1)))},
	{name: "PUBREC 5 byte after empty properties", levels: lv5, code: MalformedPacket, rule: "MQTT-3.5.1", pkt: pkt(0x50,
		b(0, 1), b(0x00), props(), b(0))},
	{name: "PUBACK decoder given a PUBLISH", levels: lvAll, code: ProtocolError, as: PUBACK, pkt: pkt(0x30, s("t"))},

	// DISCONNECT
	{name: "DISCONNECT flags", levels: lvAll, code: MalformedPacket, rule: "MQTT-2.1.3-1", pkt: pkt(0xE1)},
	{name: "DISCONNECT 3.1.1 with a body", levels: lv3, code: MalformedPacket, rule: "MQTT-3.14.1", pkt: pkt(0xE0, b(0))},
	{name: "DISCONNECT 5 undefined code", levels: lv5, code: ProtocolError, rule: "MQTT-2.4", pkt: pkt(0xE0, b(0x01))},
	{name: "DISCONNECT 5 topic alias property", levels: lv5, code: MalformedPacket, rule: "MQTT-2.2.2-2", pkt: pkt(0xE0,
		b(0x00), props(b(0x23, 0, 1)))},
	{name: "DISCONNECT 5 session expiry twice", levels: lv5, code: ProtocolError, rule: "MQTT-3.14.2.2", pkt: pkt(0xE0,
		b(0x00), props(b(0x11, 0, 0, 0, 1), b(0x11, 0, 0, 0, 1)))},
	{name: "DISCONNECT 5 properties longer than packet", levels: lv5, code: MalformedPacket, pkt: pkt(0xE0,
		b(0x00), b(5), b(0x1F, 0))},
}
