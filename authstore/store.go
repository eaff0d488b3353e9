// Package authstore decides, from a user's rules in Redis, whether an MQTT
// CONNECT may pass. Every decision reads the rules fresh with one Redis round
// trip; nothing about an earlier connection or TLS session is consulted. The
// only thing remembered is a successful password verification, keyed by the
// stored hash and the presented password together, so that any change of
// either takes effect on the next CONNECT.
//
// The Store is the decision; it shares its Redis client and key prefix with
// the parts it embeds, each a package of its own: the operator calls
// (operator), the change feed (changefeed), the decision log's reader
// (decisionlog) and the TLS ticket salts (tickets). The rules' native
// layout is read by rules, the password hashes by passwords, other
// products' layouts by schemas, and the client, key names and keyspace
// notifications are redisconn's.
package authstore

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/changefeed"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/decisionlog"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/lastuse"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/passwords"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/revoked"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/schemas"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/tickets"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/tokens"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Options tune a Store. Zero values take the defaults.
type Options struct {
	Prefix  string        // key prefix, default "mqtt:"
	Timeout time.Duration // per Redis lookup, default 500ms
	// Passwords bound the password verifications: the hash computations
	// at once, the verifications waiting for one, the successes
	// remembered (see passwords.Options for the defaults).
	Passwords passwords.Options
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
	// (schemas.NewEMQX, schemas.NewGoAuth); nil: the native layout.
	Schema schemas.Schema
	// Tokens verifies the tokens a CONNECT may carry as its password
	// (issuers, device tokens); nil: none are (a password that looks like
	// a token is a password).
	Tokens *tokens.Verifier
	// CertUsername is CERT_USERNAME: which name of a verified client
	// certificate is the user's ("" or CertUsernameOff: none).
	CertUsername string
	Logger       *slog.Logger
	Now          func() time.Time
}

// withDefaults fills the options left zero.
func (o Options) withDefaults() Options {
	if o.Prefix == "" {
		o.Prefix = redisconn.DefaultPrefix
	}
	if o.Timeout <= 0 {
		o.Timeout = 500 * time.Millisecond
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
	return o
}

// DefaultClientIDs binds a device's client id to its username: a user may
// take only the client ids "<username>" and "<username>:...". Since ':' is
// refused in new user names, no user's client ids match another user's
// default ones, so no user can take over another's broker session by its
// client id. (The second wave's "%u-*" let user site1 take site1-gw's
// session: '-' is common in names.)
var DefaultClientIDs = []string{"%u", "%u:*"}

// Store is the Redis-backed policy.Authenticator, with the operator's
// view of users, roles and bans (operator.Editor), the change feed
// (changefeed.Feed), the decision log's reader (decisionlog.Reader) and
// the TLS ticket salts (tickets.Salts) on the same client and key prefix,
// whose key names it has (redisconn.Keys). It is safe for concurrent use.
type Store struct {
	redisconn.Keys
	*operator.Editor
	*changefeed.Feed
	*decisionlog.Reader
	*tickets.Salts

	rdb     redis.UniversalClient
	timeout time.Duration
	log     *slog.Logger
	now     func() time.Time

	credKey          [32]byte                               // HMAC key of the credentials sessions keep
	compiled         *lru.Cache[string, *policy.TopicRules] // see compileTopics
	roleGuess        *lru.Cache[string, []string]           // the roles each user held at its last decision: see lookupNative
	passwords        *passwords.Checker
	dummy            *passwords.Dummy // verified for unknown users so they cost like wrong passwords
	clientIDsDefault []string
	noTopics         bool
	failLimitUser    Limit
	failLimitIP      Limit
	local            localCounts  // failed attempts counted in this process
	byDefault        atomic.Int64 // CONNECTs refused by the client id default
	byDefaultLogged  atomic.Int64 // unix ns of the last log line about one
	schema           schemas.Schema
	uses             atomic.Pointer[lastuse.Writer] // records credential uses; nil: none (see LastUse)
	tokens           *tokens.Verifier               // never nil: one without issuers when none is configured
	revoked          *revoked.Set                   // the revoked tokens and certificates, in memory
	certUsername     string                         // CERT_USERNAME
}

var _ policy.Authenticator = (*Store)(nil)

// New returns a Store over rdb. It computes one argon2id hash for the
// unknown-user path, so it takes a few tens of milliseconds (with another
// schema, none: the dummy takes the shape of that layout's hashes).
func New(rdb redis.UniversalClient, o Options) *Store {
	o = o.withDefaults()
	s := &Store{Keys: redisconn.NewKeys(o.Prefix), rdb: rdb, timeout: o.Timeout, log: o.Logger, now: o.Now,
		passwords: passwords.NewChecker(o.Passwords), clientIDsDefault: o.ClientIDsDefault, noTopics: o.NoTopicRules,
		failLimitUser: o.FailLimitUser, failLimitIP: o.FailLimitIP, schema: o.Schema}
	s.Editor = operator.New(rdb, operator.Options{Prefix: o.Prefix, Now: o.Now})
	s.Feed = changefeed.New(rdb, changefeed.Options{Prefix: o.Prefix, Timeout: o.Timeout, NoTopicRules: o.NoTopicRules,
		Schema: o.Schema, Logger: o.Logger})
	s.Reader = decisionlog.NewReader(rdb, o.Prefix)
	s.Salts = tickets.New(rdb, tickets.Options{Prefix: o.Prefix, Timeout: o.Timeout, Logger: o.Logger, Now: o.Now})
	s.credentialsBeyondPasswords(o)
	_, _ = rand.Read(s.credKey[:]) // never fails (crypto/rand since Go 1.24)
	s.compiled, _ = lru.New[string, *policy.TopicRules](compiledRulesCacheSize)
	s.roleGuess, _ = lru.New[string, []string](roleGuessCacheSize)
	if s.schema != nil {
		s.dummy = passwords.NewDummyLike(s.schema.Dummy())
	} else {
		s.dummy = passwords.NewDummy()
	}
	return s
}

// DecisionLog starts a decision log writer on the store's Redis client
// and key prefix (o.Prefix is ignored).
func (s *Store) DecisionLog(o decisionlog.Options) *decisionlog.Writer {
	o.Prefix = s.Prefix()
	return decisionlog.NewWriter(s.rdb, o)
}

// Ping checks that Redis answers within the store timeout.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("%w: %w", policy.ErrUnavailable, err)
	}
	return nil
}

// HashCount is the number of password hash computations so far.
func (s *Store) HashCount() int64 { return s.passwords.HashCount() }

// RememberedCount is the number of password verifications served from the
// remembered ones, without a hash.
func (s *Store) RememberedCount() int64 { return s.passwords.RememberedCount() }

// SchemaName is the store's AUTHPROXY_SCHEMA: "native", or its Schema's.
func (s *Store) SchemaName() string {
	if s.schema == nil {
		return "native"
	}
	return s.schema.Name()
}
