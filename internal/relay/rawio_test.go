package relay

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection, the first
// wrapped by newRawIO.
func tcpPair(t *testing.T) (wrapped, peer net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	p := <-accepted
	if p == nil {
		t.Fatal("accept failed")
	}
	w := newRawIO(c)
	if w == c && fastPath {
		t.Fatalf("newRawIO returned the %T itself on the fast path", c)
	}
	t.Cleanup(func() { w.Close(); p.Close() })
	return w, p
}

// TestRawIOStream: bytes go both ways intact, including writes far larger
// than the socket buffers (partial writes, waits for writability) and
// reads into small buffers.
func TestRawIOStream(t *testing.T) {
	w, p := tcpPair(t)
	big := make([]byte, 8<<20)
	_, _ = rand.Read(big)
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(p, int64(len(big))))
		got <- b
	}()
	if n, err := w.Write(big); n != len(big) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if b := <-got; !bytes.Equal(b, big) {
		t.Fatalf("peer read %d bytes, not what was written", len(b))
	}
	go func() { _, _ = p.Write(big[:100000]) }()
	back := make([]byte, 0, 100000)
	buf := make([]byte, 777)
	for len(back) < 100000 {
		n, err := w.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		back = append(back, buf[:n]...)
	}
	if !bytes.Equal(back, big[:100000]) {
		t.Fatal("read back other bytes")
	}
	if n, err := w.Read(nil); n != 0 || err != nil {
		t.Fatalf("empty Read = %d, %v", n, err)
	}
}

// TestRawIODeadlines: a passed read deadline fails the read as a timeout
// (the error crypto/tls and the relay treat as temporary) and the next read
// still works; a write deadline bounds a write to a peer that reads nothing.
func TestRawIODeadlines(t *testing.T) {
	w, p := tcpPair(t)
	_ = w.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := w.Read(make([]byte, 10))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() || !isTimeout(err) {
		t.Fatalf("read past deadline: %v, want a timeout net.Error", err)
	}
	_ = w.SetReadDeadline(time.Time{})
	if _, err := p.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 2)
	if _, err := io.ReadFull(w, b); err != nil || string(b) != "ok" {
		t.Fatalf("read after a timeout: %q, %v", b, err)
	}

	_ = w.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	chunk := make([]byte, 1<<20)
	for i := 0; ; i++ {
		_, err := w.Write(chunk)
		if err != nil {
			if !isTimeout(err) {
				t.Fatalf("write to a stalled peer: %v, want a timeout", err)
			}
			break
		}
		if i > 1000 {
			t.Fatal("1 GiB written to a peer that reads nothing")
		}
	}
}

// TestRawIOEnds: EOF when the peer closes, net.ErrClosed for a read blocked
// when the connection is closed, ECONNRESET as an error.
func TestRawIOEnds(t *testing.T) {
	w, p := tcpPair(t)
	p.Close()
	if _, err := w.Read(make([]byte, 10)); err != io.EOF {
		t.Fatalf("read after the peer closed: %v, want io.EOF", err)
	}

	w, _ = tcpPair(t)
	done := make(chan error, 1)
	go func() {
		_, err := w.Read(make([]byte, 10))
		done <- err
	}()
	w.Close() // before or while the read blocks: either way it must end
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("blocked read on Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a blocked read")
	}

	w, p = tcpPair(t)
	_ = p.(*net.TCPConn).SetLinger(0) // close with RST
	p.Close()
	var err error
	for range 100 {
		if _, err = w.Read(make([]byte, 10)); err != nil {
			break
		}
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after a reset: %v, want ECONNRESET", err)
	}
}
