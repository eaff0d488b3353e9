package transport

import (
	"bytes"
	"context"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// bytesConn is a connection whose peer sent data and then closed; it
// counts what was read from it.
type bytesConn struct {
	r    *bytes.Reader
	read int
}

func (c *bytesConn) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.read += n
	return n, err
}
func (c *bytesConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *bytesConn) Close() error                { return nil }
func (c *bytesConn) LocalAddr() net.Addr         { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8883} }
func (c *bytesConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (c *bytesConn) SetDeadline(time.Time) error      { return nil }
func (c *bytesConn) SetReadDeadline(time.Time) error  { return nil }
func (c *bytesConn) SetWriteDeadline(time.Time) error { return nil }

// maxFuzzAlloc bounds what one header read may allocate: the read buffer,
// the parser's header and TLVs (at most MaxProxyHeader), with room for the
// runtime's own.
const maxFuzzAlloc = 64 << 10

// FuzzProxyProtocol feeds arbitrary bytes from a trusted balancer through
// ProxyProtocol (and so go-proxyproto): it never panics or blocks, reads at
// most MaxProxyHeader bytes, allocates a bounded amount, and on success
// hands on exactly the bytes behind the header, with the header's address.
// The seed corpus is in testdata/fuzz/FuzzProxyProtocol.
func FuzzProxyProtocol(f *testing.F) {
	f.Add(headerV1("192.0.2.7", 5555))
	f.Add(append(headerV2(f, proxyproto.PROXY, "192.0.2.7", 5555), 0x16, 0x03, 0x01))
	f.Add(headerV2(f, proxyproto.LOCAL, "192.0.2.7", 5555))
	f.Add([]byte("PROXY TCP6 2001:db8::1 ::1 5555 8883\r\nGET /mqtt HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &bytesConn{r: bytes.NewReader(data)}
		p := &ProxyProtocol{From: loopback, Next: Plain{}}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		conn, err := p.Terminate(context.Background(), c, nil)
		runtime.ReadMemStats(&after)
		if a := after.TotalAlloc - before.TotalAlloc; a > maxFuzzAlloc {
			t.Fatalf("allocated %d bytes for a %d-byte input", a, len(data))
		}
		if c.read > MaxProxyHeader {
			t.Fatalf("read %d bytes, more than MaxProxyHeader", c.read)
		}
		if err != nil {
			if conn.Conn != nil {
				t.Fatal("a connection with an error")
			}
			return
		}
		if !conn.Info.Remote.IsValid() {
			t.Fatalf("accepted without an address: %+v", conn.Info)
		}
		rest, err := io.ReadAll(conn.Conn)
		if err != nil {
			t.Fatal(err)
		}
		headerLen := len(data) - len(rest)
		if headerLen <= 0 || !bytes.Equal(rest, data[headerLen:]) {
			t.Fatalf("handed on %q of %q", rest, data)
		}
		h, _, err := ReadProxyHeader(bytes.NewReader(data[:headerLen]))
		if err != nil {
			t.Fatalf("the header %q alone does not read again: %v", data[:headerLen], err)
		}
		if src, _, ok := h.TCPAddrs(); !ok || src.String() != conn.Conn.RemoteAddr().String() {
			t.Fatalf("the header alone gives %v, the connection %v", h.SourceAddr, conn.Conn.RemoteAddr())
		}
	})
}
