package authstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/logsafe"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Schema reads users and their topic rules laid out in Redis as another
// product keeps them (AUTHPROXY_SCHEMA), and hands a decision what it
// needs in the native vocabulary: the user's fields (a password hash
// verifyPassword reads; enabled, certs and the rest absent), its topic
// rules as expanded patterns with their sources, and whether it is a
// superuser. Its reads are queued on the pipeline that also reads the
// native keys every decision needs (bans and failed-attempt counts under
// the key prefix), so a CONNECT stays one round trip: on a standalone
// Redis or behind Sentinel one pipeline; on a Cluster the pipeline is
// split by node and the parts are sent in parallel, one round trip of
// latency. Make one with NewEMQXSchema or NewGoAuthSchema; a nil Schema
// in Options is the native layout, read by its Lua script.
type Schema interface {
	// Name is the schema's AUTHPROXY_SCHEMA value.
	Name() string
	// queue queues on p the reads of req's user (with topics, of its
	// topic rules too); read, called once p has run, turns their replies
	// into the user.
	queue(ctx context.Context, p redis.Pipeliner, req policy.Request, topics bool) (read func() (schemaUser, error))
	// watched are the keys whose writes may change a decision: each a
	// prefix of keys (the empty prefix: every key) or one key.
	watched() []watchedKey
	// changes are what a write to key means for live sessions.
	changes(key string) []policy.Change
	// notifyFlags are the notify-keyspace-events classes its keys' writes
	// need (K and the classes of the commands that write them).
	notifyFlags() string
	// dummy is a stored hash of the layout's usual shape, for the
	// unknown-user path until the store has read a real one.
	dummy() string
}

// watchedKey is a key, or with prefix every key that starts with it.
type watchedKey struct {
	key    string
	prefix bool
}

// everySession is what a write to a key every user's decision reads (a
// shared rule set, a key template that does not name the user) means:
// every live session is decided again, as for the default role.
var everySession = policy.Change{Role: DefaultRole}

// schemaUser is a user as another schema keeps it, in the native
// vocabulary.
type schemaUser struct {
	// fields are the user's hash as the native schema has it: no entry at
	// all for a user that does not exist; FieldPassword, when the user
	// has a password, in a form verifyPassword reads.
	fields map[string]string
	// where names the user's keys, for explain ("mqtt_user:alice").
	where string
	// superuser passes every topic rule; superuserWhy says why it does or
	// does not, for explain.
	superuser    bool
	superuserWhy string
	// publish and subscribe are the topic rules, their placeholders
	// filled in for the request.
	publish, subscribe []policy.Expanded
	// rulesFrom names the keys the rules were read from; skipped are the
	// rules read that grant nothing, each with why.
	rulesFrom string
	skipped   []string
}

// lookupSchema reads a decision's record through the schema: the native
// keys of bans and failed attempts and the schema's reads, queued on one
// pipeline.
func (s *Store) lookupSchema(ctx context.Context, k lookupKeys, req policy.Request) (userRecord, error) {
	var failUser, failAddr, banUser, banClient *redis.StringCmd
	var known *redis.FloatCmd
	read := func() (schemaUser, error) { return schemaUser{}, nil }
	// The error of the pipeline is its first command's that failed: each
	// is looked at below, where a missing key (redis.Nil) or a key of
	// another type (read as no such user or rule by the schema) is no
	// failure.
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		failUser, failAddr = p.Get(ctx, k.failUser), p.Get(ctx, k.failAddr)
		known = p.ZScore(ctx, k.known, k.addr)
		banUser, banClient = p.HGet(ctx, k.banUsers, k.username), p.HGet(ctx, k.banClientIDs, k.clientID)
		if req.Username != "" {
			read = s.schema.queue(ctx, p, req, !s.noTopics)
		}
		return nil
	})
	for _, c := range []redis.Cmder{failUser, failAddr, known, banUser, banClient} {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return userRecord{}, err
		}
	}
	u, err := read()
	if err != nil {
		return userRecord{}, err
	}
	rec := userRecord{fields: u.fields, schema: &u, banUser: banUser.Val(), banClientID: banClient.Val()}
	rec.failUser, _ = failUser.Int64()
	rec.failAddr, _ = failAddr.Int64()
	rec.knownAt = int64(known.Val())
	return rec, nil
}

// replyErr is a reply's error that is a failure to read: not a missing
// key, not a key of another type (which the schemas read as absent).
func replyErr(err error) error {
	if err == nil || errors.Is(err, redis.Nil) || redis.HasErrorPrefix(err, "WRONGTYPE") {
		return nil
	}
	return err
}

// wrongType reports whether err is a key of another type than the
// command reads.
func wrongType(err error) bool { return err != nil && redis.HasErrorPrefix(err, "WRONGTYPE") }

// schemaTopics compiles a schema user's topic rules; a superuser's pass
// everything. It reports them to an explanation.
func schemaTopics(u *schemaUser, e *policy.Explanation) (*policy.TopicRules, error) {
	t, err := policy.CompileExpanded(u.publish, u.subscribe)
	if err != nil {
		return nil, err
	}
	t.All = u.superuser
	if u.superuser {
		e.Add("superuser", policy.Pass, u.superuserWhy+": every topic rule passes")
	} else {
		e.Add("superuser", policy.NotApplied, u.superuserWhy)
	}
	if e != nil {
		detail := fmt.Sprintf("%d publish and %d subscribe rules from %s", len(u.publish), len(u.subscribe), u.rulesFrom)
		if len(u.skipped) > 0 {
			detail += fmt.Sprintf("; %d granting nothing: %s", len(u.skipped), strings.Join(u.skipped, "; "))
		}
		e.Add("topic rules", policy.Pass, detail)
	}
	return t, nil
}

// layout names the schema for explanations: "" for the native one.
func (s *Store) layout() string {
	if s.schema == nil {
		return ""
	}
	return s.schema.Name()
}

// whereUser says, for explain, which keys hold the user in another
// schema ("" in the native one).
func (s *Store) whereUser(rec userRecord) string {
	if rec.schema == nil || rec.schema.where == "" {
		return ""
	}
	return " (" + s.schema.Name() + ": " + logsafe.String(rec.schema.where) + ")"
}

// NotifyFlags are the notify-keyspace-events classes Watch needs with
// this store's schema: NotifyFlags for the native one.
func (s *Store) NotifyFlags() string {
	if s.schema == nil {
		return NotifyFlags
	}
	return s.schema.notifyFlags()
}

// SchemaName is the store's AUTHPROXY_SCHEMA: "native", or its Schema's.
func (s *Store) SchemaName() string {
	if s.schema == nil {
		return "native"
	}
	return s.schema.Name()
}

// dummyHash is a schema store's hash for the unknown-user path, of the
// shape of the last stored hash the store read (and at first of the
// schema's usual one), so that an unknown user costs what a wrong
// password costs in a fleet whose hashes are not argon2id.
type dummyHash struct{ shape, hash string }

// dummyFor is the hash the unknown-user path verifies against.
func (s *Store) dummyFor() string {
	if s.schema == nil {
		return s.dummy
	}
	return s.schemaDummy.Load().hash
}

// adoptShape makes the dummy take the shape of a stored hash that
// verifyPassword reads (its format and cost, with a random salt and key).
func (s *Store) adoptShape(stored string) {
	if s.schema == nil {
		return
	}
	shape, _, ok := dummyLike(stored, zeroBytes)
	if !ok || s.schemaDummy.Load().shape == shape {
		return
	}
	if shape, hash, ok := dummyLike(stored, randomBytes); ok {
		s.schemaDummy.Store(&dummyHash{shape: shape, hash: hash})
	}
}

// newSchemaDummy is the first dummy of a schema store.
func newSchemaDummy(sc Schema) *atomic.Pointer[dummyHash] {
	p := &atomic.Pointer[dummyHash]{}
	stored := sc.dummy()
	shape, hash, ok := dummyLike(stored, randomBytes)
	if !ok {
		shape, hash = "", stored
	}
	p.Store(&dummyHash{shape: shape, hash: hash})
	return p
}

// nameFills reports whether a name may fill a placeholder of a topic
// rule: not empty, no wildcard, no level separator (no name injects a
// wildcard).
func nameFills(v string) bool { return v != "" && !strings.ContainsAny(v, "+#/") }
