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
// one method per step, each returning a refusal (nil: go on); finish alone
// answers, logs, counts and closes. Once the session starts, the attempt
// hands its connections off and is discarded, so the goroutine's stack and
// the attempt's fields are not kept for the life of the session.
type attempt struct {
	p        *Proxy
	raw      net.Conn // the accepted socket, wrapped for the relay's raw I/O
	pending  *pendingConn
	start    time.Time
	deadline time.Time // accept to complete CONNECT

	conn     transport.Conn // once the transport is terminated
	connect  *packets.Connect
	level    packets.Level // the CONNECT's, once known
	req      policy.Request
	decision policy.Decision
	cred     policy.Credential // what req.Verified points at until the session copies it
	reason   string            // the accepting decision's
	broker   *BrokerConn
	session  *session // once handed off: it owns the connections
	counted  bool     // holds a place under the user's max_sessions (quota.go)
}

// handle runs one accepted connection through its steps. It returns when
// the relay has started (or the connection was refused).
func (p *Proxy) handle(c net.Conn, t transport.Terminator, pc *pendingConn) {
	defer p.wg.Done()
	a := &attempt{p: p, raw: relay.WrapSocket(c), pending: pc, start: time.Now()}
	a.deadline = a.start.Add(p.cfg.ConnectTimeout)
	p.metrics.Active.Inc()
	ctx, cancel := context.WithDeadline(p.ctx, a.deadline)
	defer cancel()
	a.finish(a.run(ctx, t))
}

// run takes the attempt through its steps, up to the first refusal.
func (a *attempt) run(ctx context.Context, t transport.Terminator) *refusal {
	if r := a.terminate(ctx, t); r != nil {
		return r
	}
	if r := a.readConnect(); r != nil {
		return r
	}
	if r := a.decide(ctx); r != nil {
		return r
	}
	if r := a.admit(ctx); r != nil { // max_sessions: quota.go
		return r
	}
	if r := a.dialBroker(ctx); r != nil {
		return r
	}
	return a.handOff()
}

// terminate runs the transport's handshake under its own, shorter deadline.
func (a *attempt) terminate(ctx context.Context, t transport.Terminator) *refusal {
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
			return r
		case errors.Is(err, transport.ErrProxyProtocol):
			return closed(OutcomeProxyProtocol, err)
		case errors.Is(err, transport.ErrUpgradeRefused):
			return closed(OutcomeUpgradeRefused, err)
		}
		return closed(errorOutcome(err, OutcomeTLSFailed), err)
	}
	a.conn = conn
	if conn.Info.TLSVersion != 0 {
		a.p.handshake(conn.Info.Resumed)
	}
	_ = a.raw.SetDeadline(a.deadline)
	return nil
}

// readConnect reads the first packet, which must be a CONNECT within the
// size cap, and decodes it. A malformed CONNECT is answered as its version
// allows.
func (a *attempt) readConnect() *refusal {
	_, pkt, err := packets.ReadPacket(a.conn.Conn, a.p.cfg.MaxConnectBytes)
	a.p.pending.done(a.pending)
	switch {
	case errors.Is(err, packets.ErrTooLarge):
		return closed(OutcomeTooLarge, err)
	case errors.Is(err, io.EOF):
		return closed(OutcomeClosed, err)
	case err != nil:
		return closed(errorOutcome(err, OutcomeMalformed), err)
	}
	connect, err := packets.DecodeConnect(pkt)
	if err != nil {
		return a.malformedConnect(pkt, err)
	}
	a.connect, a.level = connect, connect.ProtocolLevel
	return nil
}

// malformedConnect is the refusal of a CONNECT that does not decode.
func (a *attempt) malformedConnect(pkt []byte, err error) *refusal {
	a.level = packets.PeekLevel(pkt)
	code := packets.MalformedPacket
	var pe *packets.Error
	if errors.As(err, &pe) {
		code = pe.Code
	}
	switch code {
	case packets.UnsupportedProtocolVersion:
		// The client's version is unknown: answer in 3.1.1's format, as
		// [MQTT-3.1.2-2] asks (a v5 server MAY use 0x84; 3.x clients
		// cannot read a v5 CONNACK).
		r := refuseWith(OutcomeProtocolVersion, code, err)
		r.level = packets.V311
		return r
	case packets.ClientIdentifierNotValid:
		return refuseWith(Decided(policy.ClientIDNotAllowed), code, err)
	}
	return &refusal{outcome: OutcomeMalformed, answer: answerConnackV5, code: code, err: err} // 0x81 / 0x82 before closing
}

// decide asks the authenticator, fresh, as for every CONNECT.
func (a *attempt) decide(ctx context.Context) *refusal {
	c, info := a.connect, a.conn.Info
	a.req = policy.Request{
		Username: c.Username, HasPassword: c.PasswordFlag, Password: c.Password,
		ClientID: c.ClientID, Protocol: c.ProtocolLevel, RemoteAddr: info.Remote,
		CertSHA256: info.CertSHA256, CertCN: info.CertCN, Cert: info.Cert, CertCASHA256: info.CertCASHA256,
		HasWill: c.WillFlag, WillTopic: c.WillTopic,
	}
	authStart := time.Now()
	d, err := a.p.cfg.Auth.Authenticate(ctx, a.req)
	a.p.metrics.AuthDuration.Observe(time.Since(authStart).Seconds())
	switch outcome, code := Answer(d, err); {
	case err != nil && a.p.ctx.Err() != nil:
		return refuseWith(OutcomeShutdown, packets.ServerUnavailable, err)
	case err != nil:
		return refuseWith(outcome, code, err)
	case !d.Allowed():
		r := refuseWith(outcome, code, nil)
		r.reason = d.Reason
		return r
	}
	a.decision, a.reason = d, d.Reason
	// The live session is decided again against the credential it was
	// accepted with: it needs no password and never a hash.
	// (The credential is copied out of d, so that d does not move to the
	// heap for it; the session keeps its own copy.)
	a.cred = d.Credential
	a.req.Verified, a.req.Password = &a.cred, ""
	a.adopt(d)
	return nil
}

// dialBroker opens a fresh connection to the broker and relays its
// refusal, if it refuses.
func (a *attempt) dialBroker(ctx context.Context) *refusal {
	dialStart := time.Now()
	bc, err := a.p.cfg.Brokers.Connect(ctx, Admitted{Request: a.req, Decision: a.decision, Connect: a.connect})
	a.p.metrics.BackendDial.Observe(time.Since(dialStart).Seconds())
	switch {
	case errors.Is(err, ErrBrokersBusy):
		return refuseWith(OutcomeBackendBusy, packets.ServerBusy, err)
	case errors.Is(err, ErrUnknownPool):
		return refuseWith(OutcomeBackendPoolUnknown, packets.ServerUnavailable, err)
	case err != nil:
		return refuseWith(OutcomeBackendUnavailable, packets.ServerUnavailable, err)
	}
	if !bc.Connack.Accepted() {
		bc.release()
		bc.Conn.Close()
		return &refusal{outcome: OutcomeBrokerRefused, answer: answerRaw, raw: bc.ConnackPacket,
			err: fmt.Errorf("broker answered CONNACK 0x%02X", bc.Connack.Code)}
	}
	a.broker = bc
	return nil
}

// handOff registers the session before the device learns it is connected,
// so that a kick or a revocation from then on finds it, writes the
// CONNACK through the session and starts the relay. From here the session
// owns both connections.
func (a *attempt) handOff() *refusal {
	changesBefore := a.p.changes.Load()
	s := newSession(a.p, a.conn, a.broker, a.req, a.connect, a.decision)
	if !a.p.addSession(s) {
		s.releaseBroker()
		a.broker.Conn.Close()
		return &refusal{outcome: OutcomeShutdown, answer: answerDisconnectV5, code: packets.ServerShuttingDown}
	}
	a.session = s
	s.takeCount(a)
	// From here the relay's write timeout bounds writes, and reads wait.
	_ = a.raw.SetDeadline(time.Time{})
	// Through the session's writer: a kick that came first is delivered
	// right behind the CONNACK (the broker's, or the one the session's
	// limits made).
	if err := s.relay.WriteFirst(s.connackFor(a.broker.ConnackPacket)); err != nil {
		s.relay.Close()
		if !errors.Is(err, relay.ErrEnded) {
			return closed(OutcomeClosed, err)
		}
		return nil // ended by a kick right behind its CONNACK: accepted, then kicked
	}
	s.relay.Start()
	s.scheduleNotAfter(a.decision.NotAfter)
	if a.p.changes.Load() != changesBefore {
		// A rule changed while this CONNECT was being decided: decide again,
		// so that a revocation racing the CONNECT is not missed.
		go a.p.revalidate(s, "changed during connect")
	}
	return nil
}

// finish ends the attempt with its refusal (nil: its session started):
// it answers the device as the refusal says, closes the connection and
// gives back its slot unless a session took them over, then counts, logs
// and records how the attempt ended.
func (a *attempt) finish(r *refusal) {
	a.p.pending.done(a.pending)
	if r != nil && a.conn.Conn != nil && a.session == nil {
		a.answer(r)
	}
	if a.session == nil {
		a.unadmit()
		a.raw.Close()
		a.p.metrics.Active.Dec()
		a.p.releaseSlot()
	}
	if r != nil && a.pending.evicted.Load() && (r.outcome == OutcomeTLSFailed || r.outcome == OutcomeClosed || r.outcome == OutcomeMalformed) {
		r.outcome = OutcomeEvicted
	}
	outcome := Decided(policy.Accepted)
	if r != nil {
		outcome = r.outcome
	}
	a.p.connected(outcome)
	e := a.entry(outcome, r)
	a.log(a.p.log, a.p.logLimit, e, r)
	a.record(e, r)
}

// answer tells the device of its refusal, as the refusal says, then closes
// the connection cleanly.
func (a *attempt) answer(r *refusal) {
	level := a.level
	if r.level != 0 {
		level = r.level
	}
	var out []byte
	switch r.answer {
	case answerNone: // closed without a packet
	case answerConnack:
		if level == 0 {
			level = packets.V311
		}
		out, _ = packets.AppendConnack(nil, level, false, r.code, packets.Properties{})
	case answerConnackV5:
		if level == packets.V5 {
			out, _ = packets.AppendConnack(nil, level, false, r.code, packets.Properties{})
		}
	case answerDisconnectV5:
		if level == packets.V5 {
			out = packets.AppendDisconnect(nil, level, r.code)
		}
	case answerRaw:
		out = r.raw
	}
	if out != nil {
		_ = a.conn.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = a.conn.Conn.Write(out)
	}
	relay.CloseConn(a.conn.Conn)
}

// tlsVersion names the attempt's TLS version for the log line.
func (a *attempt) tlsVersion() string {
	if a.conn.Info.TLSVersion == 0 {
		return "none"
	}
	return tls.VersionName(a.conn.Info.TLSVersion)
}
