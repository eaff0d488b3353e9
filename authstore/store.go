// Package authstore decides, from a user's rules in Redis, whether an MQTT
// CONNECT may pass. Every decision reads the rules fresh with one Redis round
// trip; nothing about an earlier connection or TLS session is consulted. The
// only thing remembered is a successful password verification, keyed by the
// stored hash and the presented password together, so that any change of
// either takes effect on the next CONNECT.
package authstore

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// Authenticator is the port the proxy uses: a denial is a Decision, an
// infrastructure failure (store down, slow, malformed rule) is an error, and
// the caller must refuse the connection on either.
type Authenticator interface {
	Authenticate(ctx context.Context, req Request) (Decision, error)
}

// Request is what a CONNECT presents.
type Request struct {
	Username    string
	HasPassword bool   // the CONNECT's password flag
	Password    string // never logged
	ClientID    string
	Protocol    byte       // packets.V31, V311 or V5
	RemoteAddr  netip.Addr // source address of the TCP connection
	// CertSHA256 is the SHA-256 of the client certificate's DER, when the
	// client presented one that verified; CertCN its subject common name.
	CertSHA256 []byte
	CertCN     string
}

// Outcome is a decision's result; it doubles as a metric label.
type Outcome string

// Outcomes. Every one but Accepted denies.
const (
	Accepted           Outcome = "accepted"
	BadCredentials     Outcome = "bad_credentials"      // unknown user, wrong password, no matching cert for a cert-only user
	Disabled           Outcome = "disabled"             // enabled=false
	Expired            Outcome = "expired"              // not_after passed
	CertNotAllowed     Outcome = "cert_not_allowed"     // certs set, none matches
	AddressNotAllowed  Outcome = "address_not_allowed"  // cidrs set, none contains the source
	ClientIDNotAllowed Outcome = "clientid_not_allowed" // clientids set, none matches
)

// Decision is the answer to a Request.
type Decision struct {
	Outcome Outcome
	// Remembered: the password verification was served from the cache.
	Remembered bool
	// NotAfter is the user's not_after, zero when there is none: a live
	// connection should be re-decided at that moment.
	NotAfter time.Time
}

// Allowed reports whether the CONNECT may go on to the broker.
func (d Decision) Allowed() bool { return d.Outcome == Accepted }

// Code is the MQTT 5 reason code for the decision; packets.ReasonCode.V3
// gives the 3.1/3.1.1 return code.
func (d Decision) Code() packets.ReasonCode {
	switch d.Outcome {
	case Accepted:
		return packets.Success
	case BadCredentials:
		return packets.BadUserNameOrPassword
	case ClientIDNotAllowed:
		return packets.ClientIdentifierNotValid
	default:
		return packets.NotAuthorized
	}
}

// Errors. Test with errors.Is; all of them mean "server unavailable".
var (
	// ErrUnavailable: Redis failed or did not answer within the timeout.
	ErrUnavailable = errors.New("authstore: rule store unavailable")
	// ErrBusy: no slot to verify a password before the context ended.
	ErrBusy = errors.New("authstore: too many password verifications in progress")
)

// Options tune a Store. Zero values take the defaults.
type Options struct {
	Prefix  string        // key prefix, default "mqtt:"
	Timeout time.Duration // per Redis lookup, default 500ms
	// CacheSize bounds the remembered successful verifications, default 65536.
	CacheSize int
	// MaxHashes bounds concurrent hash computations, default GOMAXPROCS.
	MaxHashes int
	Logger    *slog.Logger
	Now       func() time.Time
}

// Store is the Redis-backed Authenticator and the operator's view of users.
// It is safe for concurrent use.
type Store struct {
	rdb     redis.UniversalClient
	prefix  string
	timeout time.Duration
	log     *slog.Logger
	now     func() time.Time

	cacheKey [32]byte // HMAC key for remembered verifications
	cache    *lru.Cache[[32]byte, struct{}]
	hashSem  chan struct{}
	hashes   atomic.Int64
	flight   singleflight.Group // one verification per (hash, password) at a time
	dummy    string             // verified for unknown users so they cost like wrong passwords
}

var _ Authenticator = (*Store)(nil)

// New returns a Store over rdb. It computes one argon2id hash for the
// unknown-user path, so it takes a few tens of milliseconds.
func New(rdb redis.UniversalClient, o Options) *Store {
	if o.Prefix == "" {
		o.Prefix = "mqtt:"
	}
	if o.Timeout <= 0 {
		o.Timeout = 500 * time.Millisecond
	}
	if o.CacheSize <= 0 {
		o.CacheSize = 65536
	}
	if o.MaxHashes <= 0 {
		o.MaxHashes = runtime.GOMAXPROCS(0)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Store{rdb: rdb, prefix: o.Prefix, timeout: o.Timeout, log: o.Logger, now: o.Now,
		hashSem: make(chan struct{}, o.MaxHashes)}
	if _, err := rand.Read(s.cacheKey[:]); err != nil {
		panic("authstore: no randomness: " + err.Error())
	}
	s.cache, _ = lru.New[[32]byte, struct{}](o.CacheSize)
	s.dummy = HashPassword(rand.Text())
	return s
}

// Prefix is the key prefix of every key the store reads and writes.
func (s *Store) Prefix() string { return s.prefix }

// UserKey is the Redis key of a user's hash.
func (s *Store) UserKey(username string) string { return s.prefix + "user:" + username }

// Authenticate decides req against the user's rules, read fresh with one
// HGETALL. Order: the credential first (unknown user, wrong password and a
// disabled user with a wrong password answer alike), then enabled,
// not_after, certs, cidrs, clientids.
func (s *Store) Authenticate(ctx context.Context, req Request) (Decision, error) {
	fields, err := s.lookup(ctx, req.Username)
	if err != nil {
		return Decision{}, err
	}
	if len(fields) == 0 {
		// Unknown user (or no username): cost the same as a wrong password.
		return s.denyAfterDummy(ctx, req.Password)
	}
	r, err := parseRules(fields)
	if err != nil {
		s.log.Warn("malformed rule denies the user", "username", req.Username, "error", err)
		return Decision{}, fmt.Errorf("authstore: user %q: %w", req.Username, err)
	}

	d := Decision{NotAfter: r.notAfter}
	switch {
	case r.hasPassword:
		if !req.HasPassword {
			return s.denyAfterDummy(ctx, "")
		}
		ok, remembered, err := s.checkPassword(ctx, r.password, req.Password)
		if err != nil {
			if errors.Is(err, ErrMalformedHash) {
				s.log.Warn("malformed password hash denies the user", "username", req.Username, "error", err)
				return Decision{}, fmt.Errorf("authstore: user %q: %w: %w", req.Username, ErrMalformedRule, err)
			}
			return Decision{}, err
		}
		if !ok {
			return Decision{Outcome: BadCredentials}, nil
		}
		d.Remembered = remembered
	case r.hasCerts:
		// Certificate-only user: the certificate is the credential.
		if !certMatches(r.certs, req.CertSHA256, req.CertCN, req.CertSHA256 != nil) {
			return Decision{Outcome: BadCredentials}, nil
		}
	default:
		// Neither password nor certs: nothing to authenticate with.
		s.log.Warn("user has neither password nor certs: denied", "username", req.Username)
		return Decision{Outcome: BadCredentials}, nil
	}

	switch {
	case !r.enabled:
		d.Outcome = Disabled
	case !r.notAfter.IsZero() && !s.now().Before(r.notAfter):
		d.Outcome = Expired
	case r.hasCerts && !certMatches(r.certs, req.CertSHA256, req.CertCN, req.CertSHA256 != nil):
		d.Outcome = CertNotAllowed
	case r.hasCIDRs && !addrAllowed(r.cidrs, req.RemoteAddr):
		d.Outcome = AddressNotAllowed
	case r.clientIDs != nil && !clientIDAllowed(r.clientIDs, req.ClientID, req.Username):
		d.Outcome = ClientIDNotAllowed
	default:
		d.Outcome = Accepted
	}
	return d, nil
}

// denyAfterDummy answers "bad credentials" after verifying against the dummy
// hash, so that the answer costs what a wrong password costs.
func (s *Store) denyAfterDummy(ctx context.Context, password string) (Decision, error) {
	if _, err := s.verify(ctx, s.dummy, password); errors.Is(err, ErrBusy) {
		return Decision{}, err
	}
	return Decision{Outcome: BadCredentials}, nil
}

// lookup reads a user's hash with one round trip under the store timeout.
func (s *Store) lookup(ctx context.Context, username string) (map[string]string, error) {
	if username == "" {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	fields, err := s.rdb.HGetAll(ctx, s.UserKey(username)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return fields, nil
}

// checkPassword verifies password against stored, remembering a success
// under HMAC(key, stored || 0 || password) so that a changed hash or
// password never matches a remembered entry. Failures are never remembered.
func (s *Store) checkPassword(ctx context.Context, stored, password string) (ok, remembered bool, err error) {
	mac := hmac.New(sha256.New, s.cacheKey[:])
	mac.Write([]byte(stored))
	mac.Write([]byte{0})
	mac.Write([]byte(password))
	var key [32]byte
	mac.Sum(key[:0])
	if s.cache.Contains(key) {
		return true, true, nil
	}
	// Concurrent CONNECTs with the same hash and password (a fleet
	// reconnecting at once) share one verification.
	v, err, _ := s.flight.Do(string(key[:]), func() (any, error) {
		ok, err := s.verify(ctx, stored, password)
		if ok && err == nil {
			s.cache.Add(key, struct{}{})
		}
		return ok, err
	})
	ok, _ = v.(bool)
	return ok, false, err
}

// verify runs one hash computation under the concurrency bound.
func (s *Store) verify(ctx context.Context, stored, password string) (bool, error) {
	select {
	case s.hashSem <- struct{}{}:
	case <-ctx.Done():
		return false, fmt.Errorf("%w: %w", ErrBusy, ctx.Err())
	}
	defer func() { <-s.hashSem }()
	s.hashes.Add(1)
	return verifyPassword(stored, password, false)
}

// HashCount is the number of password hash computations so far.
func (s *Store) HashCount() int64 { return s.hashes.Load() }

// Ping checks that Redis answers within the store timeout.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}
