package proxy

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/logsafe"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// Outcomes the proxy adds to authstore's (metric label "outcome").
const (
	outcomeStoreUnavailable   = "store_unavailable"
	outcomeBackendUnavailable = "backend_unavailable"
	outcomeBrokerRefused      = "broker_refused"
	outcomeMalformed          = "malformed"
	outcomeProtocolVersion    = "unsupported_protocol"
	outcomeTooLarge           = "too_large"
	outcomeTimeout            = "timeout"
	outcomeClosed             = "closed_before_connect"
	outcomeTLSFailed          = "tls_handshake_failed"
	outcomeShutdown           = "shutting_down"
	outcomeLimit              = "max_connections"
	outcomePendingFull        = "pending_full"
	outcomeEvicted            = "pending_evicted"
)

// attempt is what one connection attempt learned, for its log line.
type attempt struct {
	start      time.Time
	remote     net.Addr
	tlsVersion string
	resumed    bool
	certSHA256 []byte
	certCN     string
	clientID   string
	username   string
	level      byte
	outcome    string
	reason     string // the decision's one-line reason, when there is one
	err        error
}

func (a *attempt) log(l *slog.Logger, lim *logLimiter) {
	attrs := []slog.Attr{
		slog.String("remote", a.remote.String()),
		slog.String("client_id", logsafe.String(a.clientID)),
		slog.String("username", logsafe.String(a.username)),
		slog.Int("protocol", int(a.level)),
		slog.String("tls", a.tlsVersion),
		slog.Bool("resumed", a.resumed),
		slog.String("cert_sha256", hex.EncodeToString(a.certSHA256)),
		slog.String("outcome", a.outcome),
		slog.Duration("duration", time.Since(a.start)),
	}
	if a.reason != "" {
		attrs = append(attrs, slog.String("reason", a.reason))
	}
	level := slog.LevelInfo
	if a.err != nil {
		attrs = append(attrs, slog.String("error", logsafe.Error(a.err)))
		if a.outcome == outcomeStoreUnavailable || a.outcome == outcomeBackendUnavailable {
			level = slog.LevelWarn
		}
	}
	if level == slog.LevelInfo && a.outcome != string(authstore.Accepted) && !lim.allow(a.outcome) {
		// A flood of refusals is summarised at info; each one is at debug.
		level = slog.LevelDebug
	}
	l.LogAttrs(context.Background(), level, "connect", attrs...)
}

// handle runs one client connection from accept to the start of the relay.
// It returns when the relay goroutines have been started (or the
// connection was refused), so the handshake's grown stack is not kept for
// the life of the session.
func (p *Proxy) handle(raw net.Conn, withTLS bool, pc *pendingConn) {
	defer p.wg.Done()
	defer p.pending.done(pc)
	raw = newRawIO(raw)
	m := p.metrics
	m.Active.Inc()
	a := &attempt{start: time.Now(), remote: raw.RemoteAddr(), tlsVersion: "none"}
	relaying := false
	defer func() {
		if !relaying {
			raw.Close()
			m.Active.Dec()
			if p.slots != nil {
				<-p.slots
			}
		}
		if pc.evicted.Load() && (a.outcome == outcomeTLSFailed || a.outcome == outcomeClosed || a.outcome == outcomeMalformed) {
			a.outcome = outcomeEvicted
		}
		m.Connects.WithLabelValues(a.outcome).Inc()
		a.log(p.log, p.logLimit)
	}()

	// One deadline covers accept to complete CONNECT; the TLS handshake has
	// a shorter one of its own.
	deadline := a.start.Add(p.cfg.ConnectTimeout)
	ctx, cancel := context.WithDeadline(p.ctx, deadline)
	defer cancel()

	conn := raw
	if withTLS {
		hsDeadline := a.start.Add(min(p.cfg.HandshakeTimeout, p.cfg.ConnectTimeout))
		_ = raw.SetDeadline(hsDeadline)
		hctx, hcancel := context.WithDeadline(ctx, hsDeadline)
		tc := tls.Server(raw, p.tls.config)
		err := tc.HandshakeContext(hctx)
		hcancel()
		if err != nil {
			a.outcome, a.err = outcomeTLSFailed, err
			if isTimeout(err) {
				a.outcome = outcomeTimeout
			}
			return
		}
		st := tc.ConnectionState()
		a.tlsVersion = tls.VersionName(st.Version)
		a.resumed = st.DidResume
		if st.DidResume {
			m.handshakeResu.Inc()
		} else {
			m.handshakeNew.Inc()
		}
		if len(st.PeerCertificates) > 0 {
			sum := sha256.Sum256(st.PeerCertificates[0].Raw)
			a.certSHA256, a.certCN = sum[:], st.PeerCertificates[0].Subject.CommonName
		}
		conn = tc
	}
	_ = raw.SetDeadline(deadline)

	// The first packet must be a CONNECT within the size cap.
	_, pkt, err := packets.ReadPacket(conn, p.cfg.MaxConnectBytes)
	p.pending.done(pc)
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
		return
	}
	connect, err := packets.DecodeConnect(pkt)
	if err != nil {
		a.err = err
		a.level = packets.PeekLevel(pkt)
		code := packets.MalformedPacket
		var pe *packets.Error
		if errors.As(err, &pe) {
			code = pe.Code
		}
		a.outcome = outcomeMalformed
		switch code {
		case packets.UnsupportedProtocolVersion:
			a.outcome = outcomeProtocolVersion
			// The client's version is unknown: answer in 3.1.1's format, as
			// [MQTT-3.1.2-2] asks (a v5 server MAY use 0x84; 3.x clients
			// cannot read a v5 CONNACK).
			p.refuse(conn, packets.V311, code)
		case packets.ClientIdentifierNotValid:
			a.outcome = string(authstore.ClientIDNotAllowed)
			p.refuse(conn, a.level, code)
		default:
			if a.level == packets.V5 {
				p.refuse(conn, packets.V5, code) // 0x81 / 0x82 before closing
			}
		}
		return
	}
	a.level, a.clientID, a.username = connect.ProtocolLevel, connect.ClientID, connect.Username

	// Decide, fresh, on every CONNECT.
	req := authstore.Request{
		Username: connect.Username, HasPassword: connect.PasswordFlag, Password: connect.Password,
		ClientID: connect.ClientID, Protocol: connect.ProtocolLevel, RemoteAddr: addrOf(raw.RemoteAddr()),
		CertSHA256: a.certSHA256, CertCN: a.certCN,
	}
	changesBefore := p.changes.Load()
	authStart := time.Now()
	d, err := p.cfg.Auth.Authenticate(ctx, req)
	m.AuthDuration.Observe(time.Since(authStart).Seconds())
	if err != nil {
		a.outcome, a.err = outcomeStoreUnavailable, err
		if p.ctx.Err() != nil {
			a.outcome = outcomeShutdown
		}
		p.refuse(conn, a.level, packets.ServerUnavailable)
		return
	}
	a.reason = d.Reason
	if !d.Allowed() {
		a.outcome = string(d.Outcome)
		p.refuse(conn, a.level, d.Code())
		return
	}
	// The live session is decided again against the credential it was
	// accepted with: it needs no password and never a hash.
	req.Verified, req.Password = &d.Credential, ""

	// Only now: a fresh connection to the broker.
	dialStart := time.Now()
	backend, ack, ackPkt, err := p.dialBackend(ctx, connect)
	m.BackendDial.Observe(time.Since(dialStart).Seconds())
	if err != nil {
		a.outcome, a.err = outcomeBackendUnavailable, err
		p.refuse(conn, a.level, packets.ServerUnavailable)
		return
	}
	if !ack.Accepted() {
		_, _ = conn.Write(ackPkt)
		backend.Close()
		a.outcome = outcomeBrokerRefused
		a.err = fmt.Errorf("broker answered CONNACK 0x%02X", ack.Code)
		closeConn(conn)
		return
	}

	// Register the session before the device learns it is connected, so
	// that a kick or a revocation from then on finds it. From here the
	// session owns both connections.
	s := newSession(p, conn, raw, backend, req, connect.KeepAlive)
	if !p.addSession(s) {
		backend.Close()
		a.outcome = outcomeShutdown
		p.sendDisconnect(conn, a.level, packets.ServerShuttingDown)
		return
	}
	relaying = true
	a.outcome = string(authstore.Accepted)
	// Through the session's writer: a kick that came first is delivered
	// right behind the CONNACK.
	if err := s.writeConnack(ackPkt); err != nil {
		if !errors.Is(err, errKicked) {
			a.outcome, a.err = outcomeClosed, err
		}
		s.close()
		return
	}
	_ = raw.SetDeadline(time.Time{})
	s.start()
	s.scheduleNotAfter(d.NotAfter)
	if p.changes.Load() != changesBefore {
		// A rule changed while this CONNECT was being decided: decide again,
		// so that a revocation racing the CONNECT is not missed.
		go p.revalidate(s, "changed during connect")
	}
}

// dialBackend dials the broker, sends the rewritten CONNECT and reads its
// CONNACK, all within the backend dial timeout.
func (p *Proxy) dialBackend(ctx context.Context, c *packets.Connect) (net.Conn, packets.Connack, []byte, error) {
	rewritten := rewriteConnect(c, p.cfg.Backend.Username, p.cfg.Backend.Password)
	return p.cfg.Backend.connect(ctx, &p.dialer, &rewritten)
}

// connect dials the broker (TCP, or TLS when configured), sends c and reads
// the CONNACK, within DialTimeout. The connection is returned whatever the
// CONNACK says; the caller closes it if the broker refused.
func (b Backend) connect(ctx context.Context, d *net.Dialer, c *packets.Connect) (net.Conn, packets.Connack, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, b.DialTimeout)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", b.Addr)
	if err != nil {
		return nil, packets.Connack{}, nil, fmt.Errorf("dial broker %s: %w", b.Addr, err)
	}
	conn = newRawIO(conn)
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	if b.TLS != nil {
		tc := tls.Client(conn, b.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, packets.Connack{}, nil, fmt.Errorf("TLS to broker %s: %w", b.Addr, err)
		}
		conn = tc
	}
	out, err := packets.AppendConnect(make([]byte, 0, 256), c)
	if err == nil {
		_, err = conn.Write(out)
	}
	if err != nil {
		conn.Close()
		return nil, packets.Connack{}, nil, fmt.Errorf("send CONNECT to broker %s: %w", b.Addr, err)
	}
	pkt, extra, err := readFirstPacket(conn, 64<<10)
	if err != nil {
		conn.Close()
		return nil, packets.Connack{}, nil, fmt.Errorf("read CONNACK from broker %s: %w", b.Addr, err)
	}
	if len(extra) > 0 {
		// The broker sent more right behind its CONNACK: keep it in front
		// of what the relay will read.
		conn = &prefixConn{Conn: conn, prefix: extra}
	}
	ack, err := packets.DecodeConnack(pkt, c.ProtocolLevel)
	if err != nil {
		conn.Close()
		return nil, packets.Connack{}, nil, fmt.Errorf("broker %s CONNACK: %w", b.Addr, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, ack, pkt, nil
}

// readFirstPacket reads one packet from a socket with as few reads as it
// can (a CONNACK is a few bytes: usually one read). Bytes read past the
// packet are returned in extra.
func readFirstPacket(c net.Conn, maxSize int) (pkt, extra []byte, err error) {
	buf := make([]byte, 256)
	n := 0
	for {
		m, err := c.Read(buf[n:])
		n += m
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("%w: %w", packets.ErrTruncated, io.ErrUnexpectedEOF)
			}
			return nil, nil, err
		}
		h, err := packets.ParseHeader(buf[:n])
		if errors.Is(err, packets.ErrTruncated) && n < len(buf) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		if h.Size() > maxSize {
			return nil, nil, fmt.Errorf("%w: %s of %d bytes", packets.ErrTooLarge, h.Type, h.Size())
		}
		if h.Size() <= n {
			return buf[:h.Size()], buf[h.Size():n], nil
		}
		pkt = make([]byte, h.Size())
		copy(pkt, buf[:n])
		if _, err := io.ReadFull(c, pkt[n:]); err != nil {
			return nil, nil, fmt.Errorf("%w: %w", packets.ErrTruncated, err)
		}
		return pkt, nil, nil
	}
}

// prefixConn is a connection whose first reads return prefix.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// Probe checks that the broker is reachable: with backend credentials it
// makes a real MQTT 3.1.1 CONNECT (clean session, a random client id) and
// requires CONNACK 0; without, a TCP (or TLS) connection must succeed.
func (b Backend) Probe(ctx context.Context) error {
	if b.DialTimeout <= 0 {
		b.DialTimeout = 5 * time.Second
	}
	var d net.Dialer
	if b.Username == "" {
		ctx, cancel := context.WithTimeout(ctx, b.DialTimeout)
		defer cancel()
		conn, err := d.DialContext(ctx, "tcp", b.Addr)
		if err != nil {
			return fmt.Errorf("dial broker %s: %w", b.Addr, err)
		}
		defer conn.Close()
		if b.TLS != nil {
			if err := tls.Client(conn, b.TLS).HandshakeContext(ctx); err != nil {
				return fmt.Errorf("TLS to broker %s: %w", b.Addr, err)
			}
		}
		return nil
	}
	c := packets.Connect{ProtocolName: "MQTT", ProtocolLevel: packets.V311, CleanStart: true, KeepAlive: 10,
		ClientID: "mqtt-authproxy-probe-" + rand.Text()[:12], UsernameFlag: true, Username: b.Username}
	if b.Password != "" {
		c.PasswordFlag, c.Password = true, b.Password
	}
	conn, ack, _, err := b.connect(ctx, &d, &c)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, _ = conn.Write(packets.AppendDisconnect(nil, packets.V311, packets.Success))
	if !ack.Accepted() {
		return fmt.Errorf("broker %s refused the backend credentials: CONNACK 0x%02X", b.Addr, ack.Code)
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

// refuse answers a CONNECT with a CONNACK carrying code in the client's
// version (if that version has one), then closes the connection cleanly.
func (p *Proxy) refuse(conn net.Conn, level byte, code packets.ReasonCode) {
	if level == 0 {
		level = packets.V311
	}
	if ack, ok := packets.AppendConnack(nil, level, false, code, packets.Properties{}); ok {
		_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = conn.Write(ack)
	}
	closeConn(conn)
}

// sendDisconnect writes a v5 DISCONNECT (v3 has none from a server) and closes.
func (p *Proxy) sendDisconnect(conn net.Conn, level byte, code packets.ReasonCode) {
	if level == packets.V5 {
		_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = conn.Write(packets.AppendDisconnect(nil, level, code))
	}
	closeConn(conn)
}

// closeConn closes conn; a TLS connection first sends close_notify, bounded
// by a short write deadline so a client that does not read cannot hold it.
func closeConn(conn net.Conn) {
	_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
	_ = conn.Close()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
