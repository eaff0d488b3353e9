package authstore

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/schemas"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// userRecord is what one decision reads: the user's hash, the hashes of
// the roles it holds (the default role first, when it exists; a role that
// does not exist has no entry), the failed-attempt counts of the user and
// of the address, when the address last saw a success of the user, and
// the bans of the user name and of the client id.
type userRecord struct {
	fields   map[string]string
	roles    []roleRecord
	failUser int64
	failAddr int64
	// knownAt is when the user last authenticated from this address (unix
	// seconds; 0: never, or too long ago to be kept).
	knownAt     int64
	banUser     string // the ban's stored value, "" when none
	banClientID string
	// schema is the user as another schema keeps it (fields is its
	// fields); nil in the native schema.
	schema *schemas.User
}

type roleRecord struct {
	name   string
	fields map[string]string
}

// lookupKeys are the keys one decision reads.
type lookupKeys struct {
	user, failUser, failAddr, known, banUsers, banClientIDs string
	addr, clientID, username                                string
	token                                                   *policy.Token // its claims may be the user's rules (withClaims)
}

func (s *Store) keysFor(req policy.Request) lookupKeys {
	addr := addrKey(req.RemoteAddr)
	return lookupKeys{
		user: s.UserKey(req.Username), failUser: s.FailUserKey(req.Username), failAddr: s.FailIPKey(addr),
		known: s.KnownKey(req.Username), banUsers: s.BanKey(string(rules.BanUser)), banClientIDs: s.BanKey(string(rules.BanClientID)),
		addr: addr, clientID: req.ClientID, username: req.Username, token: req.Token,
	}
}

// lookup reads a decision's record under the store timeout, in one round
// trip in the common case: one pipeline (a MULTI/EXEC transaction on a
// standalone Redis or with Sentinel, so that it reads one moment; on a
// Cluster split by node and sent in parallel) of the user's hash, the
// failed-attempt counts, when the address last succeeded, the bans, the
// default role, and the roles the user held at its last decision. When
// the user's roles field names roles that were not read, a second round
// trip reads them (the first decision of a user with roles, and the one
// after its roles changed). Plain commands cost Redis a fraction of a
// script (a script's call cost about 4 times the commands it ran). Another
// schema reads with its own pipeline (lookupSchema).
func (s *Store) lookup(ctx context.Context, req policy.Request) (userRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	k := s.keysFor(req)
	var rec userRecord
	var err error
	if s.schema != nil {
		rec, err = s.lookupSchema(ctx, k, req)
	} else {
		rec, err = s.lookupNative(ctx, k)
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return userRecord{}, fmt.Errorf("%w: %w", policy.ErrUnavailable, err)
	}
	if req.Username == "" {
		rec.fields, rec.schema = nil, nil // no user: nothing to read, but the address's count counts
	}
	return rec, nil
}

// pipelined runs fill on one pipeline: a transaction where the client
// allows one across the keys (not on a Cluster).
func (s *Store) pipelined(ctx context.Context, fill func(redis.Pipeliner) error) error {
	if _, cluster := s.rdb.(*redis.ClusterClient); cluster {
		_, err := s.rdb.Pipelined(ctx, fill)
		return err
	}
	_, err := s.rdb.TxPipelined(ctx, fill)
	return err
}

// nativeReads are the commands of a native decision's first round trip.
type nativeReads struct {
	user, def            *redis.MapStringStringCmd
	failUser, failAddr   *redis.StringCmd
	known                *redis.FloatCmd
	banUser, banClientID *redis.StringCmd
	guessed              []string
	guessedRoles         []*redis.MapStringStringCmd
}

func (s *Store) lookupNative(ctx context.Context, k lookupKeys) (userRecord, error) {
	r := nativeReads{}
	if !s.noTopics {
		r.guessed, _ = s.roleGuess.Get(k.username)
	}
	err := s.pipelined(ctx, func(p redis.Pipeliner) error {
		r.user = p.HGetAll(ctx, k.user)
		r.failUser, r.failAddr = p.Get(ctx, k.failUser), p.Get(ctx, k.failAddr)
		r.known = p.ZScore(ctx, k.known, k.addr)
		r.banUser, r.banClientID = p.HGet(ctx, k.banUsers, k.username), p.HGet(ctx, k.banClientIDs, k.clientID)
		if !s.noTopics {
			r.def = p.HGetAll(ctx, s.RoleKey(rules.DefaultRole))
			for _, n := range r.guessed {
				r.guessedRoles = append(r.guessedRoles, p.HGetAll(ctx, s.RoleKey(n)))
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return userRecord{}, err
	}
	rec := userRecord{fields: rules.WithClaims(r.user.Val(), tokenRules(k.token)), banUser: r.banUser.Val(), banClientID: r.banClientID.Val()}
	rec.failUser, _ = r.failUser.Int64()
	rec.failAddr, _ = r.failAddr.Int64()
	rec.knownAt = int64(r.known.Val())
	if len(rec.fields) == 0 || s.noTopics {
		return rec, nil
	}
	if d := r.def.Val(); len(d) > 0 {
		rec.roles = append(rec.roles, roleRecord{name: rules.DefaultRole, fields: d})
	}
	roles, err := s.readRoles(ctx, k.username, rules.RoleNames(rec.fields[rules.FieldRoles]), r)
	rec.roles = append(rec.roles, roles...)
	return rec, err
}

// readRoles returns the hashes of the roles named (those that exist), in
// their order: from the first round trip where it guessed them, else
// from a second one; it keeps the names as the next guess.
func (s *Store) readRoles(ctx context.Context, username string, names []string, r nativeReads) ([]roleRecord, error) {
	read := make(map[string]map[string]string, len(names))
	for i, n := range r.guessed {
		read[n] = r.guessedRoles[i].Val()
	}
	var missing []string
	for _, n := range names {
		if _, ok := read[n]; !ok {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		cmds := make([]*redis.MapStringStringCmd, len(missing))
		if err := s.pipelined(ctx, func(p redis.Pipeliner) error {
			for i, n := range missing {
				cmds[i] = p.HGetAll(ctx, s.RoleKey(n))
			}
			return nil
		}); err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		for i, n := range missing {
			read[n] = cmds[i].Val()
		}
	}
	if !slices.Equal(names, r.guessed) {
		s.roleGuess.Add(username, names)
	}
	var out []roleRecord
	for _, n := range names {
		if f := read[n]; len(f) > 0 {
			out = append(out, roleRecord{name: n, fields: f})
		}
	}
	return out, nil
}

// lookupSchema reads a decision's record through the schema: the native
// keys of bans and failed attempts and the schema's reads, queued on one
// pipeline.
func (s *Store) lookupSchema(ctx context.Context, k lookupKeys, req policy.Request) (userRecord, error) {
	var failUser, failAddr, banUser, banClient *redis.StringCmd
	var known *redis.FloatCmd
	read := func() (schemas.User, error) { return schemas.User{}, nil }
	// The error of the pipeline is its first command's that failed: each
	// is looked at below, where a missing key (redis.Nil) or a key of
	// another type (read as no such user or rule by the schema) is no
	// failure.
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		failUser, failAddr = p.Get(ctx, k.failUser), p.Get(ctx, k.failAddr)
		known = p.ZScore(ctx, k.known, k.addr)
		banUser, banClient = p.HGet(ctx, k.banUsers, k.username), p.HGet(ctx, k.banClientIDs, k.clientID)
		if req.Username != "" {
			read = s.schema.Queue(ctx, p, req, !s.noTopics)
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
	rec := userRecord{fields: u.Fields, schema: &u, banUser: banUser.Val(), banClientID: banClient.Val()}
	rec.failUser, _ = failUser.Int64()
	rec.failAddr, _ = failAddr.Int64()
	rec.knownAt = int64(known.Val())
	return rec, nil
}
