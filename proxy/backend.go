package proxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/relay"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// Backend is how the proxy reaches the broker.
type Backend struct {
	Addr        string        // host:port
	TLS         *tls.Config   // nil: plain TCP
	Username    string        // empty: keep the device's user name
	Password    string        // empty: send no password; the device's is never sent
	DialTimeout time.Duration // dial plus the broker's CONNACK; default DefaultDialTimeout
}

// DefaultDialTimeout is a Backend's DialTimeout when it has none.
const DefaultDialTimeout = 5 * time.Second

// brokerConn is a fresh connection to the broker that has answered a
// CONNECT.
type brokerConn struct {
	relay.Endpoint
	ack    packets.Connack
	ackPkt []byte // the CONNACK as the broker sent it
	early  []byte // bytes the broker sent right behind its CONNACK
}

// dial opens a connection to the broker: TCP, then TLS when configured,
// within ctx. The socket is wrapped for the relay's raw I/O.
func (b Backend) dial(ctx context.Context, d *net.Dialer) (relay.Endpoint, error) {
	raw, err := d.DialContext(ctx, "tcp", b.Addr)
	if err != nil {
		return relay.Endpoint{}, fmt.Errorf("dial broker %s: %w", b.Addr, err)
	}
	raw = relay.WrapSocket(raw)
	deadline, _ := ctx.Deadline()
	_ = raw.SetDeadline(deadline)
	if b.TLS == nil {
		return relay.Endpoint{Conn: raw, Raw: raw, Kind: relay.Socket}, nil
	}
	tc := tls.Client(raw, b.TLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return relay.Endpoint{}, fmt.Errorf("TLS to broker %s: %w", b.Addr, err)
	}
	return relay.Endpoint{Conn: tc, Raw: raw, Kind: relay.Drainable}, nil
}

// connect dials the broker, sends c and reads the CONNACK, within
// DialTimeout. The connection is returned whatever the CONNACK says; the
// caller closes it if the broker refused.
func (b Backend) connect(ctx context.Context, d *net.Dialer, c *packets.Connect) (*brokerConn, error) {
	ctx, cancel := context.WithTimeout(ctx, cmp0(b.DialTimeout, DefaultDialTimeout))
	defer cancel()
	ep, err := b.dial(ctx, d)
	if err != nil {
		return nil, err
	}
	fail := func(format string, err error) (*brokerConn, error) {
		ep.Conn.Close()
		return nil, fmt.Errorf(format, b.Addr, err)
	}
	out, err := packets.AppendConnect(make([]byte, 0, 256), c)
	if err == nil {
		_, err = ep.Conn.Write(out)
	}
	if err != nil {
		return fail("send CONNECT to broker %s: %w", err)
	}
	rd := packets.NewReader(ep.Conn, 64<<10) // a CONNACK is usually one read
	_, pkt, err := rd.Next()
	if err == io.EOF { // closed before the CONNACK: it is cut all the same
		err = fmt.Errorf("%w: %w", packets.ErrTruncated, io.ErrUnexpectedEOF)
	}
	if err != nil {
		return fail("read CONNACK from broker %s: %w", err)
	}
	ack, err := packets.DecodeConnack(pkt, c.ProtocolLevel)
	if err != nil {
		return fail("broker %s CONNACK: %w", err)
	}
	_ = ep.Raw.SetDeadline(time.Time{})
	return &brokerConn{Endpoint: ep, ack: ack, ackPkt: pkt, early: rd.Buffered()}, nil
}

// Probe checks that the broker is reachable: with backend credentials it
// makes a real MQTT 3.1.1 CONNECT (clean session, a random client id) and
// requires CONNACK 0; without, a TCP (or TLS) connection must succeed.
func (b Backend) Probe(ctx context.Context) error {
	var d net.Dialer
	if b.Username == "" {
		ctx, cancel := context.WithTimeout(ctx, cmp0(b.DialTimeout, DefaultDialTimeout))
		defer cancel()
		ep, err := b.dial(ctx, &d)
		if err != nil {
			return err
		}
		return ep.Conn.Close()
	}
	c := packets.Connect{ProtocolName: "MQTT", ProtocolLevel: packets.V311, CleanStart: true, KeepAlive: 10,
		ClientID: "mqtt-authproxy-probe-" + rand.Text()[:12], UsernameFlag: true, Username: b.Username}
	if b.Password != "" {
		c.PasswordFlag, c.Password = true, b.Password
	}
	bc, err := b.connect(ctx, &d, &c)
	if err != nil {
		return err
	}
	defer bc.Conn.Close()
	_, _ = bc.Conn.Write(packets.AppendDisconnect(nil, packets.V311, packets.Success))
	if !bc.ack.Accepted() {
		return fmt.Errorf("broker %s refused the backend credentials: CONNACK 0x%02X", b.Addr, bc.ack.Code)
	}
	return nil
}

// rewriteConnect is the CONNECT the broker sees: everything as the device
// sent it, except the credentials. The device's password is never forwarded.
func rewriteConnect(c *packets.Connect, username, password string) packets.Connect {
	r := *c
	if username != "" {
		r.UsernameFlag, r.Username = true, username
	}
	r.PasswordFlag, r.Password = false, ""
	if password != "" && r.UsernameFlag {
		r.PasswordFlag, r.Password = true, password
	}
	return r
}

// cmp0 is v, or def when v is not positive.
func cmp0[T ~int64](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}
