package transport

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/pki"
)

// countingConn counts the bytes a client sends and receives.
type countingConn struct {
	net.Conn
	in, out atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}

// recordingCache is a client session cache that keeps one session and
// records the length of the last ticket the server sent.
type recordingCache struct {
	mu     sync.Mutex
	cs     *tls.ClientSessionState
	ticket []byte
}

func (c *recordingCache) Get(string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cs, c.cs != nil
}

func (c *recordingCache) Put(_ string, cs *tls.ClientSessionState) {
	if cs == nil {
		return
	}
	ticket, _, err := cs.ResumptionState()
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cs, c.ticket = cs, bytes.Clone(ticket)
}

// handshakeBytes is what one handshake cost the client on the wire.
type handshakeBytes struct {
	sent, received int64
	resumed        bool
}

// dialOnce makes one TLS connection from client to a server using
// server, reads one byte the server writes after the handshake (so that a
// TLS 1.3 ticket has arrived), and reports the bytes on the wire.
func dialOnce(t *testing.T, server *tls.Config, client *tls.Config) handshakeBytes {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	errc := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		tc := tls.Server(c, server)
		if err := tc.HandshakeContext(context.Background()); err != nil {
			errc <- err
			return
		}
		if _, err := tc.Write([]byte{'x'}); err != nil {
			errc <- err
			return
		}
		_, _ = tc.Read(make([]byte, 1)) // until the client closes
		errc <- nil
	}()
	raw, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cc := &countingConn{Conn: raw}
	tc := tls.Client(cc, client)
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if _, err := tc.Read(make([]byte, 1)); err != nil {
		t.Fatalf("read after the handshake: %v", err)
	}
	resumed := tc.ConnectionState().DidResume
	// received includes the one-byte application record (22 to 30 bytes).
	hb := handshakeBytes{sent: cc.out.Load(), received: cc.in.Load(), resumed: resumed}
	tc.Close()
	if err := <-errc; err != nil {
		t.Fatalf("server: %v", err)
	}
	return hb
}

// device is a client certificate chain and the CA file that verifies it.
type device struct {
	name   string
	cert   tls.Certificate
	caFile string
}

// ecdsaDevice: an ECDSA P-256 leaf issued directly by an ECDSA root.
func ecdsaDevice(t *testing.T, dir string) device {
	ca, err := pki.NewCA("device CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Client("sensor-0001")
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "ecdsa-ca.pem")
	if err := os.WriteFile(f, ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return device{name: "ECDSA P-256 leaf, root CA", cert: leaf.TLS(), caFile: f}
}

// rsaDevice: an RSA-2048 leaf under an RSA-2048 intermediate under an
// RSA-2048 root, the device sending leaf and intermediate (the shape of
// many cloud IoT device certificates).
func rsaDevice(t *testing.T, dir string) device {
	mk := func(tmpl, parent *x509.Certificate, parentKey *rsa.PrivateKey) (*x509.Certificate, *rsa.PrivateKey) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().AddDate(1, 0, 0)
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c, key
	}
	caTmpl := func(cn string) *x509.Certificate {
		return &x509.Certificate{Subject: pkix.Name{CommonName: cn, Organization: []string{"Example Devices Ltd"}, Country: []string{"DE"}},
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	}
	root, rootKey := mk(caTmpl("Example Device Root CA"), nil, nil)
	inter, interKey := mk(caTmpl("Example Device Issuing CA 1"), root, rootKey)
	leaf, leafKey := mk(&x509.Certificate{Subject: pkix.Name{CommonName: "sensor-0001", Organization: []string{"Example Devices Ltd"}},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, inter, interKey)
	f := filepath.Join(dir, "rsa-ca.pem")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return device{name: "RSA-2048 leaf, intermediate, root CA", caFile: f,
		cert: tls.Certificate{Certificate: [][]byte{leaf.Raw, inter.Raw}, PrivateKey: leafKey, Leaf: leaf}}
}

// handleStore is server-side session state: the ticket is a 32-byte
// random handle to the serialized SessionState kept in memory. It is what
// WrapSession/UnwrapSession would do, built here only to measure it.
type handleStore struct {
	mu sync.Mutex
	m  map[[32]byte][]byte
}

func (h *handleStore) wrap(_ tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	b, err := ss.Bytes()
	if err != nil {
		return nil, err
	}
	var id [32]byte
	_, _ = rand.Read(id[:])
	h.mu.Lock()
	h.m[id] = b
	h.mu.Unlock()
	return id[:], nil
}

func (h *handleStore) unwrap(identity []byte, _ tls.ConnectionState) (*tls.SessionState, error) {
	if len(identity) != 32 {
		return nil, nil
	}
	h.mu.Lock()
	b, ok := h.m[[32]byte(identity)]
	h.mu.Unlock()
	if !ok {
		return nil, nil
	}
	return tls.ParseSessionState(b)
}

// TestTicketSizes measures the session ticket an mTLS device receives from
// the terminator (Go's stateless ticket: the session state sealed with the
// ticket key, client certificate chain included) and what it would
// receive with server-side state (a 32-byte handle), for TLS 1.2 and 1.3,
// an ECDSA and an RSA device; and the bytes each handshake costs the
// device on the wire. go test -v -run TestTicketSizes prints the table of
// docs/benchmarks.md.
func TestTicketSizes(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.NewCA("server CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Server("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	files, err := pki.WriteFiles(dir, ca, srv)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("| device certificate | TLS | ticket (bytes) | server state deflated | full handshake, device sends / receives | resumed, stateless ticket | resumed, 32-byte handle |")
	t.Log("|---|---|---|---|---|---|---|")
	for _, dev := range []device{{name: "none (password only)"}, ecdsaDevice(t, dir), rsaDevice(t, dir)} {
		chain := 0
		for _, c := range dev.cert.Certificate {
			chain += len(c)
		}
		cfg := TLSConfig{CertFile: files.ServerCert, KeyFile: files.ServerKey, ReloadInterval: -1}
		var certs []tls.Certificate
		if dev.caFile != "" {
			cfg.ClientCAFile, cfg.ClientAuth, certs = dev.caFile, tls.RequireAndVerifyClientCert, []tls.Certificate{dev.cert}
		}
		term, err := NewTLS(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(term.Close)
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			client := func(cache tls.ClientSessionCache) *tls.Config {
				return &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", MinVersion: v, MaxVersion: v,
					Certificates: certs, ClientSessionCache: cache,
					CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}} // as device stacks offer
			}
			// Stateless: the terminator as it is.
			stateless := &recordingCache{}
			full := dialOnce(t, term.config, client(stateless))
			if full.resumed || stateless.ticket == nil {
				t.Fatalf("%s %s: first handshake resumed %v, ticket %d bytes", dev.name, tls.VersionName(v), full.resumed, len(stateless.ticket))
			}
			ticket := len(stateless.ticket)
			resumed := dialOnce(t, term.config, client(stateless))
			if !resumed.resumed {
				t.Fatalf("%s %s: not resumed", dev.name, tls.VersionName(v))
			}
			if ticket <= chain || chain == 0 && ticket > 200 {
				t.Errorf("%s %s: ticket %d bytes, against a client chain of %d bytes", dev.name, tls.VersionName(v), ticket, chain)
			}
			// Server-side state: the same terminator's config with a handle.
			hs := &handleStore{m: map[[32]byte][]byte{}}
			withHandle := term.current.Load().Clone()
			withHandle.WrapSession, withHandle.UnwrapSession = hs.wrap, hs.unwrap
			handle := &recordingCache{}
			_ = dialOnce(t, withHandle, client(handle))
			small := dialOnce(t, withHandle, client(handle))
			if !small.resumed || len(handle.ticket) != 32 {
				t.Fatalf("%s %s: with a handle: resumed %v, ticket %d bytes", dev.name, tls.VersionName(v), small.resumed, len(handle.ticket))
			}
			// The server's session state, which a stateless ticket seals
			// (48 bytes more: IV and MAC), compressed: DER hardly
			// compresses.
			var state []byte
			hs.mu.Lock()
			for _, b := range hs.m {
				state = b
			}
			hs.mu.Unlock()
			if len(state)+48 != ticket {
				t.Errorf("%s %s: server state %d bytes, ticket %d: want state + 48", dev.name, tls.VersionName(v), len(state), ticket)
			}
			var z bytes.Buffer
			zw, _ := flate.NewWriter(&z, flate.BestCompression)
			_, _ = zw.Write(state)
			_ = zw.Close()
			// The ClientHello carries the ticket once; nothing else differs.
			if d := resumed.sent - small.sent; d != int64(ticket-32) {
				t.Errorf("%s %s: a resumption sends %d bytes more with the stateless ticket, want the ticket's difference %d", dev.name, tls.VersionName(v), d, ticket-32)
			}
			t.Logf("| %s (%d B chain) | %s | %d | %d | %d / %d | %d / %d | %d / %d |", dev.name, chain, tls.VersionName(v)[4:], ticket, z.Len(),
				full.sent, full.received, resumed.sent, resumed.received, small.sent, small.received)
		}
	}
}
