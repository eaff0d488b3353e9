package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/relay"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Brokers is where an admitted session goes, the broker seam: it chooses
// a broker for the session and connects it. Connect returns a connection
// that has answered the session's CONNECT, whatever its CONNACK says (the
// proxy relays a broker's refusal as the broker sent it), or an error when
// no broker could be reached within ctx (the device is told "server
// unavailable"). The CONNECT it sends is its own business: never the
// device's password. Kinds: Backend (one address); others choose among
// several (pools, health, failover) behind the same method.
type Brokers interface {
	Connect(ctx context.Context, s Admitted) (*BrokerConn, error)
}

// Admitted is a CONNECT that its decision allowed, as the broker side
// sees it.
type Admitted struct {
	Request  policy.Request  // what the CONNECT presented (no password)
	Decision policy.Decision // the decision that allowed it
	Connect  *packets.Connect
}

// BrokerConn is a fresh connection to a broker that has answered a
// CONNECT.
type BrokerConn struct {
	relay.Endpoint
	Connack       packets.Connack
	ConnackPacket []byte // the CONNACK as the broker sent it
	Early         []byte // bytes the broker sent right behind its CONNACK
	// Addr is the broker's address (host:port), as the status page shows
	// it beside the session.
	Addr string
	// Release, when set, is called once when the session on this
	// connection has ended (or when the proxy closes a connection it
	// could not use): a Brokers that counts sessions per broker counts
	// it down there.
	Release func()
}

// release calls Release, once, if set.
func (c *BrokerConn) release() {
	if f := c.Release; f != nil {
		c.Release = nil
		f()
	}
}

// Errors of a Brokers that the proxy answers in their own way (any other
// error is "server unavailable": v5 0x88, 3.1.1 0x03).
var (
	// ErrBrokersBusy: the broker connect rate held the CONNECT past its
	// deadline; the device is told "server busy" (v5 0x89, 3.1.1 0x03).
	ErrBrokersBusy = errors.New("broker connect rate exceeded")
	// ErrUnknownPool: the decision named a broker pool that does not exist
	// (v5 0x88, 3.1.1 0x03, counted as backend_pool_unknown).
	ErrUnknownPool = errors.New("unknown broker pool")
)

// Backend is one broker at one address: the Brokers of a proxy in front
// of a single broker.
type Backend struct {
	Addr        string        // host:port
	TLS         *tls.Config   // nil: plain TCP
	Username    string        // empty: keep the device's user name
	Password    string        // empty: send no password; the device's is never sent
	DialTimeout time.Duration // dial plus the broker's CONNACK; default DefaultDialTimeout
}

// DefaultDialTimeout is a Backend's DialTimeout when it has none.
const DefaultDialTimeout = 5 * time.Second

var _ Brokers = Backend{}

// Connect sends the broker the session's CONNECT with the backend
// credentials in place of the device's (and the will's topic under the
// decision's mountpoint), and returns its answer.
func (b Backend) Connect(ctx context.Context, s Admitted) (*BrokerConn, error) {
	rewritten := rewriteConnect(s.Connect, b.Username, b.Password)
	if rewritten.WillFlag && s.Decision.Mountpoint != "" {
		rewritten.WillTopic = s.Decision.Mountpoint + rewritten.WillTopic
	}
	return b.connect(ctx, &rewritten)
}

// dialer dials brokers without TCP keepalive: MQTT has its own, which the
// broker enforces.
var dialer = net.Dialer{KeepAlive: -1}

// dial opens a connection to the broker: TCP, then TLS when configured,
// within ctx. The socket is wrapped for the relay's raw I/O.
func (b Backend) dial(ctx context.Context) (relay.Endpoint, error) {
	raw, err := dialer.DialContext(ctx, "tcp", b.Addr)
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
func (b Backend) connect(ctx context.Context, c *packets.Connect) (*BrokerConn, error) {
	ctx, cancel := context.WithTimeout(ctx, cmp0(b.DialTimeout, DefaultDialTimeout))
	defer cancel()
	ep, err := b.dial(ctx)
	if err != nil {
		return nil, err
	}
	fail := func(format string, err error) (*BrokerConn, error) {
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
	// Early bytes are copied: a slice of the reader's buffer, even an empty
	// one, would keep the whole buffer for the life of the session.
	var early []byte
	if b := rd.Buffered(); len(b) > 0 {
		early = bytes.Clone(b)
	}
	return &BrokerConn{Endpoint: ep, Connack: ack, ConnackPacket: pkt, Early: early, Addr: b.Addr}, nil
}

// Probe checks that the broker is reachable: with backend credentials it
// makes a real MQTT 3.1.1 CONNECT (clean session, a random client id) and
// requires CONNACK 0; without, a TCP (or TLS) connection must succeed.
func (b Backend) Probe(ctx context.Context) error {
	if b.Username == "" {
		ctx, cancel := context.WithTimeout(ctx, cmp0(b.DialTimeout, DefaultDialTimeout))
		defer cancel()
		ep, err := b.dial(ctx)
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
	bc, err := b.connect(ctx, &c)
	if err != nil {
		return err
	}
	defer bc.Conn.Close()
	_, _ = bc.Conn.Write(packets.AppendDisconnect(nil, packets.V311, packets.Success))
	if !bc.Connack.Accepted() {
		return fmt.Errorf("broker %s refused the backend credentials: CONNACK 0x%02X", b.Addr, bc.Connack.Code)
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
