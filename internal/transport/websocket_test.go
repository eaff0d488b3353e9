package transport

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/relay"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
)

// wsServer serves one WebSocket terminator on loopback: every accepted
// connection is terminated (within 5 s) and handed to serve, or its error
// to errs.
type wsServer struct {
	addr  string
	conns chan Conn
	errs  chan error
}

func newWSServer(t *testing.T, w *WebSocket) *wsServer {
	t.Helper()
	return newWSServerWithin(t, w, 5*time.Second)
}

func newWSServerWithin(t *testing.T, w *WebSocket, within time.Duration) *wsServer {
	t.Helper()
	addr, accepted := edgeAccept(t)
	s := &wsServer{addr: addr, conns: make(chan Conn, 8), errs: make(chan error, 8)}
	go func() {
		for c := range accepted {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), within)
				defer cancel()
				_ = c.SetDeadline(time.Now().Add(within))
				conn, err := w.Terminate(ctx, relay.WrapSocket(c), nil)
				if err != nil {
					c.Close()
					s.errs <- err
					return
				}
				_ = conn.Raw.SetDeadline(time.Time{})
				s.conns <- conn
			}()
		}
	}()
	return s
}

func (s *wsServer) conn(t *testing.T) Conn {
	t.Helper()
	select {
	case c := <-s.conns:
		t.Cleanup(func() { c.Raw.Close() }) // no closing handshake with a client that may not read
		return c
	case err := <-s.errs:
		t.Fatalf("Terminate: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no connection terminated")
	}
	return Conn{}
}

func (s *wsServer) err(t *testing.T) error {
	t.Helper()
	select {
	case c := <-s.conns:
		c.Conn.Close()
		t.Fatal("the connection was upgraded")
	case err := <-s.errs:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Terminate did not return")
	}
	return nil
}

// wsDial dials the server over TLS with opts, returning the client and the
// HTTP response.
func wsDial(t *testing.T, s *wsServer, cfg *tls.Config, path string, opts *websocket.DialOptions) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	if opts == nil {
		opts = &websocket.DialOptions{}
	}
	opts.HTTPClient = &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "wss://"+s.addr+path, opts)
	if c != nil {
		t.Cleanup(func() { c.CloseNow() })
	}
	return c, resp, err
}

// TestWebSocketCarriesMQTTBytes: a wss upgrade on the path with the mqtt
// (or mqttv3.1) subprotocol yields a connection whose bytes are those of
// binary messages, both ways; its Info is the TLS connection's with
// transport "wss", and its Kind is Opaque.
func TestWebSocketCarriesMQTTBytes(t *testing.T) {
	term, cfg := edgeTLS(t)
	s := newWSServer(t, &WebSocket{Next: term, PingInterval: -1})
	for _, sub := range []string{"mqtt", "mqttv3.1"} {
		client, resp, err := wsDial(t, s, cfg, "/mqtt", &websocket.DialOptions{Subprotocols: []string{sub}})
		if err != nil {
			t.Fatal(err)
		}
		if client.Subprotocol() != sub || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Errorf("subprotocol %q status %d", client.Subprotocol(), resp.StatusCode)
		}
		conn := s.conn(t)
		if conn.Kind != relay.Opaque || conn.Info.Transport != "wss" || conn.Info.TLSVersion == 0 || conn.Info.Remote.String() != "127.0.0.1" {
			t.Errorf("Kind %v Info %+v", conn.Kind, conn.Info)
		}
		if !strings.HasPrefix(conn.Conn.RemoteAddr().String(), "127.0.0.1:") {
			t.Errorf("RemoteAddr %v", conn.Conn.RemoteAddr())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		// A packet split over two messages, then two packets in one.
		for _, m := range [][]byte{{0x10, 0x04}, {0x00, 0x02, 'h', 'i'}} {
			if err := client.Write(ctx, websocket.MessageBinary, m); err != nil {
				t.Fatal(err)
			}
		}
		got := make([]byte, 6)
		if _, err := io.ReadFull(conn.Conn, got); err != nil || !bytes.Equal(got, []byte{0x10, 0x04, 0x00, 0x02, 'h', 'i'}) {
			t.Fatalf("server read % x %v", got, err)
		}
		if _, err := conn.Conn.Write([]byte{0x20, 0x02, 0x00, 0x00}); err != nil {
			t.Fatal(err)
		}
		typ, msg, err := client.Read(ctx)
		cancel()
		if err != nil || typ != websocket.MessageBinary || !bytes.Equal(msg, []byte{0x20, 0x02, 0x00, 0x00}) {
			t.Fatalf("client read %v % x %v", typ, msg, err)
		}
	}
}

// TestWebSocketRefusals: the upgrade request is judged before the 101:
// another path is 404, a browser origin not listed is 403 (a listed one,
// any with "*", and none at all pass), no mqtt subprotocol is 400, a
// request over MaxRequestBytes is 431; each refusal fails Terminate with
// ErrUpgradeRefused (or the request error) and closes the connection.
func TestWebSocketRefusals(t *testing.T) {
	term, cfg := edgeTLS(t)
	listed := &WebSocket{Next: term, Origins: []string{"https://app.example.com"}, PingInterval: -1}
	anyOrigin := &WebSocket{Next: term, Origins: []string{"*"}, Path: "/ws", PingInterval: -1}
	mqtt := []string{"mqtt"}
	for _, tc := range []struct {
		name   string
		w      *WebSocket
		path   string
		origin string
		subs   []string
		status int
	}{
		{"listed origin", listed, "/mqtt", "https://APP.example.com", mqtt, 101},
		{"no origin", listed, "/mqtt", "", mqtt, 101},
		{"origin not listed", listed, "/mqtt", "https://evil.example.net", mqtt, 403},
		{"same host, not listed", listed, "/mqtt", "https://127.0.0.1", mqtt, 403},
		{"any origin", anyOrigin, "/ws", "https://evil.example.net", mqtt, 101},
		{"another path", listed, "/other", "", mqtt, 404},
		{"configured path only", anyOrigin, "/mqtt", "", mqtt, 404},
		{"no subprotocol", listed, "/mqtt", "", nil, 400},
		{"another subprotocol", listed, "/mqtt", "", []string{"wamp"}, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newWSServer(t, tc.w)
			opts := &websocket.DialOptions{Subprotocols: tc.subs, HTTPHeader: http.Header{}}
			if tc.origin != "" {
				opts.HTTPHeader.Set("Origin", tc.origin)
			}
			_, resp, err := wsDial(t, s, cfg, tc.path, opts)
			if resp == nil || resp.StatusCode != tc.status {
				t.Fatalf("response %v, error %v; want status %d", resp, err, tc.status)
			}
			if tc.status == 101 {
				s.conn(t)
				return
			}
			if err := s.err(t); !errors.Is(err, ErrUpgradeRefused) {
				t.Fatalf("Terminate: %v", err)
			}
		})
	}

	t.Run("request too large", func(t *testing.T) {
		s := newWSServer(t, listed)
		c, err := tls.Dial("tcp", s.addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go func() {
			_, _ = io.WriteString(c, "GET /mqtt HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", MaxRequestBytes)+"\r\n\r\n")
		}()
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("response %v %v", resp, err)
		}
		if err := s.err(t); !errors.Is(err, errRequestTooLarge) {
			t.Fatalf("Terminate: %v", err)
		}
	})

	t.Run("silent after TLS", func(t *testing.T) {
		s := newWSServerWithin(t, listed, time.Second)
		c, err := tls.Dial("tcp", s.addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Its 1 s deadline is the only one: a timeout within the wait of
		// s.err (10 s) is that deadline's.
		var ne net.Error
		if err := s.err(t); !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Terminate: %v, want a timeout", err)
		}
	})
}

// TestWebSocketFrames: a message over MaxMessage ends the connection
// (the client sees 1009), a message at the cap passes, and a text message
// ends the connection.
func TestWebSocketFrames(t *testing.T) {
	term, cfg := edgeTLS(t)
	s := newWSServer(t, &WebSocket{Next: term, MaxMessage: 1024, PingInterval: -1})
	for _, tc := range []struct {
		name string
		typ  websocket.MessageType
		size int
		ends bool
		code websocket.StatusCode // the close status the client sees, when known
	}{
		{"binary at the cap", websocket.MessageBinary, 1024, false, 0},
		{"binary over the cap", websocket.MessageBinary, 1100, true, websocket.StatusMessageTooBig},
		{"text", websocket.MessageText, 4, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, _, err := wsDial(t, s, cfg, "/mqtt", &websocket.DialOptions{Subprotocols: []string{"mqtt"}})
			if err != nil {
				t.Fatal(err)
			}
			conn := s.conn(t)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := client.Write(ctx, tc.typ, bytes.Repeat([]byte{'a'}, tc.size)); err != nil {
				t.Fatal(err)
			}
			if !tc.ends {
				// The message, then the next one: the connection goes on.
				if err := client.Write(ctx, websocket.MessageBinary, []byte("next")); err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(io.LimitReader(conn.Conn, int64(tc.size)+4))
				if err != nil || len(got) != tc.size+4 || string(got[tc.size:]) != "next" {
					t.Fatalf("read %d bytes %v", len(got), err)
				}
				return
			}
			// The proxy ends it: a timeout here is a connection left open.
			_ = conn.Raw.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 64<<10)
			for {
				if _, err = conn.Conn.Read(buf); err != nil {
					break
				}
			}
			if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the connection did not end: %v", err)
			}
			if tc.code != 0 {
				if _, _, err := client.Read(ctx); websocket.CloseStatus(err) != tc.code {
					t.Fatalf("client sees %v, want close status %d", err, tc.code)
				}
			}
		})
	}
}

// TestWebSocketPings: the proxy pings; a client that answers stays, one
// that stops reading (no pong) is closed (within two intervals: the test
// waits for it, without timing it), and Close returns for a peer that
// never answers the close.
func TestWebSocketPings(t *testing.T) {
	term, cfg := edgeTLS(t)
	const interval = 150 * time.Millisecond
	s := newWSServer(t, &WebSocket{Next: term, PingInterval: interval})

	var pings atomic.Int64
	client, _, err := wsDial(t, s, cfg, "/mqtt", &websocket.DialOptions{Subprotocols: []string{"mqtt"},
		OnPingReceived: func(context.Context, []byte) bool { pings.Add(1); return true }})
	if err != nil {
		t.Fatal(err)
	}
	alive := s.conn(t)
	readCtx, stopReading := context.WithCancel(context.Background())
	defer stopReading()
	go func() { _, _, _ = client.Read(readCtx) }() // answers pings
	serverRead := make(chan error, 1)
	go func() { _, err := alive.Conn.Read(make([]byte, 1)); serverRead <- err }() // reads pongs
	testenv.WaitFor(t, 5*time.Second, fmt.Sprintf("4 pings at a %v interval", interval), func() bool { return pings.Load() >= 4 })
	select {
	case err := <-serverRead:
		t.Fatalf("a connection that answers pings was closed: %v", err)
	default:
	}

	// A client that upgrades and then reads nothing never answers.
	c, err := tls.Dial("tcp", s.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /mqtt HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	dead := s.conn(t)
	go func() { _, err := dead.Conn.Read(make([]byte, 1)); serverRead <- err }()
	select {
	case err := <-serverRead:
		if err == nil {
			t.Error("read without error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a client that never answers a ping was not closed")
	}
	closeWithin(t, dead.Conn, wsCloseWait+5*time.Second)
}

// closeWithin closes c, failing if Close has not returned within d, and
// says how long it took.
func closeWithin(t *testing.T, c net.Conn, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	closed := make(chan struct{})
	go func() { _ = c.Close(); close(closed) }()
	select {
	case <-closed:
		return time.Since(start)
	case <-time.After(d):
		t.Fatalf("Close has not returned after %v", d)
		return 0
	}
}

// TestWebSocketCloseIsBounded: Close of a connection whose peer neither
// reads nor answers returns within about wsCloseWait.
func TestWebSocketCloseIsBounded(t *testing.T) {
	term, cfg := edgeTLS(t)
	s := newWSServer(t, &WebSocket{Next: term, PingInterval: -1})
	c, err := tls.Dial("tcp", s.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /mqtt HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	conn := s.conn(t)
	if d := closeWithin(t, conn.Conn, wsCloseWait+5*time.Second); d < wsCloseWait/2 {
		t.Errorf("Close took %v; want about %v (the close frame is not answered)", d, wsCloseWait)
	}
}

// TestWebSocketSameOrigin: without Origins (or with others listed), a wss
// request whose Origin is https:// plus its own Host's host and port (as
// Eclipse paho sends on every handshake) is upgraded; another host,
// another port, another scheme, or any same-origin request over plain ws,
// get 403.
func TestWebSocketSameOrigin(t *testing.T) {
	term, cfg := edgeTLS(t)
	for _, w := range []*WebSocket{
		{Next: term, PingInterval: -1},
		{Next: term, Origins: []string{"https://app.example.com"}, PingInterval: -1},
	} {
		s := newWSServer(t, w)
		_, port, _ := net.SplitHostPort(s.addr)
		for _, tc := range []struct {
			host, origin string
			status       int
		}{
			{"", "https://127.0.0.1:" + port, 101}, // Host: 127.0.0.1:<port>, as dialled
			{"", "HTTPS://127.0.0.1:" + port, 101},
			{"localhost:" + port, "https://LocalHost:" + port, 101},
			{"mqtt.example.com", "https://mqtt.example.com:443", 101},
			{"mqtt.example.com:443", "https://MQTT.example.com", 101},
			{"", "", 101},
			{"", "https://localhost:" + port, 403},
			{"", "http://127.0.0.1:" + port, 403},
			{"", "wss://127.0.0.1:" + port, 403},
			{"", "https://127.0.0.1", 403},
			{"", "https://127.0.0.1:1" + port, 403},
			{"", "https://127.0.0.1:" + port + "/", 403},
			{"", "https://evil.example.net", 403},
			{"", "https://evil.example.net:" + port, 403},
			{"", "null", 403},
			{"evil.example.net:" + port, "https://127.0.0.1:" + port, 403},
		} {
			opts := &websocket.DialOptions{Subprotocols: []string{"mqtt"}, HTTPHeader: http.Header{}, Host: tc.host}
			if tc.origin != "" {
				opts.HTTPHeader.Set("Origin", tc.origin)
			}
			_, resp, err := wsDial(t, s, cfg, "/mqtt", opts)
			if resp == nil {
				t.Errorf("Origins %q, Host %q, Origin %q: no response: %v", w.Origins, tc.host, tc.origin, err)
				continue
			}
			if resp.StatusCode != tc.status {
				t.Errorf("Origins %q, Host %q, Origin %q: %d (%v); want %d", w.Origins, tc.host, tc.origin, resp.StatusCode, err, tc.status)
			}
			if resp.StatusCode == 101 {
				s.conn(t)
			} else if err := s.err(t); !errors.Is(err, ErrUpgradeRefused) {
				t.Fatalf("Terminate: %v", err)
			}
		}
	}

	// Over plain ws, same-origin is no exemption: a DNS rebinding page
	// sends its own origin too.
	s := newWSServer(t, &WebSocket{Next: Plain{}, PingInterval: -1})
	for _, origin := range []string{"https://" + s.addr, "http://" + s.addr} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, resp, err := websocket.Dial(ctx, "ws://"+s.addr+"/mqtt", &websocket.DialOptions{Subprotocols: []string{"mqtt"},
			HTTPHeader: http.Header{"Origin": {origin}}})
		cancel()
		if c != nil {
			c.CloseNow()
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("plain ws, Origin %s: %v %v, want 403", origin, resp, err)
		}
		_ = s.err(t)
	}
}

// TestSameOrigin: the comparison of an Origin with the request's Host.
func TestSameOrigin(t *testing.T) {
	for _, tc := range []struct {
		origin, host string
		want         bool
	}{
		{"https://127.0.0.1:8884", "127.0.0.1:8884", true},
		{"https://LOCALHOST:8884", "localhost:8884", true},
		{"HTTPS://mqtt.example.com", "mqtt.example.com", true},
		{"https://mqtt.example.com:443", "mqtt.example.com", true},
		{"https://mqtt.example.com", "MQTT.example.com:443", true},
		{"https://[::1]:8884", "[::1]:8884", true},
		{"https://[::1]", "[::1]:443", true},
		{"http://127.0.0.1:8884", "127.0.0.1:8884", false},
		{"wss://127.0.0.1:8884", "127.0.0.1:8884", false},
		{"https://127.0.0.1:8885", "127.0.0.1:8884", false},
		{"https://127.0.0.1", "127.0.0.1:8884", false},
		{"https://127.0.0.1:8884", "127.0.0.1", false},
		{"https://127.0.0.1:08884", "127.0.0.1:8884", false},
		{"https://evil.example.com:8884", "127.0.0.1:8884", false},
		{"https://mqtt.example.com.", "mqtt.example.com", false},
		{"https://mqtt.example.com.evil.net", "mqtt.example.com", false},
		{"https://127.0.0.1:8884/", "127.0.0.1:8884", false},
		{"https://127.0.0.1:8884/mqtt", "127.0.0.1:8884", false},
		{"https://127.0.0.1:8884?", "127.0.0.1:8884", false},
		{"https://127.0.0.1:8884#x", "127.0.0.1:8884", false},
		{"https://u@127.0.0.1:8884", "127.0.0.1:8884", false},
		{"https://127.0.0.1:8884", "u@127.0.0.1:8884", false},
		{"https://127.0.0.1:8884", "127.0.0.1:8884/x", false},
		{"https://[::1]:8884", "::1:8884", false},
		{"https://:8884", ":8884", false},
		{"https://127.0.0.1:8884", "", false},
		{"null", "127.0.0.1:8884", false},
		{"", "127.0.0.1:8884", false},
		{"https:127.0.0.1:8884", "127.0.0.1:8884", false},
	} {
		if got := sameOrigin(tc.origin, tc.host); got != tc.want {
			t.Errorf("sameOrigin(%q, %q) = %v, want %v", tc.origin, tc.host, got, tc.want)
		}
	}
}
