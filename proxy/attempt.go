package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/relay"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/transport"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// attempt is one connection's life from accept to the start of its relay,
// or to its refusal, in the shape of crypto/tls's serverHandshakeState:
// one method per step, each reporting whether to go on; finish alone logs,
// counts and closes. Once the session starts, the attempt hands its
// connections off and is discarded, so the goroutine's stack and the
// attempt's fields are not kept for the life of the session.
type attempt struct {
	p        *Proxy
	raw      net.Conn // the accepted socket, wrapped for the relay's raw I/O
	pending  *pendingConn
	start    time.Time
	deadline time.Time // accept to complete CONNECT

	conn     transport.Conn // once the transport is terminated
	connect  *packets.Connect
	req      policy.Request
	decision policy.Decision
	broker   *brokerConn
	session  *session // once handed off: it owns the connections

	// What the attempt learned, for its log line and metrics.
	level   packets.Level
	outcome string
	reason  string
	err     error
}

// handle runs one accepted connection through its steps. It returns when
// the relay has started (or the connection was refused).
func (p *Proxy) handle(c net.Conn, t transport.Terminator, pc *pendingConn) {
	defer p.wg.Done()
	a := &attempt{p: p, raw: relay.WrapSocket(c), pending: pc, start: time.Now()}
	a.deadline = a.start.Add(p.cfg.ConnectTimeout)
	p.metrics.Active.Inc()
	defer a.finish()
	ctx, cancel := context.WithDeadline(p.ctx, a.deadline)
	defer cancel()
	_ = a.terminate(ctx, t) && a.readConnect() && a.decide(ctx) && a.dialBroker(ctx) && a.handOff()
}

// terminate runs the transport's handshake under its own, shorter deadline.
func (a *attempt) terminate(ctx context.Context, t transport.Terminator) bool {
	hsDeadline := a.start.Add(min(a.p.cfg.HandshakeTimeout, a.p.cfg.ConnectTimeout))
	_ = a.raw.SetDeadline(hsDeadline)
	hctx, cancel := context.WithDeadline(ctx, hsDeadline)
	defer cancel()
	conn, err := t.Terminate(hctx, a.raw, a.p.gate)
	a.conn.Info = transport.Info{Remote: transport.AddrOf(a.raw.RemoteAddr())}
	if err != nil {
		var r *refusal
		switch {
		case errors.As(err, &r):
			a.outcome, a.reason = r.outcome, r.msg
		case errors.Is(err, transport.ErrProxyProtocol):
			a.outcome, a.err = outcomeProxyProtocol, err
		case errors.Is(err, transport.ErrUpgradeRefused):
			a.outcome, a.err = outcomeUpgradeRefused, err
		case isTimeout(err):
			a.outcome, a.err = outcomeTimeout, err
		default:
			a.outcome, a.err = outcomeTLSFailed, err
		}
		return false
	}
	a.conn = conn
	if conn.Info.TLSVersion != 0 {
		if conn.Info.Resumed {
			a.p.metrics.handshakeResu.Inc()
		} else {
			a.p.metrics.handshakeNew.Inc()
		}
	}
	_ = a.raw.SetDeadline(a.deadline)
	return true
}

// readConnect reads the first packet, which must be a CONNECT within the
// size cap, and decodes it. A malformed CONNECT is answered as its version
// allows.
func (a *attempt) readConnect() bool {
	_, pkt, err := packets.ReadPacket(a.conn, a.p.cfg.MaxConnectBytes)
	a.p.pending.done(a.pending)
	if err != nil {
		a.err = err
		switch {
		case errors.Is(err, packets.ErrTooLarge):
			a.outcome = outcomeTooLarge
		case isTimeout(err):
			a.outcome = outcomeTimeout
		case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
			a.outcome = outcomeClosed
		default:
			a.outcome = outcomeMalformed
		}
		return false
	}
	connect, err := packets.DecodeConnect(pkt)
	if err != nil {
		a.refuseMalformed(pkt, err)
		return false
	}
	a.connect, a.level = connect, connect.ProtocolLevel
	return true
}

// refuseMalformed answers a CONNECT that does not decode.
func (a *attempt) refuseMalformed(pkt []byte, err error) {
	a.err, a.level, a.outcome = err, packets.PeekLevel(pkt), outcomeMalformed
	code := packets.MalformedPacket
	var pe *packets.Error
	if errors.As(err, &pe) {
		code = pe.Code
	}
	switch code {
	case packets.UnsupportedProtocolVersion:
		a.outcome = outcomeProtocolVersion
		// The client's version is unknown: answer in 3.1.1's format, as
		// [MQTT-3.1.2-2] asks (a v5 server MAY use 0x84; 3.x clients
		// cannot read a v5 CONNACK).
		a.refuse(packets.V311, code)
	case packets.ClientIdentifierNotValid:
		a.outcome = string(policy.ClientIDNotAllowed)
		a.refuse(a.level, code)
	default:
		if a.level == packets.V5 {
			a.refuse(packets.V5, code) // 0x81 / 0x82 before closing
		}
	}
}

// decide asks the authenticator, fresh, as for every CONNECT.
func (a *attempt) decide(ctx context.Context) bool {
	c, info := a.connect, a.conn.Info
	a.req = policy.Request{
		Username: c.Username, HasPassword: c.PasswordFlag, Password: c.Password,
		ClientID: c.ClientID, Protocol: c.ProtocolLevel, RemoteAddr: info.Remote,
		CertSHA256: info.CertSHA256, CertCN: info.CertCN,
		HasWill: c.WillFlag, WillTopic: c.WillTopic,
	}
	authStart := time.Now()
	d, err := a.p.cfg.Auth.Authenticate(ctx, a.req)
	a.p.metrics.AuthDuration.Observe(time.Since(authStart).Seconds())
	if err != nil {
		a.outcome, a.err = outcomeStoreUnavailable, err
		code := packets.ServerUnavailable
		switch {
		case a.p.ctx.Err() != nil:
			a.outcome = outcomeShutdown
		case errors.Is(err, policy.ErrBusy):
			a.outcome, code = outcomeBusy, packets.ServerBusy
		}
		a.refuse(a.level, code)
		return false
	}
	a.decision, a.reason = d, d.Reason
	if !d.Allowed() {
		a.outcome = string(d.Outcome)
		a.refuse(a.level, d.Code())
		return false
	}
	// The live session is decided again against the credential it was
	// accepted with: it needs no password and never a hash.
	a.req.Verified, a.req.Password = &d.Credential, ""
	return true
}

// dialBroker opens a fresh connection to the broker and relays its
// refusal, if it refuses.
func (a *attempt) dialBroker(ctx context.Context) bool {
	rewritten := rewriteConnect(a.connect, a.p.cfg.Backend.Username, a.p.cfg.Backend.Password)
	dialStart := time.Now()
	bc, err := a.p.cfg.Backend.connect(ctx, &a.p.dialer, &rewritten)
	a.p.metrics.BackendDial.Observe(time.Since(dialStart).Seconds())
	if err != nil {
		a.outcome, a.err = outcomeBackendUnavailable, err
		a.refuse(a.level, packets.ServerUnavailable)
		return false
	}
	if !bc.ack.Accepted() {
		_, _ = a.conn.Write(bc.ackPkt)
		bc.Conn.Close()
		a.outcome = outcomeBrokerRefused
		a.err = fmt.Errorf("broker answered CONNACK 0x%02X", bc.ack.Code)
		return false
	}
	a.broker = bc
	return true
}

// handOff registers the session before the device learns it is connected,
// so that a kick or a revocation from then on finds it, writes the
// CONNACK through the session and starts the relay. From here the session
// owns both connections.
func (a *attempt) handOff() bool {
	changesBefore := a.p.changes.Load()
	s := newSession(a.p, a.conn, a.broker, a.req, a.connect, a.decision)
	if !a.p.addSession(s) {
		a.broker.Conn.Close()
		a.outcome = outcomeShutdown
		a.disconnect(packets.ServerShuttingDown)
		return false
	}
	a.session, a.outcome = s, string(policy.Accepted)
	// From here the relay's write timeout bounds writes, and reads wait.
	_ = a.raw.SetDeadline(time.Time{})
	// Through the session's writer: a kick that came first is delivered
	// right behind the CONNACK.
	if err := s.relay.WriteFirst(a.broker.ackPkt); err != nil {
		if !errors.Is(err, relay.ErrEnded) {
			a.outcome, a.err = outcomeClosed, err
		}
		s.relay.Close()
		return false
	}
	s.relay.Start()
	s.scheduleNotAfter(a.decision.NotAfter)
	if a.p.changes.Load() != changesBefore {
		// A rule changed while this CONNECT was being decided: decide again,
		// so that a revocation racing the CONNECT is not missed.
		go a.p.revalidate(s, "changed during connect")
	}
	return true
}

// finish ends the attempt: unless a session took the connections over, it
// closes them and gives back the connection's slot; either way it counts
// and logs the outcome.
func (a *attempt) finish() {
	a.p.pending.done(a.pending)
	if a.session == nil {
		a.raw.Close()
		a.p.metrics.Active.Dec()
		a.p.releaseSlot()
	}
	if a.pending.evicted.Load() && (a.outcome == outcomeTLSFailed || a.outcome == outcomeClosed || a.outcome == outcomeMalformed) {
		a.outcome = outcomeEvicted
	}
	a.p.metrics.Connects.WithLabelValues(a.outcome).Inc()
	e := a.entry()
	a.log(a.p.log, a.p.logLimit, e)
	a.record(e)
}

// refuse answers a CONNECT with a CONNACK carrying code in the client's
// version (if that version has one), then closes the connection cleanly.
func (a *attempt) refuse(level packets.Level, code packets.ReasonCode) {
	if level == 0 {
		level = packets.V311
	}
	if ack, ok := packets.AppendConnack(nil, level, false, code, packets.Properties{}); ok {
		_ = a.conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = a.conn.Write(ack)
	}
	relay.CloseConn(a.conn)
}

// disconnect writes a v5 DISCONNECT (v3 has none from a server) and closes.
func (a *attempt) disconnect(code packets.ReasonCode) {
	if a.level == packets.V5 {
		_ = a.conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = a.conn.Write(packets.AppendDisconnect(nil, a.level, code))
	}
	relay.CloseConn(a.conn)
}

// tlsVersion names the attempt's TLS version for the log line.
func (a *attempt) tlsVersion() string {
	if a.conn.Info.TLSVersion == 0 {
		return "none"
	}
	return tls.VersionName(a.conn.Info.TLSVersion)
}
