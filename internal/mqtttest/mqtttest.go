// Package mqtttest is the one raw MQTT 3.1/3.1.1/5 client of the tests and
// of the load generator (cmd/authproxy-bench). It frames, encodes and
// decodes with the packets package: what it adds is a client's manners
// (packet identifiers, the acknowledgements of QoS 1 and 2, deadlines).
package mqtttest

import (
	"fmt"
	"io"
	"net"
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

// AppendSubscribe appends a SUBSCRIBE of one filter at the given maximum QoS
// (MQTT 5: no properties, subscription options qos).
func AppendSubscribe(dst []byte, level packets.Level, id uint16, filter string, qos byte) []byte {
	out, err := packets.AppendSubscribe(dst, level, id, nil, []packets.SubscribeFilter{{Filter: filter, Options: packets.SubscribeOptions(qos)}})
	if err != nil {
		panic(err) // a filter over 65,535 bytes: the test's mistake
	}
	return out
}

// AppendPublish appends a PUBLISH (MQTT 5: no properties); id is written
// only for QoS 1 and 2. With capacity to spare in dst it does not allocate
// (the topic's bytes are a copy on the stack up to 32 bytes), so a caller
// that reuses its buffer publishes without allocating.
func AppendPublish(dst []byte, level packets.Level, topic string, payload []byte, qos byte, retain bool, id uint16) []byte {
	p := packets.Publish{QoS: qos, Retain: retain, Topic: []byte(topic), PacketID: id, Payload: payload}
	out, err := packets.AppendPublish(dst, level, &p)
	if err != nil {
		panic(err) // a topic over 65,535 bytes: the test's mistake
	}
	return out
}

// AppendPuback appends a PUBACK of packet id (MQTT 5: reason Success,
// omitted as the specification allows).
func AppendPuback(dst []byte, id uint16) []byte {
	return packets.AppendAck(dst, packets.PUBACK, packets.V5, id, packets.Success)
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
	ack, err := packets.DecodeSuback(pkt, c.Level)
	if err != nil {
		return err
	}
	if rc := ack.Codes[0]; rc >= 0x80 {
		return fmt.Errorf("SUBACK refused: 0x%02X", byte(rc))
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
	_, pkt, err := c.until(packets.PUBLISH, timeout)
	if err != nil {
		return Message{}, err
	}
	p, err := packets.DecodePublish(pkt, c.Level)
	if err != nil {
		return Message{}, err
	}
	if p.QoS == 1 {
		_, _ = c.Conn.Write(AppendPuback(nil, p.PacketID))
	}
	return Message{Topic: string(p.Topic), Payload: p.Payload, QoS: p.QoS}, nil
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
