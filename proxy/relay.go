package proxy

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// relayBufSize fits one whole TLS record, so one Read returns one record.
const relayBufSize = 16 << 10

// bufPool holds relay buffers. A buffer is taken only once the socket is
// readable and given back after the write, so an idle connection holds no
// relay buffer at all.
var bufPool = sync.Pool{New: func() any { b := make([]byte, relayBufSize); return &b }}

// kickGrace bounds how long a kick waits for a packet boundary before it
// closes without DISCONNECT.
const kickGrace = time.Second

// session is one authenticated client relayed to its own broker connection.
type session struct {
	p         *Proxy
	client    net.Conn // *tls.Conn or the TCP connection
	clientRaw net.Conn // the TCP connection under client
	backend   net.Conn
	level     byte
	username  string
	clientID  string

	// wmu serialises writes to the client, so that a DISCONNECT the proxy
	// injects lands between two of the broker's packets, never inside one.
	wmu      sync.Mutex
	sc       packets.Scanner
	kickCode atomic.Uint32 // packets.ReasonCode, set before kicking
	kicking  atomic.Bool

	closeOnce sync.Once
	pumps     atomic.Int32

	// req is the CONNECT's authentication request, kept to decide the
	// connection again on a rule change (it holds the password in memory;
	// with the remembered verification, a re-decision costs no hash).
	req      authstore.Request
	timerMu  sync.Mutex
	notAfter *time.Timer
}

func newSession(p *Proxy, client, clientRaw, backend net.Conn, req authstore.Request) *session {
	return &session{p: p, client: client, clientRaw: clientRaw, backend: backend,
		level: req.Protocol, username: req.Username, clientID: req.ClientID, req: req}
}

// start runs the two directions on fresh goroutines.
func (s *session) start() {
	s.pumps.Store(2)
	s.p.wg.Add(2)
	go s.pump(s.client, s.clientRaw, s.writeBackend, s.p.metrics.bytesUp)
	go s.pump(s.backend, rawOf(s.backend), s.writeClient, s.p.metrics.bytesDown)
}

// pump copies src to write until either side fails, then closes both.
func (s *session) pump(src, srcRaw net.Conn, write func([]byte) error, counter interface{ Add(float64) }) {
	defer func() {
		s.close()
		if s.pumps.Add(-1) == 0 {
			s.p.removeSession(s)
			s.p.metrics.Active.Dec()
			if s.p.slots != nil {
				<-s.p.slots
			}
		}
		s.p.wg.Done()
	}()
	_, isTLS := src.(*tls.Conn)
	var rc syscall.RawConn
	if sc, ok := srcRaw.(syscall.Conn); ok {
		rc, _ = sc.SyscallConn()
	}
	// pending: data may already be buffered (inside crypto/tls, or left in
	// the socket by a read that filled the buffer), so read before waiting.
	pending := isTLS
	for {
		if !pending && rc != nil {
			if err := waitReadable(rc); err != nil {
				return
			}
		}
		bp := bufPool.Get().(*[]byte)
		buf := *bp
		drain := pending && isTLS
		if drain {
			// Take only what crypto/tls already holds: a deadline in the
			// past fails any read from the socket at once (a timeout is not
			// sticky on a tls.Conn's read side).
			_ = src.SetReadDeadline(time.Unix(1, 0))
		}
		n, err := src.Read(buf)
		if drain {
			_ = src.SetReadDeadline(time.Time{})
		}
		if n > 0 {
			counter.Add(float64(n))
			if werr := write(buf[:n]); werr != nil {
				bufPool.Put(bp)
				return
			}
		}
		bufPool.Put(bp)
		if err != nil {
			if drain && isTimeout(err) {
				pending = false
				continue
			}
			return
		}
		pending = isTLS || n == len(buf)
	}
}

func (s *session) writeBackend(p []byte) error {
	_, err := s.backend.Write(p)
	return err
}

// writeClient forwards broker bytes to the client, tracking packet
// boundaries; when a kick is pending it stops at the first boundary it can,
// writes the DISCONNECT there and ends the session.
func (s *session) writeClient(p []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	boundary, err := s.sc.Feed(p)
	if err != nil {
		return err // the broker sent something that is not MQTT
	}
	if s.kicking.Load() {
		if boundary > 0 {
			_, _ = s.client.Write(p[:boundary])
			s.writeDisconnectLocked()
			return errKicked
		}
		_, err = s.client.Write(p)
		return err
	}
	_, err = s.client.Write(p)
	return err
}

var errKicked = errors.New("session kicked")

func (s *session) writeDisconnectLocked() {
	_ = s.client.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = s.client.Write(packets.AppendDisconnect(nil, s.level, packets.ReasonCode(s.kickCode.Load())))
}

// kick ends the session from the proxy's side. An MQTT 5 client first gets a
// DISCONNECT with code, at a packet boundary (waiting up to kickGrace for
// one); a 3.x client is closed. The broker connection is closed too.
func (s *session) kick(code packets.ReasonCode, cause string) {
	s.kickCode.Store(uint32(code))
	if s.kicking.Swap(true) {
		return
	}
	s.p.metrics.Disconnects.WithLabelValues(cause).Inc()
	if s.level != packets.V5 {
		s.close()
		return
	}
	// A write to the client in progress holds wmu: do not wait behind it.
	if s.wmu.TryLock() {
		if s.sc.AtBoundary() {
			s.writeDisconnectLocked()
			s.wmu.Unlock()
			s.close()
			return
		}
		s.wmu.Unlock()
	}
	// Mid-packet or mid-write: writeClient injects the DISCONNECT at the
	// next boundary; past the grace period the session closes without it.
	time.AfterFunc(kickGrace, s.close)
}

func (s *session) close() {
	s.closeOnce.Do(func() {
		closeConn(s.client)
		_ = s.backend.Close()
	})
}

// rawOf returns the TCP connection under a (possibly TLS) connection.
func rawOf(c net.Conn) net.Conn {
	if tc, ok := c.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return c
}
