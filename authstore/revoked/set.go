// Package revoked keeps the revoked credentials: tokens (by jti, or every
// token of a subject) and client certificates (by serial, of any CA or of
// one), in the Redis hash mqtt:revoked (see redisconn.RevokedKey), each
// until a time or for ever. Every replica holds the whole set in memory,
// fed by the change feed, so that a handshake or a CONNECT never costs a
// Redis round trip for it; expired entries are pruned when it is read.
// The operator's writes (token revoke, cert revoke, crl import) are here
// too: one layout, read and written in one place.
package revoked

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
)

// Field prefixes of mqtt:revoked.
const (
	prefixJTI  = "jti:"
	prefixSub  = "sub:"
	prefixCert = "cert:"
)

// JTIField is the field revoking the token with that jti.
func JTIField(jti string) string { return prefixJTI + jti }

// SubField is the field revoking every token of a subject of an issuer.
func SubField(iss, sub string) string { return prefixSub + iss + " " + sub }

// SerialHex is a certificate serial as the fields hold it: lower-case
// hex without leading zeros.
func SerialHex(serial *big.Int) string { return serial.Text(16) }

// CertField is the field revoking a certificate serial: of any CA when ca
// (the issuing CA certificate's SHA-256) is nil, else of that CA's only.
func CertField(ca []byte, serial *big.Int) string {
	if ca == nil {
		return prefixCert + SerialHex(serial)
	}
	return prefixCert + hex.EncodeToString(ca) + ":" + SerialHex(serial)
}

// entry is a revoked field in memory: its name's hash (fixed size, so
// that a CRL of 100,000 serials costs a few MiB) and until when it holds.
type entry = [16]byte

func keyOf(field string) entry {
	sum := sha256.Sum256([]byte(field))
	return entry(sum[:16])
}

// table is the set as loaded: until (unix seconds; 0 for ever) by field.
type table map[entry]int64

// Set is the revoked credentials held in memory. Load it once at start
// (Loaded reports it), and Refresh it on every change notification; a
// failed refresh keeps what is held. It is safe for concurrent use.
type Set struct {
	rdb  redis.UniversalClient
	keys redisconn.Keys
	log  *slog.Logger
	now  func() time.Time

	held   atomic.Pointer[table]
	loaded atomic.Bool
	asked  atomic.Uint64 // refreshes asked for
	done   atomic.Uint64 // the last ask a finished load covers
	mu     sync.Mutex    // one load at a time
}

// NewSet returns the empty, not yet loaded set of the revoked credentials
// under prefix in rdb.
func NewSet(rdb redis.UniversalClient, prefix string, log *slog.Logger, now func() time.Time) *Set {
	if log == nil {
		log = slog.Default()
	}
	if now == nil {
		now = time.Now
	}
	s := &Set{rdb: rdb, keys: redisconn.NewKeys(prefix), log: log, now: now}
	s.held.Store(&table{})
	return s
}

// Loaded reports whether the set was ever read from Redis: until it is,
// a credential it may name cannot be trusted (fail closed).
func (s *Set) Loaded() bool { return s.loaded.Load() }

// Size is the number of revoked fields held.
func (s *Set) Size() int { return len(*s.held.Load()) }

// Refresh reads the set again, unless a read that began after this call
// already did (a burst of notifications costs one or two reads). On an
// error the set held stays.
func (s *Set) Refresh(ctx context.Context) error {
	ask := s.asked.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done.Load() >= ask {
		return nil
	}
	upTo := s.asked.Load()
	t, err := s.read(ctx)
	if err != nil {
		return err
	}
	s.held.Store(&t)
	s.loaded.Store(true)
	s.done.Store(upTo)
	return nil
}

// EnsureLoaded reads the set unless it was read already: the first read,
// shared by every caller that needs it at once (one read, not one each).
func (s *Set) EnsureLoaded(ctx context.Context) error {
	if s.Loaded() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Loaded() {
		return nil
	}
	t, err := s.read(ctx)
	if err != nil {
		return err
	}
	s.held.Store(&t)
	s.loaded.Store(true)
	return nil
}

// scanCount is how many fields one HSCAN asks for.
const scanCount = 5000

// read reads every field of mqtt:revoked with HSCAN (a large CRL never
// blocks Redis for one long command), and deletes the expired ones.
func (s *Set) read(ctx context.Context) (table, error) {
	key := s.keys.RevokedKey()
	t := table{}
	var expired []string
	now := s.now().Unix()
	var cursor uint64
	for {
		kv, next, err := s.rdb.HScan(ctx, key, cursor, "*", scanCount).Result()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", key, err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			until, ok := parseUntil(kv[i+1])
			if !ok {
				s.log.Warn("revoked entry with a time that does not parse: held for ever", "field", kv[i], "value", kv[i+1])
			}
			if until != 0 && until <= now {
				expired = append(expired, kv[i])
				continue
			}
			t[keyOf(kv[i])] = until
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	if len(expired) > 0 {
		if err := s.rdb.HDel(ctx, key, expired...).Err(); err != nil {
			s.log.Warn("expired revocations not pruned", "error", err)
		}
	}
	return t, nil
}

// parseUntil reads a field's value: "" for ever (0), else an RFC 3339
// time; one that does not parse holds for ever (ok false).
func parseUntil(v string) (int64, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, true
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return 0, false
	}
	return max(t.Unix(), 1), true
}

// holds reports whether field is revoked now, and until when.
func (s *Set) holds(field string) (until int64, ok bool) {
	t := *s.held.Load()
	if len(t) == 0 {
		return 0, false
	}
	until, ok = t[keyOf(field)]
	if ok && until != 0 && until <= s.now().Unix() {
		return 0, false
	}
	return until, ok
}

// reason says that field holds, and until when.
func reason(what string, until int64) string {
	if until == 0 {
		return what + " revoked"
	}
	return what + " revoked until " + time.Unix(until, 0).UTC().Format(time.RFC3339)
}

// Token says why a token is revoked ("" when it is not): its jti, or its
// subject of its issuer.
func (s *Set) Token(iss, sub, jti string) string {
	if jti != "" {
		if until, ok := s.holds(JTIField(jti)); ok {
			return reason("token jti "+jti, until)
		}
	}
	if sub != "" {
		if until, ok := s.holds(SubField(iss, sub)); ok {
			return reason("every token of subject "+sub+" of issuer "+iss, until)
		}
	}
	return ""
}

// Cert says why a certificate is revoked ("" when it is not): its serial
// of any CA, or of its issuing CA (ca, the CA certificate's SHA-256; nil
// when unknown).
func (s *Set) Cert(ca []byte, serial *big.Int) string {
	if serial == nil {
		return ""
	}
	if until, ok := s.holds(CertField(nil, serial)); ok {
		return reason("certificate serial "+SerialHex(serial), until)
	}
	if ca != nil {
		if until, ok := s.holds(CertField(ca, serial)); ok {
			return reason("certificate serial "+SerialHex(serial)+" of CA "+hex.EncodeToString(ca)[:16]+"...", until)
		}
	}
	return ""
}

// ErrNotLoaded: the revoked set was never read, so a credential it may
// name cannot be accepted yet.
var ErrNotLoaded = errors.New("the revoked credentials were never read from Redis")
