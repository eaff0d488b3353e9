// Package transport terminates the transports devices connect over (TLS,
// plain TCP for trusted networks) and says what is known about each
// connection: its remote address and its TLS state. Every transport
// yields the same Conn, so nothing downstream branches on the transport;
// PROXY protocol and WebSocket become one more Terminator each.
package transport

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/netip"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/relay"
)

// Info is what is known about a connection once its transport is
// terminated.
type Info struct {
	Remote     netip.Addr // the device's address
	RemotePort uint16
	Transport  string // "tls", "tcp", or "wss" (WebSocket over TLS)
	TLSVersion uint16 // 0 without TLS
	Resumed    bool   // the TLS session was resumed
	// CertSHA256 is the SHA-256 of the verified client certificate's DER
	// and CertCN its subject common name, when one was presented.
	CertSHA256 []byte
	CertCN     string
	// Cert is that verified client certificate, and CertCASHA256 the
	// SHA-256 of the DER of the CA certificate that signed it (nil when
	// its chain is not known): the certificate identity, CA pinning and
	// revocation, checked after every handshake, resumed ones included.
	Cert         *x509.Certificate
	CertCASHA256 []byte
}

// Conn is a terminated connection: the relay's endpoint (Conn carries the
// MQTT bytes, Raw is the socket under it for deadlines, close and
// readiness, Kind says what Conn may hold in user space) and what is known
// about it.
type Conn struct {
	relay.Endpoint
	Info Info
}

// Terminator terminates one listener's transport.
type Terminator interface {
	// Name is the transport's name in logs ("tls", "tcp").
	Name() string
	// Terminate completes the transport's handshake on c, the accepted
	// socket, within ctx (the caller also sets c's deadline), and returns
	// what carries the MQTT bytes. Before any TLS work it asks gate
	// about the device's address (the one a PROXY protocol header gives,
	// when there is one); gate's error refuses the connection. On error
	// the caller closes c.
	Terminate(ctx context.Context, c net.Conn, gate Gate) (Conn, error)
}

// Gate judges a device's address before any TLS work (rate limits, bans);
// an error refuses the connection. A nil Gate admits everyone.
type Gate func(netip.Addr) error

func (g Gate) check(a netip.Addr) error {
	if g == nil {
		return nil
	}
	return g(a)
}

// Plain is TCP without TLS, for trusted networks.
type Plain struct{}

// Name is "tcp".
func (Plain) Name() string { return "tcp" }

// Terminate returns c as it is.
func (Plain) Terminate(_ context.Context, c net.Conn, gate Gate) (Conn, error) {
	remote := AddrOf(c.RemoteAddr())
	if err := gate.check(remote); err != nil {
		return Conn{}, err
	}
	return Conn{Endpoint: relay.Endpoint{Conn: c, Raw: c, Kind: relay.Socket}, Info: Info{Remote: remote, RemotePort: portOf(c.RemoteAddr()), Transport: "tcp"}}, nil
}

// Name is "tls".
func (s *TLS) Name() string { return "tls" }

// Terminate runs the TLS handshake.
func (s *TLS) Terminate(ctx context.Context, c net.Conn, gate Gate) (Conn, error) {
	if err := gate.check(AddrOf(c.RemoteAddr())); err != nil {
		return Conn{}, err
	}
	tc := tls.Server(c, s.config)
	if err := tc.HandshakeContext(ctx); err != nil {
		return Conn{}, err
	}
	st := tc.ConnectionState()
	info := Info{Remote: AddrOf(c.RemoteAddr()), RemotePort: portOf(c.RemoteAddr()), Transport: "tls",
		TLSVersion: st.Version, Resumed: st.DidResume}
	if len(st.PeerCertificates) > 0 {
		sum := sha256.Sum256(st.PeerCertificates[0].Raw)
		info.CertSHA256, info.CertCN = sum[:], st.PeerCertificates[0].Subject.CommonName
		info.Cert, info.CertCASHA256 = st.PeerCertificates[0], s.issuerSHA256(st)
	}
	return Conn{Endpoint: relay.Endpoint{Conn: tc, Raw: c, Kind: relay.Drainable}, Info: info}, nil
}

// AddrOf is the IP address of a, unmapped (an IPv4-mapped IPv6 address is
// its IPv4 address); the zero Addr when a has none.
func AddrOf(a net.Addr) netip.Addr {
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

func portOf(a net.Addr) uint16 {
	if ta, ok := a.(*net.TCPAddr); ok {
		return uint16(ta.Port)
	}
	return 0
}
