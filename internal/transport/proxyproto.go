package transport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/relay"
)

// ProxyProtocol reads the PROXY protocol header (version 1 or 2) that a
// trusted load balancer sends in front of each connection, then hands the
// connection on to Next with the address the header carries: the Gate,
// Info.Remote and the connection's RemoteAddr all see the device's address,
// not the balancer's, so cidrs rules, limits, bans and logs judge the device.
//
// A connection from an address in From must begin with a header, read
// within HeaderTimeout (and the handshake's deadline, if sooner); without
// one it is closed (ErrProxyHeaderMissing). A connection from any other
// address goes to Next as it is, unless its first bytes are a PROXY header:
// then it is closed before any TLS work (ErrProxyHeaderUntrusted), so that
// nobody outside From can choose the address the rules see.
//
// A LOCAL header (version 2's LOCAL command, or version 1's UNKNOWN: the
// balancer's own connection, such as a health check) is closed at once,
// without TLS (ErrProxyLocal): it carries no device, and taking the
// balancer for the device would judge every rule against the balancer's
// address. A header whose source is not a TCP address (UNIX, UDP) is
// refused likewise (ErrProxyHeaderNoAddress).
//
// The header is read through a small buffer that is dropped once it is
// parsed; bytes read past the header (the start of the TLS ClientHello,
// typically none) are handed on ahead of the socket's, so the connection
// keeps no reader of its own for its life and, when nothing was read past
// the header, the relay still sees a plain socket.
type ProxyProtocol struct {
	// From are the trusted balancers' addresses.
	From []netip.Prefix
	// Next terminates the transport behind the header (TLS, WebSocket,
	// plain TCP).
	Next Terminator
	// HeaderTimeout bounds the wait for the header; zero means
	// DefaultProxyHeaderTimeout.
	HeaderTimeout time.Duration
}

// DefaultProxyHeaderTimeout is ProxyProtocol.HeaderTimeout's default: a
// balancer sends the header as soon as it has connected.
const DefaultProxyHeaderTimeout = 2 * time.Second

// MaxProxyHeader is the most bytes a PROXY header may take (version 2:
// the 16-byte prefix, the addresses and the TLVs); a longer one is refused
// before it is read.
const MaxProxyHeader = 2048

// proxyReadBuf is the buffer the header is read through: a whole version 1
// header (at most 107 bytes) fits in one read, as go-proxyproto requires.
const proxyReadBuf = 256

// ErrProxyProtocol is matched (errors.Is) by every refusal of
// ProxyProtocol.Terminate that is about the header: the errors below, a
// header over the cap and one that does not parse. A timeout or a closed
// connection is not.
var ErrProxyProtocol = errors.New("transport: PROXY protocol refused")

// proxyError is a refusal about the header; it matches ErrProxyProtocol.
type proxyError string

func (e proxyError) Error() string        { return string(e) }
func (e proxyError) Is(target error) bool { return target == ErrProxyProtocol }

// Errors of ProxyProtocol.Terminate.
var (
	ErrProxyHeaderMissing   error = proxyError("transport: no PROXY protocol header from a trusted load balancer")
	ErrProxyHeaderUntrusted error = proxyError("transport: PROXY protocol header from an address not trusted to send one (PROXY_PROTOCOL_FROM)")
	ErrProxyHeaderNoAddress error = proxyError("transport: PROXY protocol header without a TCP source address")
	ErrProxyLocal           error = proxyError("transport: PROXY protocol LOCAL connection (the balancer's own, such as a health check): closed")
	errProxyHeaderTooLong   error = proxyError(fmt.Sprintf("transport: PROXY protocol header longer than %d bytes", MaxProxyHeader))
	errProxyHeaderMalformed error = proxyError("transport: PROXY protocol header malformed")
)

// Name is the name of Next.
func (p *ProxyProtocol) Name() string { return p.Next.Name() + " behind PROXY protocol" }

// Terminate reads the header from a trusted balancer (or refuses one from
// anyone else) and terminates Next on the connection, whose address is
// then the header's.
func (p *ProxyProtocol) Terminate(ctx context.Context, c net.Conn, gate Gate) (Conn, error) {
	if !p.trusts(AddrOf(c.RemoteAddr())) {
		// The peer's own address is judged once, here, before anything is
		// read from it.
		if err := gate.check(AddrOf(c.RemoteAddr())); err != nil {
			return Conn{}, err
		}
		if err := refuseHeader(ctx, c); err != nil {
			return Conn{}, err
		}
		return p.Next.Terminate(ctx, c, nil)
	}
	hc, err := p.readHeader(ctx, c)
	if err != nil {
		return Conn{}, err
	}
	conn, err := p.Next.Terminate(ctx, hc, gate)
	if err != nil {
		return Conn{}, err
	}
	if conn.Kind == relay.Socket && hc.holds() {
		// Bytes read past the header are still to be read, where the
		// socket's readiness does not announce them; the wrapper hands them
		// out on a read with a passed deadline, as Drainable asks.
		conn.Kind = relay.Drainable
	}
	return conn, nil
}

func (p *ProxyProtocol) trusts(a netip.Addr) bool {
	for _, pfx := range p.From {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

// readHeader reads the header from c under the header deadline and
// returns c wrapped with the device's address and the bytes read past the
// header. c's read deadline is the context's again afterwards.
func (p *ProxyProtocol) readHeader(ctx context.Context, c net.Conn) (*headerConn, error) {
	timeout := p.HeaderTimeout
	if timeout <= 0 {
		timeout = DefaultProxyHeaderTimeout
	}
	deadline := time.Now().Add(timeout)
	ctxDeadline, hasDeadline := ctx.Deadline()
	if hasDeadline && ctxDeadline.Before(deadline) {
		deadline = ctxDeadline
	}
	_ = c.SetReadDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(aLongTimeAgo) })
	h, rest, err := ReadProxyHeader(c)
	if !stop() {
		return nil, ctx.Err()
	}
	_ = c.SetReadDeadline(ctxDeadline) // the zero time when ctx has none
	if err != nil {
		return nil, err
	}
	if h.Command == proxyproto.LOCAL {
		return nil, ErrProxyLocal
	}
	src, _, ok := h.TCPAddrs()
	if !ok {
		return nil, ErrProxyHeaderNoAddress
	}
	return &headerConn{Conn: c, remote: src, held: rest}, nil
}

// aLongTimeAgo is a deadline that has passed: it interrupts a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// ReadProxyHeader reads one PROXY protocol header (version 1 or 2) from r
// with go-proxyproto and returns it with the bytes read past it (nil when
// none). It reads at most MaxProxyHeader bytes: a version 2 header whose
// length field says more is refused before the rest is read, so what the
// parser allocates is bounded too. Input that does not begin with a header
// is ErrProxyHeaderMissing.
func ReadProxyHeader(r io.Reader) (*proxyproto.Header, []byte, error) {
	br := bufio.NewReaderSize(&io.LimitedReader{R: r, N: MaxProxyHeader}, proxyReadBuf)
	if first, err := br.Peek(1); err == nil && first[0] == proxyproto.SIGV2[0] {
		// Version 2: the length of what follows the 16-byte prefix is in
		// its last two bytes.
		if pre, err := br.Peek(16); err == nil && bytes.Equal(pre[:12], proxyproto.SIGV2) &&
			16+int(binary.BigEndian.Uint16(pre[14:16])) > MaxProxyHeader {
			return nil, nil, errProxyHeaderTooLong
		}
	}
	h, err := proxyproto.Read(br)
	switch {
	case errors.Is(err, proxyproto.ErrNoProxyProtocol):
		return nil, nil, ErrProxyHeaderMissing
	case err != nil:
		return nil, nil, fmt.Errorf("%w: %w", errProxyHeaderMalformed, err)
	}
	var rest []byte
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		rest = bytes.Clone(b)
	}
	return h, rest, nil
}

// proxySignatures are the first bytes of a version 1 and a version 2
// header.
var proxySignatures = [][]byte{proxyproto.SIGV1, proxyproto.SIGV2}

// looksLikeProxyHeader reports whether b, the first bytes a client sent
// (at least one), begin a PROXY header. No TLS ClientHello (0x16), MQTT
// CONNECT (0x10) or WebSocket upgrade ("GET") begins like one.
func looksLikeProxyHeader(b []byte) bool {
	for _, sig := range proxySignatures {
		n := min(len(b), len(sig))
		if n > 0 && bytes.Equal(b[:n], sig[:n]) {
			return true
		}
	}
	return false
}

// refuseHeader waits for the first bytes of a connection from an
// untrusted address and refuses it when they begin a PROXY header. It
// peeks (the bytes stay in the socket), so the connection is handed on
// untouched; where the platform cannot peek it does nothing, and the
// transport behind refuses the header as bytes it cannot parse.
func refuseHeader(ctx context.Context, c net.Conn) error {
	var buf [12]byte
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(aLongTimeAgo) })
	n, err := peek(c, buf[:])
	if !stop() {
		return ctx.Err()
	}
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetReadDeadline(d)
	}
	switch {
	case errors.Is(err, errNoPeek):
		return nil
	case err != nil:
		return err
	case n == 0:
		return io.EOF
	case looksLikeProxyHeader(buf[:n]):
		return ErrProxyHeaderUntrusted
	}
	return nil
}

// errNoPeek: the connection, or the platform, cannot peek.
var errNoPeek = errors.New("transport: cannot peek")

// headerConn is a connection whose header has been read: its address is
// the header's, and the bytes read past the header come first.
type headerConn struct {
	net.Conn          // the accepted socket
	remote   net.Addr // the device's address, from the header
	held     []byte   // read past the header, not yet handed out
}

// Read hands out the held bytes first, without touching the socket (so a
// read with a passed deadline returns them, as relay.Drainable asks), then
// reads the socket.
func (c *headerConn) Read(p []byte) (int, error) {
	if len(c.held) > 0 {
		n := copy(p, c.held)
		c.held = c.held[n:]
		if len(c.held) == 0 {
			c.held = nil
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

// RemoteAddr is the device's address, from the header.
func (c *headerConn) RemoteAddr() net.Addr { return c.remote }

// SyscallConn is the socket's, for the relay's readiness waits.
func (c *headerConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errNoSocket
}

// errNoSocket: the connection has no socket of its own (a net.Pipe).
var errNoSocket = errors.New("transport: no socket under the connection")

func (c *headerConn) holds() bool { return len(c.held) > 0 }
