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
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/logsafe"
)

// Options tune a Store. Zero values take the defaults.
type Options struct {
	Prefix  string        // key prefix, default "mqtt:"
	Timeout time.Duration // per Redis lookup, default 500ms
	// CacheSize bounds the remembered successful verifications, default 65536.
	CacheSize int
	// MaxHashes bounds concurrent hash computations, default GOMAXPROCS.
	MaxHashes int
	// MaxHashQueue bounds the verifications waiting for a slot (per
	// class: known addresses, others), default 512 per slot, and
	// MaxHashWait the wait a verification may expect before its turn
	// (from the recent computations' average time), default 2s, never
	// past the CONNECT's deadline. Past either, a verification fails at
	// once with policy.ErrBusy: the device is told "server busy" rather
	// than kept waiting until its CONNECT times out.
	MaxHashQueue int
	MaxHashWait  time.Duration
	// ClientIDsDefault are the client id globs of a user whose hash has no
	// clientids field; nil takes DefaultClientIDs. The empty client id (the
	// broker assigns one, where the protocol version lets it) is allowed
	// under the default.
	ClientIDsDefault []string
	// NoTopicRules: the store reads no topic rules (publish, subscribe,
	// roles); decisions carry none. For AUTHPROXY_ACL=off.
	NoTopicRules bool
	// FailLimitUser and FailLimitIP bound failed attempts per user name
	// and per address (zero: no limit); past them a CONNECT is refused
	// without a hash.
	FailLimitUser, FailLimitIP Limit
	// Schema reads users and topic rules laid out by another product
	// (NewEMQXSchema, NewGoAuthSchema); nil: the native layout.
	Schema Schema
	Logger *slog.Logger
	Now    func() time.Time
}

// DefaultClientIDs binds a device's client id to its username: a user may
// take only the client ids "<username>" and "<username>:...". Since ':' is
// refused in new user names, no user's client ids match another user's
// default ones, so no user can take over another's broker session by its
// client id. (The second wave's "%u-*" let user site1 take site1-gw's
// session: '-' is common in names.)
var DefaultClientIDs = []string{"%u", "%u:*"}

// Store is the Redis-backed policy.Authenticator and the operator's view of users.
// It is safe for concurrent use.
type Store struct {
	rdb     redis.UniversalClient
	prefix  string
	timeout time.Duration
	log     *slog.Logger
	now     func() time.Time

	cacheKey         [32]byte // HMAC key for remembered verifications
	cache            *lru.Cache[[32]byte, struct{}]
	compiled         *lru.Cache[string, *policy.TopicRules] // see compileTopics
	slots            *hashSlots
	hashes           atomic.Int64
	flight           singleflight.Group // one verification per (hash, password) at a time
	dummy            string             // verified for unknown users so they cost like wrong passwords
	clientIDsDefault []string
	noTopics         bool
	failLimitUser    Limit
	failLimitIP      Limit
	local            localCounts  // failed attempts counted in this process
	remembered       atomic.Int64 // verifications served from the remembered ones
	byDefault        atomic.Int64 // CONNECTs refused by the client id default
	byDefaultLogged  atomic.Int64 // unix ns of the last log line about one
	schema           Schema       // nil: the native layout
	schemaDummy      *atomic.Pointer[dummyHash]
}

var _ policy.Authenticator = (*Store)(nil)

// New returns a Store over rdb. It computes one argon2id hash for the
// unknown-user path, so it takes a few tens of milliseconds (with another
// schema, none: the dummy takes the shape of that layout's hashes).
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
	if o.MaxHashQueue <= 0 {
		o.MaxHashQueue = 512 * o.MaxHashes
	}
	if o.MaxHashWait <= 0 {
		o.MaxHashWait = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ClientIDsDefault == nil {
		o.ClientIDsDefault = DefaultClientIDs
	}
	s := &Store{rdb: rdb, prefix: o.Prefix, timeout: o.Timeout, log: o.Logger, now: o.Now,
		slots: newHashSlots(o.MaxHashes, o.MaxHashQueue, o.MaxHashWait), clientIDsDefault: o.ClientIDsDefault, noTopics: o.NoTopicRules,
		failLimitUser: o.FailLimitUser, failLimitIP: o.FailLimitIP, schema: o.Schema}
	if _, err := rand.Read(s.cacheKey[:]); err != nil {
		panic("authstore: no randomness: " + err.Error())
	}
	s.cache, _ = lru.New[[32]byte, struct{}](o.CacheSize)
	s.compiled, _ = lru.New[string, *policy.TopicRules](compiledRulesCacheSize)
	if s.schema != nil {
		s.schemaDummy = newSchemaDummy(s.schema)
	} else {
		s.dummy = HashPassword(rand.Text())
	}
	return s
}

// UserKey is the Redis key of a user's hash.
func (s *Store) UserKey(username string) string { return s.prefix + "user:" + username }

// Authenticate decides req against the user's rules, read fresh with one
// round trip (the user's hash and its roles'). Order: the credential first
// (unknown user, wrong password, a disabled user with a wrong password and
// a user whose other rules cannot be read answer alike, at the same cost),
// then enabled, not_after, certs, cidrs, clientids, and the will's topic
// against the topic rules. A rule that cannot be read is an error wrapping
// policy.ErrMalformedRule once the credential is verified. With
// req.Verified set (a live session decided again) no hash is computed.
func (s *Store) Authenticate(ctx context.Context, req policy.Request) (policy.Decision, error) {
	rec, err := s.lookup(ctx, req)
	if err != nil {
		return policy.Decision{}, err
	}
	if d, refused := s.refuseEarly(rec, req); refused {
		return d, nil
	}
	// An explanation leaves nothing behind: no count, no known address.
	sideEffects := req.Verified == nil && req.Explain == nil
	if len(rec.fields) == 0 {
		req.Explain.Add("user", policy.Fail, "no user "+logsafe.String(req.Username)+s.whereUser(rec))
		if req.Verified != nil {
			return policy.Decision{Outcome: policy.BadCredentials, Reason: "user no longer exists"}, nil
		}
		// Unknown user (or no username): cost the same as a wrong password.
		d, err := s.denyAfterDummy(ctx, req.Password, "unknown user")
		if err == nil && sideEffects {
			s.countFailure(ctx, req)
		}
		return d, err
	}
	req.Explain.Add("user", policy.Pass, "the user exists"+s.whereUser(rec))
	r, ruleErr := parseRules(rec.fields)
	d, err := s.checkCredential(ctx, req, r, rec.knownAt > s.now().Add(-knownFor).Unix())
	if err != nil || d.Outcome != "" {
		if d.Outcome == policy.BadCredentials && sideEffects {
			s.countFailure(ctx, req)
		}
		return d, err
	}
	if sideEffects {
		s.noteSuccess(ctx, req, rec)
	}
	switch {
	case ruleErr != nil || s.noTopics:
	case rec.schema != nil:
		d.Topics, ruleErr = schemaTopics(rec.schema, req.Explain)
	default:
		d.Topics, d.Roles, ruleErr = s.compileTopics(rec, req)
	}
	if ruleErr != nil {
		req.Explain.Add("rules readable", policy.Fail, ruleErr.Error())
		s.log.Warn("malformed rule refuses the user", "username", logsafe.String(req.Username), "error", ruleErr)
		return policy.Decision{}, fmt.Errorf("authstore: user %s: %w", logsafe.String(req.Username), ruleErr)
	}
	req.Explain.Add("rules readable", policy.Pass, "")
	d.NotAfter = r.notAfter
	d.Outcome, d.Reason = s.judge(r, req, d.Topics, rec.schema == nil)
	return d, nil
}

// judge applies the rules after the credential, in order: the outcome
// is the first that fails. With an explanation every rule is reported,
// those after the first failure included. Another schema's layout has no
// enabled, not_after, certs or cidrs: they do not apply (native false).
func (s *Store) judge(r rules, req policy.Request, topics *policy.TopicRules, native bool) (policy.Outcome, string) {
	type check struct {
		name    string
		applies bool
		ok      func() bool
		outcome policy.Outcome
		detail  func(ok bool) string
	}
	now := s.now()
	checks := []check{
		{"enabled", native, func() bool { return r.enabled }, policy.Disabled,
			func(ok bool) string { return map[bool]string{true: "enabled", false: "disabled"}[ok] }},
		{"not_after", !r.notAfter.IsZero(), func() bool { return now.Before(r.notAfter) }, policy.Expired,
			func(ok bool) string {
				return map[bool]string{true: "valid until ", false: "expired at "}[ok] + r.notAfter.UTC().Format(time.RFC3339)
			}},
		{"certs", r.hasCerts, func() bool { return certMatches(r.certs, req.CertSHA256, req.CertCN, req.CertSHA256 != nil) }, policy.CertNotAllowed,
			func(ok bool) string {
				switch {
				case ok:
					return "the client certificate matches the user's certs"
				case req.CertSHA256 == nil:
					return "no client certificate; the user's certs require one"
				}
				return "client certificate does not match the user's certs"
			}},
		{"cidrs", r.hasCIDRs, func() bool { return addrAllowed(r.cidrs, req.RemoteAddr) }, policy.AddressNotAllowed,
			func(ok bool) string {
				return fmt.Sprintf("source address %s is %sin the user's cidrs", req.RemoteAddr, map[bool]string{true: "", false: "not "}[ok])
			}},
		{"clientids", true, func() bool { return s.clientIDAllowed(r, req) }, policy.ClientIDNotAllowed,
			func(ok bool) string { return s.clientIDDetail(r, req, ok) }},
		{"will topic", topics != nil && req.HasWill, func() bool { _, ok := topics.CanPublish(req.WillTopic); return ok }, policy.WillNotAllowed,
			func(ok bool) string {
				return fmt.Sprintf("will topic %s is %sone the user may publish to", logsafe.String(req.WillTopic), map[bool]string{true: "", false: "not "}[ok])
			}},
	}
	outcome, reason := policy.Accepted, "allowed"
	for _, c := range checks {
		if !c.applies {
			detail := ""
			if !native && c.name != "will topic" {
				detail = "not part of the " + s.layout() + " layout"
			}
			req.Explain.Add(c.name, policy.NotApplied, detail)
			continue
		}
		if c.name == "cidrs" && req.Explain != nil && !req.RemoteAddr.IsValid() {
			req.Explain.Add(c.name, policy.NotChecked, "no source address given to explain (--ip)")
			continue
		}
		ok := c.ok()
		if req.Explain != nil {
			req.Explain.Add(c.name, map[bool]string{true: policy.Pass, false: policy.Fail}[ok], c.detail(ok))
		}
		if !ok && outcome == policy.Accepted {
			outcome, reason = c.outcome, c.detail(false)
			if req.Explain == nil {
				break
			}
		}
	}
	if outcome == policy.ClientIDNotAllowed && r.clientIDs == nil && req.Explain == nil && req.Verified == nil {
		s.refusedByDefault(req)
	}
	return outcome, reason
}

// checkCredential authenticates req against the user's password or
// certificate. It returns a decision with an policy.Outcome only when it refuses;
// otherwise d carries the policy.Credential and the caller goes on with the rules.
// A refusal for a wrong password, a missing one, a certificate-only user
// without a matching certificate, a user with nothing to authenticate with
// and a stored hash that cannot be read all cost one (shared) verification,
// like an unknown user.
func (s *Store) checkCredential(ctx context.Context, req policy.Request, r rules, known bool) (policy.Decision, error) {
	var d policy.Decision
	stored := ""
	if r.hasPassword {
		stored = r.password
	}
	d.Credential = s.credential(r.hasPassword, stored)
	if req.Verified != nil {
		// A live session: the credential it was accepted with must still be
		// the stored one; certificates are checked again below.
		if subtle.ConstantTimeCompare(req.Verified[:], d.Credential[:]) != 1 {
			return policy.Decision{Outcome: policy.BadCredentials, Reason: "password changed since the session was accepted"}, nil
		}
		if !r.hasPassword && r.hasCerts && !certMatches(r.certs, req.CertSHA256, req.CertCN, req.CertSHA256 != nil) {
			return policy.Decision{Outcome: policy.BadCredentials, Reason: "client certificate no longer matches the user's certs"}, nil
		}
		if !r.hasPassword && !r.hasCerts {
			return policy.Decision{Outcome: policy.BadCredentials, Reason: "user has neither password nor certs"}, nil
		}
		return d, nil
	}
	switch {
	case r.hasPassword && req.Explain != nil && req.Explain.NoPassword:
		req.Explain.Add("password", policy.NotChecked, "no password given to explain (--password-stdin); the checks below assume it matches")
	case r.hasPassword:
		d, err := s.checkStoredPassword(ctx, req, stored, known)
		if err != nil || d.Outcome != "" {
			req.Explain.Add("password", policy.Fail, d.Reason)
			return d, err
		}
		req.Explain.Add("password", policy.Pass, "the password matches")
		d.Credential = s.credential(true, stored)
		return d, nil
	case r.hasCerts:
		// Certificate-only user: the certificate is the credential.
		if !certMatches(r.certs, req.CertSHA256, req.CertCN, req.CertSHA256 != nil) {
			req.Explain.Add("certificate", policy.Fail, "certificate-only user without a matching client certificate")
			return s.denyAfterDummy(ctx, req.Password, "certificate-only user without a matching client certificate")
		}
		req.Explain.Add("certificate", policy.Pass, "the client certificate is the credential and matches")
	default:
		// Neither password nor certs: nothing to authenticate with.
		req.Explain.Add("credential", policy.Fail, "user has neither password nor certs")
		s.log.Warn("user has neither password nor certs: refused", "username", logsafe.String(req.Username))
		return s.denyAfterDummy(ctx, req.Password, "user has neither password nor certs")
	}
	return d, nil
}

// checkStoredPassword verifies the CONNECT's password against the user's
// stored hash; a refusal has an Outcome.
func (s *Store) checkStoredPassword(ctx context.Context, req policy.Request, stored string, known bool) (policy.Decision, error) {
	if !req.HasPassword {
		return s.denyAfterDummy(ctx, "", "no password given")
	}
	err := CheckHashFormat(stored)
	if err == nil && s.schema == nil && strings.HasPrefix(stored, emqxHashPrefix) {
		err = fmt.Errorf("%w: unknown format (want $argon2id$, $2a$/$2b$/$2y$ or PBKDF2$)", ErrMalformedHash)
	}
	if err != nil {
		s.log.Warn("malformed password hash refuses the user", "username", logsafe.String(req.Username), "error", err)
		return s.denyAfterDummy(ctx, req.Password, "stored password hash cannot be read: "+err.Error())
	}
	s.adoptShape(stored)
	ok, remembered, err := s.checkPassword(ctx, stored, req.Password, known)
	if err != nil {
		return policy.Decision{}, err
	}
	if !ok {
		return policy.Decision{Outcome: policy.BadCredentials, Reason: "password does not match"}, nil
	}
	return policy.Decision{Remembered: remembered}, nil
}

// credential is the MAC a session keeps of the stored password field it
// was accepted with.
func (s *Store) credential(hasPassword bool, stored string) policy.Credential {
	mac := hmac.New(sha256.New, s.cacheKey[:])
	if hasPassword {
		mac.Write([]byte("password\x00"))
		mac.Write([]byte(stored))
	} else {
		mac.Write([]byte("no password\x00"))
	}
	var c policy.Credential
	mac.Sum(c[:0])
	return c
}

// clientIDGlobs are the globs a user's client id must match: its clientids
// field, or the store's default when the field is absent.
func (s *Store) clientIDGlobs(r rules) []string {
	if r.clientIDs != nil {
		return r.clientIDs
	}
	return s.clientIDsDefault
}

func (s *Store) clientIDAllowed(r rules, req policy.Request) bool {
	if r.clientIDs == nil && req.ClientID == "" {
		// The broker assigns the id: no session of anyone else to take
		// (the codec has refused an empty id where the version forbids it).
		return true
	}
	return clientIDAllowed(s.clientIDGlobs(r), req.ClientID, req.Username)
}

// clientIDDetail says why a client id was allowed or refused, naming the
// default (CLIENTIDS_DEFAULT) when the user has no clientids field of
// its own, since a fleet that relied on an older default sees its
// refusals there first.
func (s *Store) clientIDDetail(r rules, req policy.Request, ok bool) string {
	globs := logsafe.String(strings.ReplaceAll(strings.Join(s.clientIDGlobs(r), " "), "%u", req.Username))
	verb := map[bool]string{true: "matches", false: "does not match"}[ok]
	if r.clientIDs != nil {
		return fmt.Sprintf("client id %s %s the user's clientids %s", logsafe.String(req.ClientID), verb, globs)
	}
	return fmt.Sprintf("client id %s %s the default client ids %s (CLIENTIDS_DEFAULT %s; the user has no clientids field)",
		logsafe.String(req.ClientID), verb, globs, strings.Join(s.clientIDGlobs(r), " "))
}

// refusedByDefault counts a CONNECT the client id default refused and
// logs it, at most one line every 10 s (with the count since the last),
// so that a fleet using another client id form sees it coming.
func (s *Store) refusedByDefault(req policy.Request) {
	n := s.byDefault.Add(1)
	now := s.now().UnixNano()
	last := s.byDefaultLogged.Load()
	if now-last < int64(10*time.Second) || !s.byDefaultLogged.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn("client id refused by CLIENTIDS_DEFAULT: give the user a clientids field, or see README on the default",
		"username", logsafe.String(req.Username), "client_id", logsafe.String(req.ClientID),
		"default", strings.Join(s.clientIDsDefault, " "), "refused_so_far", n)
}

// DefaultClientIDRefusals is the number of CONNECTs refused because their
// client id did not match CLIENTIDS_DEFAULT (users without clientids).
func (s *Store) DefaultClientIDRefusals() int64 { return s.byDefault.Load() }

// denyAfterDummy answers "bad credentials" after verifying against the dummy
// hash, through the same shared verification as a real user's password, so
// that the answer costs what a wrong password costs, alone or in a crowd.
func (s *Store) denyAfterDummy(ctx context.Context, password, reason string) (policy.Decision, error) {
	if _, _, err := s.checkPassword(ctx, s.dummyFor(), password, false); errors.Is(err, policy.ErrBusy) {
		return policy.Decision{}, err
	}
	return policy.Decision{Outcome: policy.BadCredentials, Reason: reason}, nil
}

// checkPassword verifies password against stored, remembering a success
// under HMAC(key, stored || 0 || password) so that a changed hash or
// password never matches a remembered entry. Failures are never remembered.
func (s *Store) checkPassword(ctx context.Context, stored, password string, priority bool) (ok, remembered bool, err error) {
	mac := hmac.New(sha256.New, s.cacheKey[:])
	mac.Write([]byte(stored))
	mac.Write([]byte{0})
	mac.Write([]byte(password))
	var key [32]byte
	mac.Sum(key[:0])
	if s.cache.Contains(key) {
		s.remembered.Add(1)
		return true, true, nil
	}
	// Concurrent CONNECTs with the same hash and password (a fleet
	// reconnecting at once) share one verification.
	v, err, _ := s.flight.Do(string(key[:]), func() (any, error) {
		ok, err := s.verify(ctx, stored, password, priority)
		if ok && err == nil {
			s.cache.Add(key, struct{}{})
		}
		return ok, err
	})
	ok, _ = v.(bool)
	return ok, false, err
}

// verify runs one hash computation under the concurrency bound.
func (s *Store) verify(ctx context.Context, stored, password string, priority bool) (bool, error) {
	if err := s.slots.acquire(ctx, priority); err != nil {
		return false, err
	}
	defer s.slots.release()
	s.hashes.Add(1)
	start := time.Now()
	ok, err := verifyPassword(stored, password, false)
	s.slots.took(time.Since(start))
	return ok, err
}

// HashCount is the number of password hash computations so far.
func (s *Store) HashCount() int64 { return s.hashes.Load() }

// RememberedCount is the number of password verifications served from the
// remembered ones, without a hash.
func (s *Store) RememberedCount() int64 { return s.remembered.Load() }

// Ping checks that Redis answers within the store timeout.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("%w: %w", policy.ErrUnavailable, err)
	}
	return nil
}
