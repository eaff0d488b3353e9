package transport

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/relay"
)

// WebSocket is MQTT over WebSocket (RFC 6455, MQTT 5 section 6): Next
// terminates the transport underneath (TLS for wss), then Terminate serves
// exactly one HTTP request on the connection, the upgrade, and the MQTT
// bytes travel in binary messages. It all happens inside Terminate, so the
// handshake's deadline, the pending budget and the Gate apply to the
// upgrade as to a TLS handshake.
//
// The request must be a GET of Path with the subprotocol mqtt (or
// mqttv3.1, an older name) offered; a request with an Origin header (a
// browser's) must name one of Origins or, over TLS, be same-origin (see
// Origins). Otherwise it is answered with an HTTP error (404 another path,
// 403 an origin not allowed, 400 no mqtt subprotocol, 431 a request over
// MaxRequestBytes; coder/websocket's own checks answer 400, 405 or 426) and
// closed. Text messages close the connection (1003), as does a message
// over MaxMessage (1009). The proxy
// pings every PingInterval; a peer that has not answered by the next ping
// is closed, so a browser that vanished without closing goes.
type WebSocket struct {
	// Next terminates the transport under the WebSocket: the proxy's TLS
	// for wss.
	Next Terminator
	// Path is the request path served; "" means DefaultWebSocketPath.
	Path string
	// Origins are the allowed values of the Origin header, compared whole
	// and without regard to case (https://app.example.com); "*" allows any.
	// A request without Origin (not from a browser) is always allowed, and
	// so is, over TLS (wss), a same-origin one: an Origin of scheme https
	// whose host and port are those of the request's own Host header
	// (compared without regard to case, 443 where either has no port), as
	// Eclipse paho's Python client sends on every handshake
	// ("https://host:port", its own target). That is not cross-site: no page of another origin
	// sends it, and a browser reaches this listener under a name only with
	// a certificate valid for that name, so a DNS rebinding page cannot
	// either. http://host:port is refused (another scheme: another origin),
	// as is any same-origin request over plain ws.
	Origins []string
	// MaxMessage caps a message from the device, in bytes; zero means
	// DefaultWebSocketMessage.
	MaxMessage int64
	// PingInterval is how often the proxy pings; zero means
	// DefaultWebSocketPing, negative turns pings off.
	PingInterval time.Duration
}

// Defaults of WebSocket's fields.
const (
	DefaultWebSocketPath    = "/mqtt"
	DefaultWebSocketMessage = 1 << 20
	DefaultWebSocketPing    = 30 * time.Second
	// MaxRequestBytes caps the upgrade request (request line and headers).
	MaxRequestBytes = 16 << 10
)

// Subprotocols are the WebSocket subprotocols accepted, in the order of
// preference: "mqtt" as MQTT 3.1.1 and 5 name it, "mqttv3.1" as MQTT 3.1
// clients offer it.
var Subprotocols = []string{"mqtt", "mqttv3.1"}

// wsBufSize is the size of each of the two buffers a WebSocket connection
// keeps for its life (frame headers and small messages go through them;
// larger payloads bypass them).
const wsBufSize = 2048

// wsCloseWait bounds the closing handshake: a peer that does not answer
// the close frame within it is cut off.
const wsCloseWait = time.Second

// ErrUpgradeRefused is returned when the upgrade request was answered
// with an HTTP error; the error wraps it with the reason.
var ErrUpgradeRefused = errors.New("transport: WebSocket upgrade refused")

// Name is "wss" over TLS, else "ws".
func (w *WebSocket) Name() string {
	if _, ok := w.Next.(*TLS); ok {
		return "wss"
	}
	return "ws"
}

// Terminate terminates Next, then upgrades the connection to a WebSocket.
// The returned Conn carries the MQTT bytes of binary messages; its Kind is
// relay.Opaque, since the WebSocket reader may hold bytes and a read
// deadline on it closes it.
func (w *WebSocket) Terminate(ctx context.Context, c net.Conn, gate Gate) (Conn, error) {
	conn, err := w.Next.Terminate(ctx, c, gate)
	if err != nil {
		return Conn{}, err
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Raw.SetDeadline(aLongTimeAgo) })
	ws, err := w.upgrade(conn.Conn)
	if !stop() && err == nil {
		_ = ws.CloseNow()
		err = ctx.Err()
	}
	if err != nil {
		relay.CloseConn(conn.Conn) // a TLS close_notify behind the HTTP answer
		return Conn{}, err
	}
	nc := websocket.NetConn(context.Background(), ws, websocket.MessageBinary)
	limit := w.MaxMessage
	if limit <= 0 {
		limit = DefaultWebSocketMessage
	}
	ws.SetReadLimit(limit) // after NetConn, which lifts the limit
	wc := &wsConn{Conn: nc, ws: ws, raw: conn.Raw}
	wc.startPings(w.PingInterval)
	conn.Conn, conn.Kind = wc, relay.Opaque
	conn.Info.Transport = w.Name()
	return conn, nil
}

// upgrade reads one HTTP request from c and answers it: with 101 and a
// WebSocket when it is a valid upgrade, else with an HTTP error.
//
// The request is read with http.ReadRequest and answered through a
// ResponseWriter of this connection alone, rather than by an http.Server:
// there is exactly one request, under the caller's deadline, with no
// keep-alive, no server goroutine and nothing to shut down; an error
// answer is written whole and the connection closed.
func (w *WebSocket) upgrade(c net.Conn) (*websocket.Conn, error) {
	capped := &cappedReader{r: c, left: MaxRequestBytes}
	br := bufio.NewReaderSize(capped, wsBufSize)
	req, err := http.ReadRequest(br)
	if err != nil {
		switch {
		case errors.Is(err, errRequestTooLarge):
			writeHTTPError(c, http.StatusRequestHeaderFieldsTooLarge, "request headers too large")
		case !isTimeoutOrEOF(err):
			writeHTTPError(c, http.StatusBadRequest, "malformed HTTP request")
		}
		return nil, fmt.Errorf("transport: WebSocket upgrade request: %w", err)
	}
	capped.left = -1 // the request is read: the limit no longer applies
	if reason, status := w.check(req); status != 0 {
		writeHTTPError(c, status, reason)
		return nil, fmt.Errorf("%w: %d %s", ErrUpgradeRefused, status, reason)
	}
	rw := &upgradeWriter{conn: c, br: br, header: http.Header{}}
	ws, err := websocket.Accept(rw, req, &websocket.AcceptOptions{Subprotocols: Subprotocols, InsecureSkipVerify: true})
	if err != nil {
		rw.finish()
		return nil, fmt.Errorf("%w: %d %w", ErrUpgradeRefused, rw.status, err)
	}
	return ws, nil
}

// check judges the request's path, origin and subprotocols: the reason
// and HTTP status of a refusal, status 0 when it may be upgraded.
func (w *WebSocket) check(req *http.Request) (string, int) {
	path := w.Path
	if path == "" {
		path = DefaultWebSocketPath
	}
	if req.URL.Path != path {
		return "no MQTT endpoint at " + req.URL.Path, http.StatusNotFound
	}
	if origin := req.Header.Get("Origin"); origin != "" && !w.originAllowed(origin, req.Host) {
		return "origin " + origin + " is not allowed", http.StatusForbidden
	}
	for _, offered := range headerTokens(req.Header, "Sec-WebSocket-Protocol") {
		for _, sp := range Subprotocols {
			if strings.EqualFold(offered, sp) {
				return "", 0
			}
		}
	}
	return "the WebSocket subprotocol mqtt is required", http.StatusBadRequest
}

// originAllowed reports whether a request with Host host may come from
// origin: one of Origins, or, over TLS, its own.
func (w *WebSocket) originAllowed(origin, host string) bool {
	for _, o := range w.Origins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return w.Name() == "wss" && sameOrigin(origin, host)
}

// sameOrigin reports whether origin is https://<host>[:port] of the Host
// header host (as a wss request's own origin is): scheme https, nothing
// but a host and a port, the host equal without regard to case and the
// port equal, 443 where either has none.
func sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || !strings.EqualFold(u.Scheme, "https") || u.Host == "" || u.Opaque != "" || u.User != nil ||
		u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery || host == "" {
		return false
	}
	h, err := url.Parse("https://" + host)
	if err != nil || h.Host != host || h.User != nil || h.Path != "" {
		return false
	}
	return strings.EqualFold(u.Hostname(), h.Hostname()) && u.Hostname() != "" && defaultPort(u.Port()) == defaultPort(h.Port())
}

// defaultPort is port, or 443 when it is empty.
func defaultPort(port string) string {
	if port == "" {
		return "443"
	}
	return port
}

// headerTokens are the comma-separated values of a header.
func headerTokens(h http.Header, key string) []string {
	var out []string
	for _, v := range h.Values(key) {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				out = append(out, t)
			}
		}
	}
	return out
}

func isTimeoutOrEOF(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne) && ne.Timeout()
}

// writeHTTPError answers the request with status and a one-line text body,
// then the connection is to be closed.
func writeHTTPError(c net.Conn, status int, msg string) {
	h := http.Header{}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	writeResponse(c, status, h, []byte(msg+"\n"))
}

// writeResponse writes a whole HTTP/1.1 response to c (Connection: close),
// within a second.
func writeResponse(c net.Conn, status int, h http.Header, body []byte) {
	h.Set("Content-Length", fmt.Sprint(len(body)))
	h.Set("Connection", "close")
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %03d %s\r\n", status, http.StatusText(status))
	_ = h.Write(&b)
	b.WriteString("\r\n")
	b.Write(body)
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Write(b.Bytes())
}

// errRequestTooLarge: the upgrade request is over MaxRequestBytes.
var errRequestTooLarge = errors.New("request over the size cap")

// cappedReader reads at most left bytes, then fails; left < 0 lifts the
// cap.
type cappedReader struct {
	r    io.Reader
	left int
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.left < 0 {
		return c.r.Read(p)
	}
	if c.left == 0 {
		return 0, errRequestTooLarge
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= n
	return n, err
}

// upgradeWriter is the http.ResponseWriter of the one request on a
// connection: websocket.Accept writes its 101 and hijacks the connection,
// or writes an error, which finish sends.
type upgradeWriter struct {
	conn     net.Conn
	br       *bufio.Reader // holds what the client sent after the request
	header   http.Header
	status   int
	body     bytes.Buffer
	hijacked bool
}

func (w *upgradeWriter) Header() http.Header { return w.header }

func (w *upgradeWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *upgradeWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	if w.body.Len()+len(p) > 4096 {
		return 0, errors.New("transport: upgrade error body too long")
	}
	return w.body.Write(p)
}

// Hijack sends the response head at once (the client waits for the 101
// before it sends a frame) and hands over the connection, with the
// request's reader and a writer for the frames.
func (w *upgradeWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %03d %s\r\n", w.status, http.StatusText(w.status))
	_ = w.header.Write(&b)
	b.WriteString("\r\n")
	if _, err := w.conn.Write(b.Bytes()); err != nil {
		return nil, nil, err
	}
	w.hijacked = true
	return w.conn, bufio.NewReadWriter(w.br, bufio.NewWriterSize(w.conn, wsBufSize)), nil
}

// finish sends an answer that was not a hijack (Accept refused).
func (w *upgradeWriter) finish() {
	if w.hijacked {
		return
	}
	if w.status == 0 {
		w.status = http.StatusInternalServerError
	}
	writeResponse(w.conn, w.status, w.header, w.body.Bytes())
}

// wsConn is the MQTT byte stream of a WebSocket, pinged by the proxy.
type wsConn struct {
	net.Conn // websocket.NetConn: binary messages
	ws       *websocket.Conn
	raw      net.Conn // the socket under it

	mu     sync.Mutex
	timer  *time.Timer // the next ping; nil without pings
	closed bool
}

// startPings pings the peer every interval; one that has not answered by
// the next ping is closed without a closing handshake (its reader then
// fails, which ends the session).
func (c *wsConn) startPings(interval time.Duration) {
	if interval == 0 {
		interval = DefaultWebSocketPing
	}
	if interval < 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timer = time.AfterFunc(interval, func() {
		// The pong is read by whoever reads the connection: the proxy's
		// CONNECT read, then the relay. Between the two (the decision and
		// the broker's dial, within CONNECT_TIMEOUT) it waits in the
		// socket, and the ping waits up to interval for it.
		ctx, cancel := context.WithTimeout(context.Background(), interval)
		err := c.ws.Ping(ctx)
		cancel()
		if err != nil {
			_ = c.ws.CloseNow()
			return
		}
		c.mu.Lock()
		if !c.closed {
			c.timer.Reset(interval)
		}
		c.mu.Unlock()
	})
}

// Close stops the pings and closes the WebSocket with 1000 (normal
// closure), cutting it off when the peer does not answer within
// wsCloseWait.
func (c *wsConn) Close() error {
	c.mu.Lock()
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()
	watchdog := time.AfterFunc(wsCloseWait, func() { _ = c.raw.Close() })
	err := c.Conn.Close()
	watchdog.Stop()
	return err
}
