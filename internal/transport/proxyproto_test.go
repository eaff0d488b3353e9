package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/pki"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/relay"
)

// edgeGate records the addresses a Gate was asked about, and refuses
// those in refuse.
type edgeGate struct {
	mu     sync.Mutex
	asked  []netip.Addr
	refuse netip.Addr
}

func (g *edgeGate) gate(a netip.Addr) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.asked = append(g.asked, a)
	if a == g.refuse {
		return errors.New("refused by the gate")
	}
	return nil
}

func (g *edgeGate) seen() []netip.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]netip.Addr(nil), g.asked...)
}

// edgeNext is a Terminator that records whether it was reached.
type edgeNext struct {
	Terminator
	mu      sync.Mutex
	reached int
}

func (n *edgeNext) Terminate(ctx context.Context, c net.Conn, g Gate) (Conn, error) {
	n.mu.Lock()
	n.reached++
	n.mu.Unlock()
	return n.Terminator.Terminate(ctx, c, g)
}

func (n *edgeNext) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.reached
}

// edgeAccept listens on 127.0.0.1 and returns the listener's address and
// a channel of the accepted connections.
func edgeAccept(t *testing.T) (string, <-chan net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ch := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(ch)
				return
			}
			t.Cleanup(func() { c.Close() })
			ch <- c
		}
	}()
	return l.Addr().String(), ch
}

// edgeDial connects to addr from the loopback address src ("" any).
func edgeDial(t *testing.T, addr, src string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func headerV1(src string, port int) []byte {
	return []byte("PROXY TCP4 " + src + " 127.0.0.1 " + strconv.Itoa(port) + " 8883\r\n")
}

func headerV2(t testing.TB, cmd proxyproto.ProtocolVersionAndCommand, src string, port int) []byte {
	h := &proxyproto.Header{Version: 2, Command: cmd, TransportProtocol: proxyproto.TCPv4,
		SourceAddr:      &net.TCPAddr{IP: net.ParseIP(src), Port: port},
		DestinationAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 8883}}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func headerV2Unix(t testing.TB) []byte {
	h := &proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.UnixStream,
		SourceAddr: &net.UnixAddr{Net: "unix", Name: "/run/a"}, DestinationAddr: &net.UnixAddr{Net: "unix", Name: "/run/b"}}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func terminateIn(t *testing.T, term Terminator, c net.Conn, g Gate, within time.Duration) (Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	_ = c.SetDeadline(time.Now().Add(within))
	return term.Terminate(ctx, c, g)
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}

// TestProxyProtocolAddress: from a trusted balancer, a v1 or v2 header's
// source address is the connection's for the Gate, Info and RemoteAddr
// (the wrapped conn's and Raw's), and the bytes behind the header reach the
// transport behind: held ones first (Kind Drainable, a read with a passed
// deadline returns them), or straight from the socket (Kind Socket).
func TestProxyProtocolAddress(t *testing.T) {
	for _, tc := range []struct {
		name     string
		header   []byte
		together bool // header and payload in one write: bytes are read past the header
	}{
		{"v1", headerV1("192.0.2.7", 5555), false},
		{"v1 with bytes behind", headerV1("192.0.2.7", 5555), true},
		{"v2", headerV2(t, proxyproto.PROXY, "192.0.2.7", 5555), false},
		{"v2 with bytes behind", headerV2(t, proxyproto.PROXY, "192.0.2.7", 5555), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, accepted := edgeAccept(t)
			client := edgeDial(t, addr, "")
			payload := []byte("the device's first bytes")
			if tc.together {
				if _, err := client.Write(append(append([]byte(nil), tc.header...), payload...)); err != nil {
					t.Fatal(err)
				}
			} else if _, err := client.Write(tc.header); err != nil {
				t.Fatal(err)
			}
			server := <-accepted
			g := &edgeGate{}
			p := &ProxyProtocol{From: loopback, Next: Plain{}}
			conn, err := terminateIn(t, p, relay.WrapSocket(server), g.gate, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			want := netip.MustParseAddr("192.0.2.7")
			if got := g.seen(); len(got) != 1 || got[0] != want {
				t.Errorf("gate asked about %v, want [%v]", got, want)
			}
			if conn.Info.Remote != want || conn.Info.RemotePort != 5555 || conn.Info.Transport != "tcp" {
				t.Errorf("Info %+v", conn.Info)
			}
			for _, a := range []net.Addr{conn.Conn.RemoteAddr(), conn.Raw.RemoteAddr()} {
				if a.String() != "192.0.2.7:5555" {
					t.Errorf("RemoteAddr %v", a)
				}
			}
			if !tc.together {
				if conn.Kind != relay.Socket {
					t.Errorf("Kind %v with nothing read past the header, want Socket", conn.Kind)
				}
				if _, err := client.Write(payload); err != nil {
					t.Fatal(err)
				}
			} else {
				if conn.Kind != relay.Drainable {
					t.Fatalf("Kind %v with bytes read past the header, want Drainable", conn.Kind)
				}
				// A read with a passed deadline hands out what is held.
				_ = conn.Conn.SetReadDeadline(time.Unix(1, 0))
				buf := make([]byte, 64)
				n, err := conn.Conn.Read(buf)
				if err != nil || !bytes.Equal(buf[:n], payload) {
					t.Fatalf("read with a passed deadline: %q %v, want %q", buf[:n], err, payload)
				}
				// Then, with nothing held, it times out without blocking.
				if _, err := conn.Conn.Read(buf); !isTimeoutOrEOF(err) {
					t.Fatalf("second read with a passed deadline: %v, want a timeout", err)
				}
				_ = conn.Conn.SetReadDeadline(time.Time{})
				return
			}
			_ = conn.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			got := make([]byte, len(payload))
			if _, err := io.ReadFull(conn.Conn, got); err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("read %q %v", got, err)
			}
		})
	}
}

// edgeTLS is a TLS terminator with a throwaway certificate for localhost,
// and the pool that trusts it.
func edgeTLS(t *testing.T) (*TLS, *tls.Config) {
	t.Helper()
	ca, err := pki.NewCA("edge test CA")
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.Server("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	files, err := pki.WriteFiles(t.TempDir(), ca, server)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewTLS(TLSConfig{CertFile: files.ServerCert, KeyFile: files.ServerKey, ReloadInterval: -1}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
}

// prefixedConn writes pre in front of the first Write: the header and the
// ClientHello in one segment, as a balancer that got both at once sends
// them.
type prefixedConn struct {
	net.Conn
	pre []byte
}

func (c *prefixedConn) Write(p []byte) (int, error) {
	if c.pre != nil {
		b := append(c.pre, p...)
		c.pre = nil
		if _, err := c.Conn.Write(b); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// TestProxyProtocolTLS: behind a header, TLS terminates as usual (the
// ClientHello read with the header is handed on), the connection's
// address is the header's, and the relay sees TLS's Kind.
func TestProxyProtocolTLS(t *testing.T) {
	term, clientCfg := edgeTLS(t)
	for _, together := range []bool{false, true} {
		addr, accepted := edgeAccept(t)
		raw := edgeDial(t, addr, "")
		var c net.Conn = raw
		header := headerV2(t, proxyproto.PROXY, "198.51.100.9", 40000)
		if together {
			c = &prefixedConn{Conn: raw, pre: header}
		} else if _, err := raw.Write(header); err != nil {
			t.Fatal(err)
		}
		tc := tls.Client(c, clientCfg)
		errc := make(chan error, 1)
		go func() {
			if err := tc.Handshake(); err != nil {
				errc <- err
				return
			}
			_, err := tc.Write([]byte("ping"))
			errc <- err
		}()
		server := <-accepted
		g := &edgeGate{}
		conn, err := terminateIn(t, &ProxyProtocol{From: loopback, Next: term}, relay.WrapSocket(server), g.gate, 5*time.Second)
		if err != nil {
			t.Fatalf("together=%v: %v", together, err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if conn.Kind != relay.Drainable || conn.Info.TLSVersion == 0 || conn.Info.Remote != netip.MustParseAddr("198.51.100.9") ||
			conn.Conn.RemoteAddr().String() != "198.51.100.9:40000" || conn.Raw.RemoteAddr().String() != "198.51.100.9:40000" {
			t.Errorf("together=%v: Kind %v Info %+v RemoteAddr %v", together, conn.Kind, conn.Info, conn.Conn.RemoteAddr())
		}
		if got := g.seen(); len(got) != 1 || got[0] != conn.Info.Remote {
			t.Errorf("gate asked about %v", got)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(conn.Conn, buf); err != nil || string(buf) != "ping" {
			t.Errorf("read %q %v", buf, err)
		}
	}
}

// TestProxyProtocolRefusals: no header from a trusted balancer, a header
// from anyone else, a LOCAL connection, a header without an address or
// over the cap, and a balancer that sends nothing: each is refused before
// the transport behind it is reached, within the header's deadline.
func TestProxyProtocolRefusals(t *testing.T) {
	untrusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.5/32")}
	long := headerV2(t, proxyproto.PROXY, "192.0.2.1", 1)
	long[14], long[15] = 0x10, 0x00 // a length of 4096
	for _, tc := range []struct {
		name  string
		from  []netip.Prefix
		send  []byte
		want  error
		gated bool // the gate is asked about the socket's own address
	}{
		{"trusted without a header", loopback, []byte{0x16, 0x03, 0x01, 0x00, 0xa5, 0x01}, ErrProxyHeaderMissing, false},
		{"trusted, LOCAL", loopback, headerV2(t, proxyproto.LOCAL, "192.0.2.1", 1), ErrProxyLocal, false},
		{"trusted, v1 UNKNOWN (as LOCAL)", loopback, []byte("PROXY UNKNOWN\r\n\x16\x03\x01"), ErrProxyLocal, false},
		{"trusted, v2 UNIX source", loopback, headerV2Unix(t), ErrProxyHeaderNoAddress, false},
		{"trusted, v2 over the cap", loopback, long, errProxyHeaderTooLong, false},
		{"trusted, malformed v1", loopback, []byte("PROXY TCP4 not-an-address\r\n"), errProxyHeaderMalformed, false},
		{"untrusted v1", untrusted, headerV1("192.0.2.7", 5555), ErrProxyHeaderUntrusted, true},
		{"untrusted v2", untrusted, headerV2(t, proxyproto.PROXY, "192.0.2.7", 5555), ErrProxyHeaderUntrusted, true},
		{"untrusted, one byte of a header", untrusted, []byte("P"), ErrProxyHeaderUntrusted, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, accepted := edgeAccept(t)
			client := edgeDial(t, addr, "")
			if _, err := client.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			next := &edgeNext{Terminator: Plain{}}
			g := &edgeGate{}
			_, err := terminateIn(t, &ProxyProtocol{From: tc.from, Next: next}, <-accepted, g.gate, 5*time.Second)
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			// One sentinel for the proxy's outcome: proxy_protocol_refused.
			if !errors.Is(err, ErrProxyProtocol) {
				t.Fatalf("error %v does not match ErrProxyProtocol", err)
			}
			if next.count() != 0 {
				t.Error("the transport behind was reached")
			}
			if asked := g.seen(); tc.gated != (len(asked) == 1) || tc.gated && asked[0] != netip.MustParseAddr("127.0.0.1") {
				t.Errorf("gate asked about %v", asked)
			}
		})
	}

	t.Run("silent balancer", func(t *testing.T) {
		addr, accepted := edgeAccept(t)
		edgeDial(t, addr, "")
		// The header's deadline is the only one: a timeout is its. The
		// context ends the wait (with context.Canceled) if it never comes.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		defer time.AfterFunc(10*time.Second, cancel).Stop()
		_, err := (&ProxyProtocol{From: loopback, Next: Plain{}, HeaderTimeout: 200 * time.Millisecond}).Terminate(ctx, <-accepted, nil)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("error %v, want the header's timeout", err)
		}
	})

	t.Run("shutdown while waiting", func(t *testing.T) {
		addr, accepted := edgeAccept(t)
		edgeDial(t, addr, "")
		server := <-accepted
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		// The header's deadline is a minute away: only the cancel ends
		// the wait.
		done := make(chan error, 1)
		go func() {
			_, err := (&ProxyProtocol{From: loopback, Next: Plain{}, HeaderTimeout: time.Minute}).Terminate(ctx, server, nil)
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("error %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the cancel did not end the wait for the header")
		}
	})
}

// TestProxyProtocolUntrustedPassThrough: a connection from outside From
// that does not start with a header is handed on untouched (peeked, not
// read: the transport behind reads every byte), and the Gate is asked once
// about its own address; a refusal by the Gate reads nothing.
func TestProxyProtocolUntrustedPassThrough(t *testing.T) {
	addr, accepted := edgeAccept(t)
	client := edgeDial(t, addr, "")
	if _, err := client.Write([]byte{0x10, 0x02, 0x00, 0x04}); err != nil {
		t.Fatal(err)
	}
	g := &edgeGate{}
	p := &ProxyProtocol{From: []netip.Prefix{netip.MustParsePrefix("10.9.9.9/32")}, Next: Plain{}}
	conn, err := terminateIn(t, p, relay.WrapSocket(<-accepted), g.gate, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if conn.Kind != relay.Socket || conn.Info.Remote != netip.MustParseAddr("127.0.0.1") || len(g.seen()) != 1 {
		t.Fatalf("Kind %v Info %+v gate %v", conn.Kind, conn.Info, g.seen())
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn.Conn, buf); err != nil || !bytes.Equal(buf, []byte{0x10, 0x02, 0x00, 0x04}) {
		t.Fatalf("read % x %v", buf, err)
	}

	// Refused by the gate: nothing is read.
	client = edgeDial(t, addr, "")
	if _, err := client.Write([]byte("PROXY ")); err != nil {
		t.Fatal(err)
	}
	server := <-accepted
	g = &edgeGate{refuse: netip.MustParseAddr("127.0.0.1")}
	if _, err := terminateIn(t, p, server, g.gate, 5*time.Second); err == nil || errors.Is(err, ErrProxyHeaderUntrusted) {
		t.Fatalf("error %v, want the gate's", err)
	}
	_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.ReadFull(server, buf[:4]); n != 4 || err != nil || string(buf[:4]) != "PROX" {
		t.Fatalf("the refused connection's bytes were read: %q %v", buf[:n], err)
	}
}
