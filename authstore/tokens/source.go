package tokens

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Timing of the key sources.
const (
	// fetchTimeout bounds one fetch of a JWKS URL, the body included.
	fetchTimeout = 10 * time.Second
	// unknownKIDEvery: a token with a kid the keys do not hold makes them
	// be read again at once, at most this often.
	unknownKIDEvery = 30 * time.Second
	// unknownKIDWait is how long such a token waits for that read before
	// it is refused: a CONNECT never waits on the network for longer.
	unknownKIDWait = 500 * time.Millisecond
	// failedRetry: after a failed read the keys are read again this soon
	// (then at the refresh interval).
	failedRetry = 15 * time.Second
)

// source keeps one issuer's keys: read from its JWKS file or URL at start,
// every refresh, and at once for an unknown kid (at most every
// unknownKIDEvery). A read that fails keeps the keys of the last one that
// did not, and is logged and counted; no CONNECT ever waits on it past
// unknownKIDWait.
type source struct {
	issuer  string
	url     string // one of url and file
	file    string
	refresh time.Duration
	client  *http.Client
	caFile  string
	caStamp string // the CA file's stamp when it was read
	ctx     context.Context
	cancel  context.CancelFunc // ends ctx: the source is no longer listed
	log     *slog.Logger

	keys     atomic.Pointer[keySet] // nil until a read succeeded
	failures atomic.Int64           // failed reads
	lastErr  atomic.Pointer[string] // the last failure's message, "" after a success

	mu       sync.Mutex
	inflight chan struct{} // closed when the read in progress ends; nil when none
	lastKID  time.Time     // when an unknown kid last started a read
}

// newSource makes the key source of an issuer with a JWKS (nil without
// one: an HMAC-only issuer).
func newSource(ctx context.Context, c IssuerConfig, log *slog.Logger) (*source, error) {
	if c.JWKSURL == "" && c.JWKSFile == "" {
		return nil, nil
	}
	s := &source{issuer: c.Issuer, url: c.JWKSURL, file: c.JWKSFile, refresh: c.Refresh, ctx: ctx, log: log}
	if c.JWKSURL != "" {
		s.caFile, s.caStamp = c.CAFile, fileStamp(c.CAFile)
		client, err := httpClient(c.CAFile)
		if err != nil {
			return nil, err
		}
		s.client = client
	}
	empty := ""
	s.lastErr.Store(&empty)
	return s, nil
}

// sameAs reports whether s reads the keys c names the same way (a reload
// keeps such a source, its keys and its loop).
func (s *source) sameAs(c IssuerConfig) bool {
	if s == nil || s.url != c.JWKSURL || s.file != c.JWKSFile || s.refresh != c.Refresh || s.caFile != c.CAFile {
		return false
	}
	return s.caFile == "" || s.caStamp == fileStamp(c.CAFile)
}

// httpClient is the client of a JWKS URL: HTTPS verified with the system
// roots or the CA file, bounded in time; redirects only to https.
func httpClient(caFile string) (*http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := readBounded(caFile, 1<<20)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate found", caFile)
		}
		tc.RootCAs = pool
	}
	t := &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: tc, TLSHandshakeTimeout: fetchTimeout,
		ResponseHeaderTimeout: fetchTimeout, MaxResponseHeaderBytes: 64 << 10, IdleConnTimeout: time.Minute}
	c := &http.Client{Transport: t, Timeout: fetchTimeout, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 3 || req.URL.Scheme != "https" {
			return errors.New("JWKS redirect refused (at most 3, https only)")
		}
		return nil
	}}
	return c, nil
}

// stop ends the source's loop and reads.
func (s *source) stop() {
	if s.cancel != nil {
		s.cancel()
	}
}

// current is the keys held (nil before the first good read).
func (s *source) current() *keySet { return s.keys.Load() }

// loaded reports whether a read ever succeeded.
func (s *source) loaded() bool { return s.keys.Load() != nil }

// run reads the keys now, then every refresh (sooner after a failure)
// until ctx ends.
func (s *source) run(ctx context.Context) {
	for {
		wait := s.refresh
		if err := s.read(ctx); err != nil {
			wait = min(failedRetry, s.refresh)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// read reads the keys once (or waits for the read in progress) and
// returns its error.
func (s *source) read(ctx context.Context) error {
	ch, started := s.start(false)
	if !started {
		select {
		case <-ch:
		case <-ctx.Done():
		}
		return s.err()
	}
	return s.fetch(ctx, ch)
}

// start begins a read unless one is in progress (then it returns that
// one's channel); forKID: for an unknown kid, at most every
// unknownKIDEvery.
func (s *source) start(forKID bool) (ch chan struct{}, started bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight != nil {
		return s.inflight, false
	}
	if forKID {
		if time.Since(s.lastKID) < unknownKIDEvery {
			return nil, false
		}
		s.lastKID = time.Now()
	}
	s.inflight = make(chan struct{})
	return s.inflight, true
}

// fetch reads and parses the keys, stores them on success, and ends the
// read ch stands for.
func (s *source) fetch(ctx context.Context, ch chan struct{}) error {
	raw, err := s.get(ctx)
	var set *keySet
	var skipped []string
	if err == nil {
		set, skipped, err = parseJWKS(raw)
	}
	if err != nil {
		s.failures.Add(1)
		msg := err.Error()
		s.lastErr.Store(&msg)
		s.log.Warn("JWKS not read; keeping the keys held", "issuer", s.issuer, "from", s.where(), "error", msg, "keys_held", s.loaded())
	} else {
		if len(skipped) > 0 {
			s.log.Warn("JWKS keys left out", "issuer", s.issuer, "from", s.where(), "skipped", skipped)
		}
		first := !s.loaded()
		s.keys.Store(set)
		empty := ""
		s.lastErr.Store(&empty)
		if first {
			s.log.Info("JWKS loaded", "issuer", s.issuer, "from", s.where(), "keys", len(set.all))
		}
	}
	s.mu.Lock()
	s.inflight = nil
	s.mu.Unlock()
	close(ch)
	return err
}

// err is the last read's error, nil after a success.
func (s *source) err() error {
	if m := *s.lastErr.Load(); m != "" {
		return errors.New(m)
	}
	return nil
}

// where names the source in logs.
func (s *source) where() string {
	if s.url != "" {
		return s.url
	}
	return s.file
}

// get reads the JWKS's bytes, at most MaxJWKSBytes.
func (s *source) get(ctx context.Context) ([]byte, error) {
	if s.file != "" {
		return readBounded(s.file, MaxJWKSBytes)
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d", s.url, resp.StatusCode)
	}
	if resp.ContentLength > MaxJWKSBytes {
		return nil, fmt.Errorf("GET %s: %d bytes, at most %d", s.url, resp.ContentLength, MaxJWKSBytes)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", s.url, err)
	}
	if len(b) > MaxJWKSBytes {
		return nil, fmt.Errorf("GET %s: more than %d bytes", s.url, MaxJWKSBytes)
	}
	return b, nil
}

// unknownKID is what a token whose kid the keys do not hold does: it asks
// for a read now (at most every unknownKIDEvery, never more than one at a
// time) and waits for it up to unknownKIDWait (or ctx), so that a key the
// issuer has just begun to sign with is found; then it looks again.
func (s *source) unknownKID(ctx context.Context) {
	ch, started := s.start(true)
	if started {
		go func() { _ = s.fetch(s.ctx, ch) }()
	}
	if ch == nil {
		return
	}
	t := time.NewTimer(unknownKIDWait)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-ctx.Done():
	}
}

// fileStamp tells whether a file changed: its size and modification time.
func fileStamp(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return "missing"
	}
	return fmt.Sprintf("%d %d", st.Size(), st.ModTime().UnixNano())
}
