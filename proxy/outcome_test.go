package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/relay"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/transport"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// pipeListener is a net.Listener whose connections are net.Pipe ends:
// the proxy serves it in process, without sockets.
type pipeListener struct {
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error { l.once.Do(func() { close(l.done) }); return nil }
func (l *pipeListener) Addr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
}

// dial is a device's end of a new connection.
func (l *pipeListener) dial(t *testing.T) net.Conn {
	t.Helper()
	device, proxySide := net.Pipe()
	select {
	case l.conns <- pipeConn{proxySide}:
	case <-time.After(10 * time.Second):
		t.Fatal("the proxy does not accept")
	}
	t.Cleanup(func() { device.Close() })
	return device
}

// pipeConn is a pipe end with a TCP-looking remote address, as the
// proxy's per-address checks expect.
type pipeConn struct{ net.Conn }

func (pipeConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4242} }

// fakeAuth answers every CONNECT with its decision, or its error.
type fakeAuth struct {
	d   policy.Decision
	err error
}

func (f fakeAuth) Authenticate(context.Context, policy.Request) (policy.Decision, error) {
	return f.d, f.err
}

// fakeBrokers answers every session's CONNECT with a CONNACK of code
// over a pipe (whose broker end reads and discards), or fails with err.
type fakeBrokers struct {
	code packets.ReasonCode
	err  error
}

func (f fakeBrokers) Connect(_ context.Context, s Admitted) (*BrokerConn, error) {
	if f.err != nil {
		return nil, f.err
	}
	proxySide, brokerSide := net.Pipe()
	go func() { _, _ = io.Copy(io.Discard, brokerSide) }()
	pkt := connack(s.Connect.ProtocolLevel, f.code)
	ack, err := packets.DecodeConnack(pkt, s.Connect.ProtocolLevel)
	if err != nil {
		return nil, err
	}
	return &BrokerConn{Endpoint: relay.Endpoint{Conn: proxySide, Raw: proxySide, Kind: relay.Opaque}, Connack: ack, ConnackPacket: pkt}, nil
}

func connack(level packets.Level, code packets.ReasonCode) []byte {
	b, _ := packets.AppendConnack(nil, level, false, code, packets.Properties{})
	return b
}

// TestOutcomeTable: every way an attempt ends, in process (net.Pipe, a
// fake authenticator and fake brokers: no Redis, no broker, no socket):
// what the device reads in each protocol version, and the outcome the
// attempt is counted under.
func TestOutcomeTable(t *testing.T) {
	accepted := policy.Decision{Outcome: policy.Accepted, Reason: "allowed"}
	refused := func(o policy.Outcome) fakeAuth { return fakeAuth{d: policy.Decision{Outcome: o, Reason: string(o)}} }
	ok := fakeBrokers{}
	for _, c := range []struct {
		name    string
		auth    fakeAuth
		brokers fakeBrokers
		send    func(level packets.Level) []byte // nil: a CONNECT of that level
		outcome Outcome
		v3, v5  []byte // what the device reads (nil: nothing, the connection closed)
	}{
		{"accepted", fakeAuth{d: accepted}, ok, nil, Decided(policy.Accepted), connack(packets.V311, 0), connack(packets.V5, 0)},
		{"bad credentials", refused(policy.BadCredentials), ok, nil, Decided(policy.BadCredentials), connack(packets.V311, packets.BadUserNameOrPassword), connack(packets.V5, packets.BadUserNameOrPassword)},
		{"disabled", refused(policy.Disabled), ok, nil, Decided(policy.Disabled), connack(packets.V311, packets.NotAuthorized), connack(packets.V5, packets.NotAuthorized)},
		{"client id", refused(policy.ClientIDNotAllowed), ok, nil, Decided(policy.ClientIDNotAllowed), connack(packets.V311, packets.ClientIdentifierNotValid), connack(packets.V5, packets.ClientIdentifierNotValid)},
		{"too many failures", refused(policy.TooManyFailures), ok, nil, Decided(policy.TooManyFailures), connack(packets.V311, packets.NotAuthorized), connack(packets.V5, packets.ConnectionRateExceeded)},
		{"banned", refused(policy.Banned), ok, nil, Decided(policy.Banned), connack(packets.V311, packets.NotAuthorized), connack(packets.V5, packets.NotAuthorized)},
		{"store unavailable", fakeAuth{err: policy.ErrUnavailable}, ok, nil, OutcomeStoreUnavailable, connack(packets.V311, packets.ServerUnavailable), connack(packets.V5, packets.ServerUnavailable)},
		{"busy", fakeAuth{err: policy.ErrBusy}, ok, nil, OutcomeBusy, connack(packets.V311, packets.ServerBusy), connack(packets.V5, packets.ServerBusy)},
		{"broker unreachable", fakeAuth{d: accepted}, fakeBrokers{err: errors.New("no route")}, nil, OutcomeBackendUnavailable, connack(packets.V311, packets.ServerUnavailable), connack(packets.V5, packets.ServerUnavailable)},
		{"broker refuses", fakeAuth{d: accepted}, fakeBrokers{code: packets.NotAuthorized}, nil, OutcomeBrokerRefused, connack(packets.V311, packets.NotAuthorized), connack(packets.V5, packets.NotAuthorized)},
		{"broker connect rate", fakeAuth{d: accepted}, fakeBrokers{err: fmt.Errorf("%w: held", ErrBrokersBusy)}, nil, OutcomeBackendBusy, connack(packets.V311, packets.ServerBusy), connack(packets.V5, packets.ServerBusy)},
		{"unknown pool", fakeAuth{d: accepted}, fakeBrokers{err: fmt.Errorf("%w: nope", ErrUnknownPool)}, nil, OutcomeBackendPoolUnknown, connack(packets.V311, packets.ServerUnavailable), connack(packets.V5, packets.ServerUnavailable)},
		{"mountpoint not allowed", refused(policy.MountpointNotAllowed), ok, nil, Decided(policy.MountpointNotAllowed), connack(packets.V311, packets.NotAuthorized), connack(packets.V5, packets.NotAuthorized)},
		{"malformed CONNECT", fakeAuth{d: accepted}, ok, func(level packets.Level) []byte {
			b := connectBytes(level)
			b[9] |= 1 // the reserved flag [MQTT-3.1.2-3]
			return b
		}, OutcomeMalformed, nil, connack(packets.V5, packets.MalformedPacket)},
		{"protocol level 9", fakeAuth{d: accepted}, ok, func(packets.Level) []byte {
			b := connectBytes(packets.V311)
			b[8] = 9
			return b
		}, OutcomeProtocolVersion, connack(packets.V311, packets.UnsupportedProtocolVersion), connack(packets.V311, packets.UnsupportedProtocolVersion)},
		{"not a CONNECT", fakeAuth{d: accepted}, ok, func(packets.Level) []byte { return []byte{0xC0, 0} }, OutcomeMalformed, nil, nil},
		{"closed before CONNECT", fakeAuth{d: accepted}, ok, func(packets.Level) []byte { return nil }, OutcomeClosed, nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := newPipeListener()
			p, err := New(Config{Brokers: c.brokers, Auth: c.auth, RevalidateInterval: -1, ShutdownGrace: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = p.Serve(l, transport.Plain{}) }()
			defer p.Shutdown(context.Background())
			for _, level := range []packets.Level{packets.V311, packets.V5} {
				conn := l.dial(t)
				send := connectBytes(level)
				if c.send != nil {
					send = c.send(level)
				}
				if send == nil {
					conn.Close() // closed before its CONNECT
					continue
				}
				go func() { _, _ = conn.Write(send) }()
				want := map[packets.Level][]byte{packets.V311: c.v3, packets.V5: c.v5}[level]
				_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				got := make([]byte, len(want))
				if _, err := io.ReadFull(conn, got); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("v%d: read %x (%v), want %x", level, got, err, want)
				}
				if want == nil || c.outcome != Decided(policy.Accepted) {
					// Nothing more: the proxy closed.
					if n, err := conn.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
						t.Fatalf("v%d: after the answer: %d bytes, %v; want EOF", level, n, err)
					}
				}
				conn.Close()
			}
			waitCount(t, p, c.outcome, 2)
		})
	}
}

// waitCount waits for the attempts of outcome o to reach n.
func waitCount(t *testing.T, p *Proxy, o Outcome, n float64) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, fmt.Sprintf("%v attempts counted %s", n, o), func() bool {
		return testutil.ToFloat64(p.metrics.Connects.WithLabelValues(string(o))) >= n
	})
}

// connectBytes is a CONNECT of the given level, with a user name.
func connectBytes(level packets.Level) []byte {
	c := mqtttest.Creds(level, "dev", "dev", "pw")
	c.ProtocolName = "MQTT"
	if level == packets.V31 {
		c.ProtocolName = "MQIsdp"
	}
	b, err := packets.AppendConnect(nil, &c)
	if err != nil {
		panic(err)
	}
	return b
}

// TestEveryEndIsCounted: however a live session is ended by the proxy (a
// denied PUBLISH under ACL_DENY_ACTION=disconnect, a refused MQTT 3.1
// SUBSCRIBE, a malformed packet, a kick), it goes through the session's
// one door: the device gets its last packet (MQTT 5: a DISCONNECT) and
// the end is counted under its cause, once. In process, as
// TestOutcomeTable.
func TestEveryEndIsCounted(t *testing.T) {
	rules, err := policy.CompileTopics([]policy.Pattern{{Filter: "ok/#", Source: "user"}}, []policy.Pattern{{Filter: "ok/#", Source: "user"}}, "dev", "dev")
	if err != nil {
		t.Fatal(err)
	}
	auth := fakeAuth{d: policy.Decision{Outcome: policy.Accepted, Reason: "allowed", Topics: rules}}
	publish := func(level packets.Level, topic string) []byte {
		b, _ := packets.AppendPublish(nil, level, &packets.Publish{Topic: []byte(topic), Payload: []byte("x")})
		return b
	}
	subscribe := func(level packets.Level, filter string) []byte {
		b, _ := packets.AppendSubscribe(nil, level, 1, packets.Properties{}, []packets.SubscribeFilter{{Filter: filter, Options: 1}})
		return b
	}
	for _, c := range []struct {
		name  string
		level packets.Level
		send  []byte // after the CONNECT; nil: the proxy kicks the user
		cause string
		last  []byte // the device's last packet before EOF
	}{
		{"denied publish, disconnect, v5", packets.V5, publish(packets.V5, "no/x"), "acl", packets.AppendDisconnect(nil, packets.V5, packets.NotAuthorized)},
		{"denied publish, disconnect, v3.1.1", packets.V311, publish(packets.V311, "no/x"), "acl", nil},
		{"refused subscribe, v3.1", packets.V31, subscribe(packets.V31, "no/#"), "acl", nil},
		{"malformed, v5", packets.V5, []byte{0x30, 2, 0, 5}, "malformed", packets.AppendDisconnect(nil, packets.V5, packets.MalformedPacket)},
		{"kick, v5", packets.V5, nil, "kicked", packets.AppendDisconnect(nil, packets.V5, packets.AdministrativeAction)},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := newPipeListener()
			p, err := New(Config{Brokers: fakeBrokers{}, Auth: auth, DenyAction: DenyDisconnect, RevalidateInterval: -1, ShutdownGrace: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = p.Serve(l, transport.Plain{}) }()
			defer p.Shutdown(context.Background())
			conn := l.dial(t)
			kicked := make(chan int, 1)
			go func() { _, _ = conn.Write(connectBytes(c.level)) }()
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, ack, err := packets.ReadPacket(conn, 1<<16); err != nil || ack[0] != 0x20 {
				t.Fatalf("CONNACK: %x %v", ack, err)
			}
			if c.send != nil {
				go func() { _, _ = conn.Write(c.send) }()
			} else {
				testenv.WaitFor(t, 5*time.Second, "the session to be registered", func() bool { return p.Sessions() == 1 })
				// Kick may write the DISCONNECT on its caller's goroutine,
				// and a net.Pipe write waits for its reader: kick from
				// another goroutine than the one that reads.
				go func() { kicked <- p.Kick("dev") }()
			}
			rest, err := io.ReadAll(conn)
			if err != nil || !bytes.Equal(rest, c.last) {
				t.Fatalf("the device read %x (%v) before EOF, want %x", rest, err, c.last)
			}
			if c.send == nil {
				if n := <-kicked; n != 1 {
					t.Fatalf("kicked %d sessions", n)
				}
			}
			testenv.WaitFor(t, 5*time.Second, "the end counted under "+c.cause, func() bool {
				return testutil.ToFloat64(p.metrics.Disconnects.WithLabelValues(c.cause)) == 1
			})
		})
	}
}
