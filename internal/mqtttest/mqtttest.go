// Package mqtttest is the one raw MQTT 3.1/3.1.1/5 client of the tests and
// of the load generator (cmd/authproxy-bench). It frames and encodes with
// the packets package wherever packets has an encoder (CONNECT, DISCONNECT,
// the fixed header); the bodies of SUBSCRIBE, PUBLISH and PUBACK, which
// packets cannot encode yet, are written here once, in AppendSubscribe,
// AppendPublish and AppendPuback, until packets takes them over.
package mqtttest

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// Client is a minimal MQTT 3.1/3.1.1/5 client for tests: it writes packets
// itself, so tests control every byte the proxy receives.
type Client struct {
	Conn  net.Conn
	Level packets.Level
	next  uint16
}

// Connect sends c and reads the CONNACK. Level is taken from c. The CONNACK
// is read from conn without reading past it, so conn may be wrapped in a
// buffered reader afterwards.
func Connect(conn net.Conn, c packets.Connect) (*Client, packets.Connack, error) {
	if c.ProtocolName == "" {
		c.ProtocolName = "MQTT"
		if c.ProtocolLevel == packets.V31 {
			c.ProtocolName = "MQIsdp"
		}
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = 60
	}
	out, err := packets.AppendConnect(nil, &c)
	if err != nil {
		return nil, packets.Connack{}, err
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(out); err != nil {
		return nil, packets.Connack{}, err
	}
	_, pkt, err := packets.ReadPacket(conn, 1<<16)
	if err != nil {
		return nil, packets.Connack{}, err
	}
	ack, err := packets.DecodeConnack(pkt, c.ProtocolLevel)
	_ = conn.SetDeadline(time.Time{})
	return &Client{Conn: conn, Level: c.ProtocolLevel}, ack, err
}

// Creds is a CONNECT with a user name and password.
func Creds(level packets.Level, clientID, user, pass string) packets.Connect {
	return packets.Connect{ProtocolLevel: level, CleanStart: true, ClientID: clientID,
		UsernameFlag: true, Username: user, PasswordFlag: true, Password: pass}
}

// maxHeaderLen is the longest fixed header: a type byte and four length bytes.
const maxHeaderLen = 5

// body grows dst for a packet with a body of n bytes and returns it with an
// empty slice of its spare capacity, maxHeaderLen bytes past its end, for
// the body. packets.AppendPacket(dst, first, body) then writes the fixed
// header into the room left and moves the body down behind it, in place: a
// dst with capacity to spare costs no allocation.
func body(dst []byte, n int) (grown, b []byte) {
	dst = slices.Grow(dst, maxHeaderLen+n)
	return dst, dst[len(dst)+maxHeaderLen : len(dst)+maxHeaderLen]
}

func appendString(dst []byte, s string) []byte {
	return append(binary.BigEndian.AppendUint16(dst, uint16(len(s))), s...)
}

// appendNoProperties appends an MQTT 5 empty property list (nothing before 5).
func appendNoProperties(dst []byte, level packets.Level) []byte {
	if level == packets.V5 {
		return append(dst, 0)
	}
	return dst
}

func propsLen(level packets.Level) int {
	if level == packets.V5 {
		return 1
	}
	return 0
}

// AppendSubscribe appends a SUBSCRIBE of one filter at the given maximum QoS
// (MQTT 5: no properties, subscription options qos).
func AppendSubscribe(dst []byte, level packets.Level, id uint16, filter string, qos byte) []byte {
	dst, b := body(dst, 2+propsLen(level)+2+len(filter)+1)
	b = binary.BigEndian.AppendUint16(b, id)
	b = appendNoProperties(b, level)
	b = append(appendString(b, filter), qos)
	return packets.AppendPacket(dst, byte(packets.SUBSCRIBE)<<4|2, b)
}

// AppendPublish appends a PUBLISH (MQTT 5: no properties); id is written
// only for QoS 1 and 2. With capacity to spare in dst it does not allocate,
// so a caller that reuses its buffer publishes without allocating.
func AppendPublish(dst []byte, level packets.Level, topic string, payload []byte, qos byte, retain bool, id uint16) []byte {
	first := byte(packets.PUBLISH)<<4 | qos<<1
	if retain {
		first |= 1
	}
	n := 2 + len(topic) + propsLen(level) + len(payload)
	if qos > 0 {
		n += 2
	}
	dst, b := body(dst, n)
	b = appendString(b, topic)
	if qos > 0 {
		b = binary.BigEndian.AppendUint16(b, id)
	}
	b = append(appendNoProperties(b, level), payload...)
	return packets.AppendPacket(dst, first, b)
}

// AppendPuback appends a PUBACK of packet id (MQTT 5: reason Success,
// omitted as the specification allows).
func AppendPuback(dst []byte, id uint16) []byte {
	dst, b := body(dst, 2)
	return packets.AppendPacket(dst, byte(packets.PUBACK)<<4, binary.BigEndian.AppendUint16(b, id))
}

// ReadUntil reads packets of at most maxSize bytes from r, skipping other
// types, until one of type t, and returns it.
func ReadUntil(r io.Reader, t packets.Type, maxSize int) (packets.FixedHeader, []byte, error) {
	for {
		h, pkt, err := packets.ReadPacket(r, maxSize)
		if err != nil || h.Type == t {
			return h, pkt, err
		}
	}
}

// Subscribe subscribes to filter and waits for the SUBACK.
func (c *Client) Subscribe(filter string, qos byte) error {
	c.next++
	if _, err := c.Conn.Write(AppendSubscribe(nil, c.Level, c.next, filter, qos)); err != nil {
		return err
	}
	_, pkt, err := c.until(packets.SUBACK, 10*time.Second)
	if err != nil {
		return err
	}
	if rc := pkt[len(pkt)-1]; rc >= 0x80 {
		return fmt.Errorf("SUBACK refused: 0x%02X", rc)
	}
	return nil
}

// Publish sends a PUBLISH; QoS 1 waits for the PUBACK, QoS 2 completes
// the flow (PUBREC, PUBREL, PUBCOMP).
func (c *Client) Publish(topic string, payload []byte, qos byte, retain bool) error {
	var id uint16
	if qos > 0 {
		c.next++
		id = c.next
	}
	if _, err := c.Conn.Write(AppendPublish(nil, c.Level, topic, payload, qos, retain, id)); err != nil {
		return err
	}
	switch qos {
	case 0:
		return nil
	case 1:
		_, _, err := c.until(packets.PUBACK, 10*time.Second)
		return err
	}
	if _, _, err := c.until(packets.PUBREC, 10*time.Second); err != nil {
		return err
	}
	if _, err := c.Conn.Write(packets.AppendAck(nil, packets.PUBREL, c.Level, id, packets.Success)); err != nil {
		return err
	}
	_, _, err := c.until(packets.PUBCOMP, 10*time.Second)
	return err
}

// Message is a received PUBLISH.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
}

// ReadPublish waits up to timeout for the next PUBLISH, acknowledging QoS 1.
func (c *Client) ReadPublish(timeout time.Duration) (Message, error) {
	h, pkt, err := c.until(packets.PUBLISH, timeout)
	if err != nil {
		return Message{}, err
	}
	m, id := decodePublish(h, pkt, c.Level)
	if m.QoS == 1 {
		_, _ = c.Conn.Write(AppendPuback(nil, id))
	}
	return m, nil
}

// decodePublish decodes a well-formed PUBLISH (it trusts the broker).
func decodePublish(h packets.FixedHeader, pkt []byte, level packets.Level) (Message, uint16) {
	body := pkt[h.HeaderLen:]
	n := int(binary.BigEndian.Uint16(body))
	m := Message{Topic: string(body[2 : 2+n]), QoS: h.Flags >> 1 & 3}
	off := 2 + n
	var id uint16
	if m.QoS > 0 {
		id = binary.BigEndian.Uint16(body[off:])
		off += 2
	}
	if level == packets.V5 {
		pl, k := uvarint(body[off:])
		off += k + pl
	}
	m.Payload = append([]byte(nil), body[off:]...)
	return m, id
}

func uvarint(b []byte) (int, int) {
	v, shift := 0, 0
	for i, c := range b {
		v |= int(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, i + 1
		}
		shift += 7
	}
	return v, len(b)
}

// until reads packets, each within timeout, until one of type t.
func (c *Client) until(t packets.Type, timeout time.Duration) (packets.FixedHeader, []byte, error) {
	for {
		h, pkt, err := c.read(timeout)
		if err != nil || h.Type == t {
			return h, pkt, err
		}
	}
}

func (c *Client) read(timeout time.Duration) (packets.FixedHeader, []byte, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(timeout))
	defer c.Conn.SetReadDeadline(time.Time{})
	return packets.ReadPacket(c.Conn, 1<<24)
}

// ReadPacket reads the next packet of any type within timeout.
func (c *Client) ReadPacket(timeout time.Duration) (packets.FixedHeader, []byte, error) {
	return c.read(timeout)
}

// Disconnect sends DISCONNECT and closes.
func (c *Client) Disconnect() {
	_, _ = c.Conn.Write(packets.AppendDisconnect(nil, c.Level, packets.Success))
	c.Conn.Close()
}
