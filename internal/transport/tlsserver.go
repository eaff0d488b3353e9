package transport

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// TLSConfig describes the device-facing TLS listener.
type TLSConfig struct {
	CertFile, KeyFile string
	// ClientCAFile enables client certificates, verified against this pool.
	ClientCAFile string
	// ClientAuth: tls.NoClientCert, tls.VerifyClientCertIfGiven ("request")
	// or tls.RequireAndVerifyClientCert ("require").
	ClientAuth tls.ClientAuthType
	MinVersion uint16 // tls.VersionTLS12 or tls.VersionTLS13
	// CipherSuites are the TLS 1.2 suites offered; nil means
	// DefaultCipherSuites (AEAD only). TLS 1.3 suites are not configurable.
	CipherSuites []uint16
	// TicketKeyRotation is the epoch of the session ticket keys: a new key
	// seals tickets from each multiple of it (unix time / rotation), and
	// the keys of the last TicketKeysKept epochs, the current one included,
	// are accepted for resumption (default 1h and 25: a ticket resumes for
	// at least 24 hours).
	TicketKeyRotation time.Duration
	TicketKeysKept    int
	// TicketSecret, with TicketStore, shares the keys between replicas:
	// the key of an epoch is derived (HKDF-SHA256) from the secret and a
	// random salt that the first replica to ask stores for that epoch, so
	// replicas with the same secret and store resume each other's sessions
	// and no key is ever written anywhere. At least MinTicketSecret bytes.
	// Without them each process makes its own random keys. While the store
	// does not answer, known keys keep working and an epoch without a
	// shared key gets a local one; TLS never waits for the store, except
	// for one bounded attempt in NewTLS.
	TicketSecret []byte
	TicketStore  TicketSaltStore
	// TicketKeyRefresh is how often the store is asked again between
	// epochs, so that a replica converges after a store outage (default
	// TicketKeyRotation/12, at most 5 minutes; every second while the store
	// does not answer). A replica that finds no salt for the current or
	// the next epoch proposes one only at its next refresh (within 10
	// seconds), so that replicas that know the salts put back what a store
	// lost first; on an empty store (a fleet's first start) new tickets
	// are sealed with local keys until then.
	TicketKeyRefresh time.Duration
	// TicketKeyFile, when set, holds the session ticket keys instead: one
	// per line, 64 hex digits (32 bytes), the first used for new tickets and
	// all accepted. Replicas given the same file resume each other's
	// sessions. It is reloaded with the certificate; there is no in-process
	// rotation then: the operator rotates by adding a key in front. It
	// excludes TicketSecret.
	TicketKeyFile string
	// ReloadInterval is how often the certificate files are checked for
	// changes (default 5s; negative disables the watcher; SIGHUP still works
	// through Reload).
	ReloadInterval time.Duration
}

// DefaultCipherSuites are the TLS 1.2 suites the listener offers unless
// told otherwise: ECDHE key exchange with AEAD ciphers only (AES-GCM and
// ChaCha20-Poly1305), as Mozilla's intermediate profile (which adds DHE,
// not in Go). Go's own defaults also offer CBC with SHA-1 MACs.
func DefaultCipherSuites() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
}

// LegacyCBCCipherSuites are the ECDHE CBC-SHA suites that old device TLS
// stacks may need (AUTHPROXY_TLS12_CBC); offered after the AEAD ones.
func LegacyCBCCipherSuites() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	}
}

// LoadTicketKeys reads a ticket key file: one key per line, 64 hex digits;
// blank lines and lines starting with # are ignored.
func LoadTicketKeys(file string) ([][32]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("ticket keys: %w", err)
	}
	var keys [][32]byte
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := hex.DecodeString(line)
		if err != nil || len(k) != 32 {
			return nil, fmt.Errorf("ticket keys: %s line %d: want 64 hex digits", file, i+1)
		}
		keys = append(keys, [32]byte(k))
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("ticket keys: %s holds no key", file)
	}
	return keys, nil
}

// LoadCAPool reads a PEM file of CA certificates.
func LoadCAPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate found", file)
	}
	return pool, nil
}

// TLS terminates TLS for a listener. It owns the certificate (reloaded
// when its files change, or on Reload), the client CA pool, and the
// session ticket keys (rotated). A resumed session never carries an
// authentication decision: every CONNECT is decided afresh, and the client
// certificate chain is re-verified against the current CA pool in
// VerifyConnection, which Go runs on resumed handshakes too (unlike
// VerifyPeerCertificate). Create it with NewTLS, stop it with Close.
type TLS struct {
	cfg  TLSConfig
	log  *slog.Logger
	cert atomic.Pointer[tls.Certificate]
	pool atomic.Pointer[x509.CertPool]
	// config is what the listener uses; it hands out current, rebuilt
	// whenever the CA pool or the ticket keys change.
	config   *tls.Config
	template *tls.Config
	current  atomic.Pointer[tls.Config]

	mu       sync.Mutex
	certStat []fileStamp // of watchedFiles, at the last load
	keys     [][32]byte  // for SetSessionTicketKeys, the sealing key first
	tickets  *ticketKeys // nil with TicketKeyFile
	ticketSt TicketKeyState
	// stopCtx ends the store's calls on Close.
	stopCtx    context.Context
	cancelStop context.CancelFunc

	stop, done chan struct{}
	closeOnce  sync.Once
}

type fileStamp struct {
	mod  time.Time
	size int64
	sum  []byte
}

// NewTLS loads the certificate files and starts the goroutine that
// rotates ticket keys and watches the files.
func NewTLS(cfg TLSConfig, log *slog.Logger) (*TLS, error) {
	if cfg.TicketKeyRotation <= 0 {
		cfg.TicketKeyRotation = time.Hour
	}
	if cfg.TicketKeysKept <= 0 {
		cfg.TicketKeysKept = 25
	}
	if cfg.TicketKeyRefresh <= 0 {
		cfg.TicketKeyRefresh = min(cfg.TicketKeyRotation/12, 5*time.Minute)
	}
	if cfg.TicketKeyFile != "" && cfg.TicketSecret != nil {
		return nil, errors.New("ticket keys: a key file and a ticket secret exclude each other")
	}
	if cfg.TicketSecret != nil && len(cfg.TicketSecret) < MinTicketSecret {
		return nil, fmt.Errorf("ticket secret: %d bytes, at least %d are needed", len(cfg.TicketSecret), MinTicketSecret)
	}
	if log == nil {
		log = slog.Default()
	}
	if cfg.ReloadInterval == 0 {
		cfg.ReloadInterval = 5 * time.Second
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if cfg.CipherSuites == nil {
		cfg.CipherSuites = DefaultCipherSuites()
	}
	s := &TLS{cfg: cfg, log: log}
	s.template = &tls.Config{
		MinVersion:     cfg.MinVersion,
		CipherSuites:   cfg.CipherSuites,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.cert.Load(), nil },
		// Runs on every handshake, resumed ones included.
		VerifyConnection: s.verifyConnection,
	}
	if cfg.ClientCAFile != "" {
		s.template.ClientAuth = cfg.ClientAuth
	}
	s.config = &tls.Config{
		MinVersion:         cfg.MinVersion,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return s.current.Load(), nil },
	}
	s.stopCtx, s.cancelStop = context.WithCancel(context.Background())
	if cfg.TicketKeyFile == "" {
		s.tickets = newTicketKeys(cfg.TicketKeyRotation, cfg.TicketKeysKept, cfg.TicketSecret, cfg.TicketStore, log)
		s.refreshTickets()
	}
	if err := s.Reload(); err != nil {
		s.cancelStop()
		return nil, err
	}
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go func() { defer close(s.done); s.run(s.stop) }()
	return s, nil
}

// Close stops the key rotation and the file watcher. Connections and
// handshakes in progress are not affected.
func (s *TLS) Close() {
	s.closeOnce.Do(func() { s.cancelStop(); close(s.stop) })
	<-s.done
}

// TicketKeys describes the session ticket keys as of their last refresh.
func (s *TLS) TicketKeys() TicketKeyState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tickets == nil {
		return TicketKeyState{Mode: "file"}
	}
	st := s.ticketSt
	st.Accepted = slices.Clone(st.Accepted)
	return st
}

// refreshTickets brings the ticket keys to the current epoch and hands them
// to new handshakes. Only NewTLS and the run goroutine call it.
func (s *TLS) refreshTickets() {
	keys := s.tickets.refresh(s.stopCtx, time.Now())
	s.mu.Lock()
	s.keys, s.ticketSt = keys, s.tickets.state()
	s.mu.Unlock()
	s.rebuild()
}

// rebuild makes the config handed to new handshakes from the template, the
// current CA pool and the current ticket keys.
func (s *TLS) rebuild() {
	// Under the mutex from reading the state to storing the config, so
	// that a rebuild from older keys (a Reload on SIGHUP racing a rotation)
	// never replaces a newer one.
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.template.Clone()
	c.ClientCAs = s.pool.Load()
	if len(s.keys) > 0 {
		c.SetSessionTicketKeys(s.keys)
	}
	s.current.Store(c)
}

// verifyConnection runs on every handshake, resumed or not. On a resumed
// session it re-verifies the client's chain against the current CA pool, so
// a CA that was removed stops resuming sessions too.
func (s *TLS) verifyConnection(cs tls.ConnectionState) error {
	if !cs.DidResume || len(cs.PeerCertificates) == 0 || s.cfg.ClientCAFile == "" {
		return nil
	}
	opts := x509.VerifyOptions{Roots: s.pool.Load(), Intermediates: x509.NewCertPool(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
		return fmt.Errorf("resumed session's client certificate no longer verifies: %w", err)
	}
	return nil
}

// Reload re-reads the certificate, key and client CA files. On failure the
// previous ones stay in use. Open connections are not affected.
func (s *TLS) Reload() error {
	cert, err := LoadKeyPair(s.cfg.CertFile, s.cfg.KeyFile)
	if err != nil {
		return err
	}
	var pool *x509.CertPool
	if s.cfg.ClientCAFile != "" {
		if pool, err = LoadCAPool(s.cfg.ClientCAFile); err != nil {
			return fmt.Errorf("client CA: %w", err)
		}
	}
	var keys [][32]byte
	if s.cfg.TicketKeyFile != "" {
		if keys, err = LoadTicketKeys(s.cfg.TicketKeyFile); err != nil {
			return err
		}
	}
	s.cert.Store(cert)
	if pool != nil {
		s.pool.Store(pool)
	}
	s.mu.Lock()
	s.certStat = s.certStat[:0]
	for _, f := range s.watchedFiles() {
		s.certStat = append(s.certStat, stamp(f))
	}
	if keys != nil {
		s.keys = keys
	}
	s.mu.Unlock()
	s.rebuild()
	return nil
}

func stamp(file string) fileStamp {
	st, err := os.Stat(file)
	if err != nil {
		return fileStamp{}
	}
	b, _ := os.ReadFile(file)
	return fileStamp{mod: st.ModTime(), size: st.Size(), sum: b}
}

// watchedFiles are the files Reload reads.
func (s *TLS) watchedFiles() []string {
	files := []string{s.cfg.CertFile, s.cfg.KeyFile}
	for _, f := range []string{s.cfg.ClientCAFile, s.cfg.TicketKeyFile} {
		if f != "" {
			files = append(files, f)
		}
	}
	return files
}

// changed reports whether a watched file differs from the last load.
func (s *TLS) changed() bool {
	s.mu.Lock()
	old := append([]fileStamp(nil), s.certStat...)
	s.mu.Unlock()
	for i, f := range s.watchedFiles() {
		if i >= len(old) {
			return true
		}
		st, err := os.Stat(f)
		if err != nil {
			continue
		}
		if !st.ModTime().Equal(old[i].mod) || st.Size() != old[i].size {
			b, _ := os.ReadFile(f)
			if !bytes.Equal(b, old[i].sum) {
				return true
			}
		}
	}
	return false
}

// run rotates ticket keys and reloads changed certificate files until stop closes.
func (s *TLS) run(stop <-chan struct{}) {
	var rotate <-chan time.Time
	var rotateTimer *time.Timer
	if s.tickets != nil {
		rotateTimer = time.NewTimer(s.tickets.next(time.Now(), s.cfg.TicketKeyRefresh))
		defer rotateTimer.Stop()
		rotate = rotateTimer.C
	}
	var reload <-chan time.Time
	if s.cfg.ReloadInterval > 0 {
		t := time.NewTicker(s.cfg.ReloadInterval)
		defer t.Stop()
		reload = t.C
	}
	for {
		select {
		case <-stop:
			return
		case <-rotate:
			s.refreshTickets()
			rotateTimer.Reset(s.tickets.next(time.Now(), s.cfg.TicketKeyRefresh))
		case <-reload:
			if s.changed() {
				if err := s.Reload(); err != nil {
					s.log.Error("certificate files changed but did not load; keeping the previous ones", "error", err)
				} else {
					s.log.Info("certificate reloaded", "cert", s.cfg.CertFile)
				}
			}
		}
	}
}

// issuerSHA256 is the SHA-256 of the DER of the CA certificate that signed
// the client's certificate: the second of its verified chain, which a
// resumed session carries too; without one (a chain Go did not keep), the
// certificate is verified again against the current CA pool. nil when it
// cannot be told (no client CA, or a certificate that no longer verifies:
// VerifyConnection refused that handshake already).
func (s *TLS) issuerSHA256(st tls.ConnectionState) []byte {
	chains := st.VerifiedChains
	if len(chains) == 0 && len(st.PeerCertificates) > 0 && s.cfg.ClientCAFile != "" {
		opts := x509.VerifyOptions{Roots: s.pool.Load(), Intermediates: x509.NewCertPool(),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		for _, c := range st.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		chains, _ = st.PeerCertificates[0].Verify(opts)
	}
	if len(chains) == 0 || len(chains[0]) < 2 {
		return nil
	}
	sum := sha256.Sum256(chains[0][1].Raw)
	return sum[:]
}
