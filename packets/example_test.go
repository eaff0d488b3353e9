package packets_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// A server reads the first packet of a connection with a cap, and decodes
// it as a CONNECT; a refusal says how to answer.
func ExampleDecodeConnect() {
	c := &packets.Connect{ProtocolName: "MQTT", ProtocolLevel: packets.V311, CleanStart: true, KeepAlive: 60,
		ClientID: "dev-1", UsernameFlag: true, Username: "alice", PasswordFlag: true, Password: "secret"}
	pkt, _ := packets.AppendConnect(nil, c)

	_, first, err := packets.ReadPacket(bytes.NewReader(pkt), 4096)
	if err != nil {
		panic(err)
	}
	got, err := packets.DecodeConnect(first)
	fmt.Println(got.ProtocolLevel, got.ClientID, got.Username, err)

	pkt[8] = 9 // the protocol level, after the fixed header and "MQTT"
	_, err = packets.DecodeConnect(pkt)
	var pe *packets.Error
	if errors.As(err, &pe) {
		ack, ok := packets.AppendConnack(nil, packets.V311, false, pe.Code, nil)
		fmt.Printf("%s [%s]: CONNACK % x %v\n", pe.Code.String(), pe.Rule, ack, ok)
	}
	// Output:
	// 3.1.1 dev-1 alice <nil>
	// unsupported protocol version (0x84) [MQTT-3.1.2-2]: CONNACK 20 02 00 01 true
}

// A Reader frames the packets of a stream, whatever the reads bring.
func ExampleReader() {
	var stream []byte
	stream = packets.AppendAck(stream, packets.PUBACK, packets.V311, 7, packets.Success)
	stream = packets.AppendDisconnect(stream, packets.V311, packets.Success)
	r := packets.NewReader(bytes.NewReader(stream), 1024)
	for {
		h, pkt, err := r.Next()
		if err == io.EOF {
			break
		}
		fmt.Println(h.Type, len(pkt), err)
	}
	// Output:
	// PUBACK 4 <nil>
	// DISCONNECT 2 <nil>
}

// A Framer follows the packets of a stream in the chunks it comes in,
// without keeping them: a packet that lies whole in a chunk is one piece.
func ExampleFramer() {
	stream := packets.AppendAck(nil, packets.PUBACK, packets.V311, 7, packets.Success)
	stream = packets.AppendPacket(stream, byte(packets.PUBLISH)<<4, []byte("\x00\x01t hello"))
	var f packets.Framer
	for _, chunk := range [][]byte{stream[:5], stream[5:9], stream[9:]} {
		for len(chunk) > 0 {
			p, n, _ := f.Next(chunk)
			chunk = chunk[n:]
			if len(p.Bytes) == 0 {
				fmt.Println("a fixed header split across chunks: held")
				continue
			}
			fmt.Printf("%s %q first=%v last=%v\n", p.Header.Type, p.Bytes, p.First, p.Last)
		}
	}
	// Output:
	// PUBACK "@\x02\x00\a" first=true last=true
	// a fixed header split across chunks: held
	// PUBLISH "0\t" first=true last=false
	// PUBLISH "\x00\x01t" first=false last=false
	// PUBLISH " hello" first=false last=true
}

// DecodePublish is a view of the packet: the relay decodes one per
// message without allocating. AppendPublish writes it back byte for byte.
func ExampleDecodePublish() {
	alias := packets.Properties(nil).With(packets.Property{ID: packets.PropTopicAlias, Int: 3})
	pkt, _ := packets.AppendPublish(nil, packets.V5, &packets.Publish{QoS: 1, PacketID: 10,
		Topic: []byte("devices/1/temp"), Properties: alias, Payload: []byte("21.5")})

	p, err := packets.DecodePublish(pkt, packets.V5)
	a, _ := p.TopicAlias()
	fmt.Printf("%s qos %d id %d alias %d %q %v\n", p.Topic, p.QoS, p.PacketID, a, p.Payload, err)

	p.Topic = []byte("devices/1/t")
	out, _ := packets.AppendPublish(nil, packets.V5, &p)
	fmt.Println(len(pkt), len(out))
	// Output:
	// devices/1/temp qos 1 id 10 alias 3 "21.5" <nil>
	// 28 25
}

// AppendPublishHead writes the head of a PUBLISH whose payload the caller
// streams behind it.
func ExampleAppendPublishHead() {
	head, _ := packets.AppendPublishHead(nil, packets.V311, &packets.Publish{Topic: []byte("a/b")}, 100000)
	h, _ := packets.ParseHeader(head)
	fmt.Println(h.Type, h.Size(), len(head))
	// Output: PUBLISH 100009 9
}

// ValidateFilter checks a topic filter as a SUBSCRIBE would carry it.
func ExampleValidateFilter() {
	for _, f := range []string{"sensors/+/temp", "sensors/#/temp", "$share/g/jobs/#", "$share/+/jobs"} {
		fmt.Println(f, packets.ValidateFilter(f))
	}
	// Output:
	// sensors/+/temp <nil>
	// sensors/#/temp packets: topic filter "sensors/#/temp": # must be the last level [MQTT-4.7.1-1]
	// $share/g/jobs/# <nil>
	// $share/+/jobs packets: topic filter "$share/+/jobs": a wildcard in its share name [MQTT-4.8.2-2]
}

// SplitShared takes a shared subscription apart.
func ExampleSplitShared() {
	group, filter, ok := packets.SplitShared("$share/workers/jobs/#")
	fmt.Println(group, filter, ok)
	// Output: workers jobs/# true
}

// A proxy forwards the filters of a SUBSCRIBE it allows and answers the
// others itself.
func ExampleDecodeSubscribe() {
	pkt, _ := packets.AppendSubscribe(nil, packets.V5, 1, nil, []packets.SubscribeFilter{
		{Filter: "a/#", Options: 1}, {Filter: "b/#/c", Options: 1}})
	s, _ := packets.DecodeSubscribe(pkt, packets.V5)
	for _, f := range s.Filters {
		fmt.Println(f.Filter, f.Options.QoS(), f.Err)
	}
	// Output:
	// a/# 1 <nil>
	// b/#/c 1 packets: SUBSCRIBE topic filter 1 is invalid: # must be the last level [MQTT-4.7.1-1]
}

// Properties are an MQTT 5 property list as on the wire.
func ExampleProperties() {
	p := packets.Properties(nil).
		With(packets.Property{ID: packets.PropReasonString, Str: "quota"}).
		With(packets.Property{ID: packets.PropUserProperty, Str: "region", Value: "eu"})
	ack := packets.AppendAckProperties(nil, packets.PUBACK, packets.V5, 7, packets.QuotaExceeded, p)
	a, err := packets.DecodeAck(ack, packets.V5)
	reason, _ := a.Properties.Get(packets.PropReasonString)
	fmt.Println(a.Code.String(), reason.Str, a.Properties.UserProperties(), err)
	// Output: quota exceeded (0x97) quota [[region eu]] <nil>
}
