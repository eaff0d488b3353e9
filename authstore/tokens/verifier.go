package tokens

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	lru "github.com/hashicorp/golang-lru/v2"
)

// Options configure a Verifier. Zero values take the defaults.
type Options struct {
	// File is the issuers file (AUTHPROXY_JWT_ISSUERS_FILE); "": no
	// issuer (device tokens only).
	File string
	// Leeway is how far nbf, iat and exp may be off (DefaultLeeway; a
	// negative value is none).
	Leeway time.Duration
	// DeviceAudience is the aud of device-signed tokens
	// (AUTHPROXY_JWT_DEVICE_AUDIENCE); "": device tokens are refused.
	DeviceAudience string
	// WatchInterval is how often the issuers file is checked for changes
	// (default 5s; negative: never, Reload still works).
	WatchInterval time.Duration
	// Lazy: an issuer's keys are read at its first token, not at start,
	// and the file is not watched (a command, not the proxy).
	Lazy   bool
	Logger *slog.Logger
	Now    func() time.Time
}

// issuer is one listed issuer, ready to verify.
type issuer struct {
	cfg    IssuerConfig
	src    *source // nil: HMAC only
	hmac   []byte  // nil: no HS256
	parser *jwt.Parser
}

// issuers is the issuers file as loaded. Read-only once made.
type issuers struct {
	byIss map[string]*issuer
	list  []*issuer
}

// Verifier verifies tokens: those of the listed issuers and those devices
// sign with their user's jwt_keys. Make it with New, stop it with Close.
// It is safe for concurrent use.
type Verifier struct {
	o       Options
	log     *slog.Logger
	set     atomic.Pointer[issuers]
	devKeys *lru.Cache[[32]byte, *keySet] // parsed jwt_keys, by the field's SHA-256
	devErrs *lru.Cache[[32]byte, string]  // jwt_keys that do not parse, and why
	refused sync.Map                      // cause -> *atomic.Int64

	ctx    context.Context // ends the sources' loops
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex // one reload at a time
	stamp  string     // the issuers file's, at the last load
}

// devKeysCached bounds the users' parsed jwt_keys kept.
const devKeysCached = 4096

// New reads the issuers file (when there is one), starts reading each
// issuer's keys in the background and watches the file. It returns the
// file's errors; it never waits for a key.
func New(o Options) (*Verifier, error) {
	if o.Leeway == 0 {
		o.Leeway = DefaultLeeway
	}
	o.Leeway = max(o.Leeway, 0)
	if o.WatchInterval == 0 {
		o.WatchInterval = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	v := &Verifier{o: o, log: o.Logger}
	v.devKeys, _ = lru.New[[32]byte, *keySet](devKeysCached)
	v.devErrs, _ = lru.New[[32]byte, string](devKeysCached)
	v.ctx, v.cancel = context.WithCancel(context.Background())
	v.set.Store(&issuers{byIss: map[string]*issuer{}})
	if o.File != "" {
		if err := v.Reload(); err != nil {
			v.Close()
			return nil, err
		}
		if o.WatchInterval > 0 && !o.Lazy {
			v.wg.Go(v.watch)
		}
	}
	return v, nil
}

// Close stops the background reads and the file watch.
func (v *Verifier) Close() {
	v.cancel()
	v.wg.Wait()
}

// Reload reads the issuers file again (SIGHUP, or a change seen): the
// issuers it lists replace the ones held; an issuer whose keys are read
// the same way keeps them. On an error nothing changes.
func (v *Verifier) Reload() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	stamp := fileStamp(v.o.File)
	f, err := ReadFile(v.o.File)
	if err != nil {
		return err
	}
	old := v.set.Load()
	next := &issuers{byIss: map[string]*issuer{}}
	var started []*source
	for _, c := range f.Issuers {
		is, fresh, err := v.makeIssuer(c, old.byIss[c.Issuer])
		if err != nil {
			return fmt.Errorf("issuers file: issuer %q: %w", c.Issuer, err)
		}
		if fresh != nil {
			started = append(started, fresh)
		}
		next.byIss[c.Issuer], next.list = is, append(next.list, is)
	}
	for _, s := range started {
		if !v.o.Lazy {
			v.wg.Go(func() { s.run(s.ctx) })
		}
	}
	v.set.Store(next)
	v.stopUnused(old, next)
	v.stamp = stamp
	v.log.Info("JWT issuers loaded", "file", v.o.File, "issuers", v.Issuers())
	return nil
}

// makeIssuer makes an issuer from its configuration, keeping prev's key
// source when it reads the same keys; fresh is a new source to start.
func (v *Verifier) makeIssuer(c IssuerConfig, prev *issuer) (is *issuer, fresh *source, err error) {
	is = &issuer{cfg: c}
	if c.HMACSecretFile != "" {
		if is.hmac, err = readSecret(c.HMACSecretFile); err != nil {
			return nil, nil, err
		}
	}
	if prev != nil && prev.src != nil && prev.src.sameAs(c) {
		is.src = prev.src
	} else {
		ctx, cancel := context.WithCancel(v.ctx)
		if is.src, err = newSource(ctx, c, v.log); err != nil || is.src == nil {
			cancel()
			return is.withParser(c, v.o), nil, err
		}
		is.src.cancel = cancel
		fresh = is.src
	}
	return is.withParser(c, v.o), fresh, nil
}

// withParser gives the issuer its parser: its algorithms, audience and
// issuer, the leeway, exp required.
func (is *issuer) withParser(c IssuerConfig, o Options) *issuer {
	methods := slices.Clone(asymmetricAlgs)
	if is.hmac != nil {
		methods = append(methods, algHS256)
	}
	is.parser = jwt.NewParser(jwt.WithValidMethods(methods), jwt.WithLeeway(o.Leeway), jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(), jwt.WithAudience(c.Audience), jwt.WithIssuer(c.Issuer), jwt.WithStrictDecoding(), jwt.WithTimeFunc(o.Now))
	return is
}

// stopUnused stops the sources old held that next does not.
func (v *Verifier) stopUnused(old, next *issuers) {
	keep := map[*source]bool{}
	for _, is := range next.list {
		keep[is.src] = true
	}
	for _, is := range old.list {
		if is.src != nil && !keep[is.src] {
			is.src.stop()
		}
	}
}

// watch reloads the issuers file when it changes, until Close.
func (v *Verifier) watch() {
	t := time.NewTicker(v.o.WatchInterval)
	defer t.Stop()
	for {
		select {
		case <-v.ctx.Done():
			return
		case <-t.C:
		}
		v.mu.Lock()
		changed := fileStamp(v.o.File) != v.stamp
		v.mu.Unlock()
		if changed {
			if err := v.Reload(); err != nil {
				v.log.Error("issuers file changed but did not load; keeping the issuers held", "file", v.o.File, "error", err)
				v.mu.Lock()
				v.stamp = fileStamp(v.o.File) // said once per change
				v.mu.Unlock()
			}
		}
	}
}

// Issuers names the listed issuers, in the file's order.
func (v *Verifier) Issuers() []string {
	var out []string
	for _, is := range v.set.Load().list {
		out = append(out, is.cfg.Issuer)
	}
	return out
}

// Listed reports whether iss is a listed issuer.
func (v *Verifier) Listed(iss string) bool { return v.set.Load().byIss[iss] != nil }

// Ready is nil once every listed issuer with a JWKS has had its keys read
// once; else it names those whose keys never loaded, and why.
func (v *Verifier) Ready() error {
	var waiting []string
	for _, is := range v.set.Load().list {
		if is.src != nil && !is.src.loaded() {
			why := "not read yet"
			if err := is.src.err(); err != nil {
				why = err.Error()
			}
			waiting = append(waiting, fmt.Sprintf("%s (%s)", is.cfg.Issuer, why))
		}
	}
	if len(waiting) > 0 {
		return errors.New("JWKS never loaded: " + strings.Join(waiting, "; "))
	}
	return nil
}

// count counts a refusal under its cause.
func (v *Verifier) count(cause string) {
	c, _ := v.refused.LoadOrStore(cause, new(atomic.Int64))
	c.(*atomic.Int64).Add(1)
}

// Refused is the number of tokens refused for cause.
func (v *Verifier) Refused(cause string) int64 {
	if c, ok := v.refused.Load(cause); ok {
		return c.(*atomic.Int64).Load()
	}
	return 0
}

// Count counts a refusal made outside the Verifier (a revoked token, a
// user name that is not the token's).
func (v *Verifier) Count(cause string) { v.count(cause) }

// IssuerState is one issuer's keys as the metrics and the status say.
type IssuerState struct {
	Issuer        string
	Keys          int   // keys held; 0 before the first read
	FetchFailures int64 // reads of the JWKS that failed
	LastError     string
}

// States are the listed issuers' key states.
func (v *Verifier) States() []IssuerState {
	var out []IssuerState
	for _, is := range v.set.Load().list {
		st := IssuerState{Issuer: is.cfg.Issuer}
		if is.src != nil {
			if ks := is.src.current(); ks != nil {
				st.Keys = len(ks.all)
			}
			st.FetchFailures = is.src.failures.Load()
			st.LastError = *is.src.lastErr.Load()
		}
		out = append(out, st)
	}
	return out
}

// deviceKeys parses a user's jwt_keys, kept by the field's SHA-256.
func (v *Verifier) deviceKeys(field string) (*keySet, error) {
	sum := sha256.Sum256([]byte(field))
	if ks, ok := v.devKeys.Get(sum); ok {
		return ks, nil
	}
	if msg, ok := v.devErrs.Get(sum); ok {
		return nil, errors.New(msg)
	}
	ks, _, err := parseJWKS([]byte(field))
	if err != nil {
		v.devErrs.Add(sum, err.Error())
		return nil, err
	}
	v.devKeys.Add(sum, ks)
	return ks, nil
}
