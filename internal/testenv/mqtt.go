package testenv

import (
	"encoding/binary"
	"fmt"
	"net"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// RawClient is a minimal MQTT 3.1/3.1.1/5 client for tests: it writes
// packets by hand, so tests control every byte the proxy receives.
type RawClient struct {
	Conn  net.Conn
	Level packets.Level
	next  uint16
}

// Connect sends c and reads the CONNACK. Level is taken from c.
func Connect(conn net.Conn, c packets.Connect) (*RawClient, packets.Connack, error) {
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
	return &RawClient{Conn: conn, Level: c.ProtocolLevel}, ack, err
}

// Creds is a CONNECT with a user name and password.
func Creds(level packets.Level, clientID, user, pass string) packets.Connect {
	return packets.Connect{ProtocolLevel: level, CleanStart: true, ClientID: clientID,
		UsernameFlag: true, Username: user, PasswordFlag: true, Password: pass}
}

func (c *RawClient) props() []byte {
	if c.Level == packets.V5 {
		return []byte{0}
	}
	return nil
}

func str(s string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(s))), s...)
}

func frame(first byte, body []byte) []byte { return packets.AppendPacket(nil, first, body) }

// Subscribe subscribes to filter and waits for the SUBACK.
func (c *RawClient) Subscribe(filter string, qos byte) error {
	c.next++
	body := binary.BigEndian.AppendUint16(nil, c.next)
	body = append(body, c.props()...)
	body = append(append(body, str(filter)...), qos)
	if _, err := c.Conn.Write(frame(0x82, body)); err != nil {
		return err
	}
	for {
		h, pkt, err := c.read(10 * time.Second)
		if err != nil {
			return err
		}
		if h.Type == packets.SUBACK {
			if rc := pkt[len(pkt)-1]; rc >= 0x80 {
				return fmt.Errorf("SUBACK refused: 0x%02X", rc)
			}
			return nil
		}
	}
}

// Publish sends a PUBLISH; QoS 1 waits for the PUBACK.
func (c *RawClient) Publish(topic string, payload []byte, qos byte, retain bool) error {
	first := byte(0x30) | qos<<1
	if retain {
		first |= 1
	}
	body := str(topic)
	if qos > 0 {
		c.next++
		body = binary.BigEndian.AppendUint16(body, c.next)
	}
	body = append(append(body, c.props()...), payload...)
	if _, err := c.Conn.Write(frame(first, body)); err != nil {
		return err
	}
	if qos == 0 {
		return nil
	}
	for {
		h, _, err := c.read(10 * time.Second)
		if err != nil {
			return err
		}
		if h.Type == packets.PUBACK {
			return nil
		}
	}
}

// Message is a received PUBLISH.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
}

// ReadPublish waits up to timeout for the next PUBLISH, acknowledging QoS 1.
func (c *RawClient) ReadPublish(timeout time.Duration) (Message, error) {
	for {
		h, pkt, err := c.read(timeout)
		if err != nil {
			return Message{}, err
		}
		if h.Type != packets.PUBLISH {
			continue
		}
		body := pkt[h.HeaderLen:]
		n := int(binary.BigEndian.Uint16(body))
		m := Message{Topic: string(body[2 : 2+n]), QoS: h.Flags >> 1 & 3}
		off := 2 + n
		var id uint16
		if m.QoS > 0 {
			id = binary.BigEndian.Uint16(body[off:])
			off += 2
		}
		if c.Level == packets.V5 {
			pl, k := uvarint(body[off:])
			off += k + pl
		}
		m.Payload = append([]byte(nil), body[off:]...)
		if m.QoS == 1 {
			_, _ = c.Conn.Write(frame(0x40, binary.BigEndian.AppendUint16(nil, id)))
		}
		return m, nil
	}
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

// ReadPacket reads the next whole packet within timeout.
func (c *RawClient) read(timeout time.Duration) (packets.FixedHeader, []byte, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(timeout))
	defer c.Conn.SetReadDeadline(time.Time{})
	return packets.ReadPacket(c.Conn, 1<<24)
}

// ReadPacket reads the next packet of any type within timeout.
func (c *RawClient) ReadPacket(timeout time.Duration) (packets.FixedHeader, []byte, error) {
	return c.read(timeout)
}

// Disconnect sends DISCONNECT and closes.
func (c *RawClient) Disconnect() {
	_, _ = c.Conn.Write([]byte{0xE0, 0})
	c.Conn.Close()
}
