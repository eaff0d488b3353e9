package authstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// DefaultRole is the role every user holds, when its hash exists.
const DefaultRole = "default"

// maxRoles bounds the roles a user may name.
const maxRoles = 32

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
	schema *schemaUser
}

type roleRecord struct {
	name   string
	fields map[string]string
}

// lookupKeys are the keys one decision reads.
type lookupKeys struct {
	user, failUser, failAddr, known, banUsers, banClientIDs string
	addr, clientID, username                                string
}

func (s *Store) keysFor(req policy.Request) lookupKeys {
	addr := addrKey(req.RemoteAddr)
	return lookupKeys{
		user: s.UserKey(req.Username), failUser: s.prefix + "fail:user:" + req.Username, failAddr: s.prefix + "fail:ip:" + addr,
		known: s.prefix + "known:" + req.Username, banUsers: s.BanKey(BanUser), banClientIDs: s.BanKey(BanClientID),
		addr: addr, clientID: req.ClientID, username: req.Username,
	}
}

// lookupScript reads, in one round trip, everything a decision needs:
// the user's hash, the default role's and those of the roles the user
// names (unless ARGV[3] is "0": topic rules off), the failed-attempt
// counts, when the address last succeeded for the user, and the bans. It
// reads role keys it is not given in KEYS (their names are in the user's
// hash): fine on a standalone Redis and with Sentinel, not on a Cluster
// (see lookupCluster).
var lookupScript = redis.NewScript(`
local u = redis.call('HGETALL', KEYS[1])
local out = {u,
  redis.call('GET', KEYS[2]) or '0',
  redis.call('GET', KEYS[3]) or '0',
  redis.call('ZSCORE', KEYS[4], ARGV[4]) or '0',
  redis.call('HGET', KEYS[5], ARGV[5]) or '',
  redis.call('HGET', KEYS[6], ARGV[6]) or ''}
if #u == 0 or ARGV[3] == '0' then return out end
out[#out+1] = 'default'
out[#out+1] = redis.call('HGETALL', ARGV[1] .. 'default')
for i = 1, #u, 2 do
  if u[i] == 'roles' then
    local n = 0
    for name in string.gmatch(u[i+1], '%S+') do
      n = n + 1
      if n > tonumber(ARGV[2]) then break end
      if name ~= 'default' then
        out[#out+1] = name
        out[#out+1] = redis.call('HGETALL', ARGV[1] .. name)
      end
    end
  end
end
return out
`)

// scriptHeader is how many entries of the script's reply come before the
// roles.
const scriptHeader = 6

// lookup reads a decision's record under the store timeout: one round trip
// (a script), or on a Cluster two (the first a parallel pipeline over the
// nodes that hold the keys, the second the named roles). Another schema
// reads with one pipeline (lookupSchema): one round trip, on a Cluster
// sent to the nodes in parallel.
func (s *Store) lookup(ctx context.Context, req policy.Request) (userRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	k := s.keysFor(req)
	var rec userRecord
	var err error
	c, cluster := s.rdb.(*redis.ClusterClient)
	switch {
	case s.schema != nil:
		rec, err = s.lookupSchema(ctx, k, req)
	case cluster:
		rec, err = s.lookupCluster(ctx, c, k)
	default:
		rec, err = s.lookupScripted(ctx, k)
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return userRecord{}, fmt.Errorf("%w: %w", policy.ErrUnavailable, err)
	}
	if req.Username == "" {
		rec.fields, rec.schema = nil, nil // no user: nothing to read, but the address's count counts
	}
	return rec, nil
}

func (s *Store) lookupScripted(ctx context.Context, k lookupKeys) (userRecord, error) {
	topics := "1"
	if s.noTopics {
		topics = "0"
	}
	v, err := lookupScript.Run(ctx, s.rdb, []string{k.user, k.failUser, k.failAddr, k.known, k.banUsers, k.banClientIDs},
		s.RoleKey(""), maxRoles, topics, k.addr, k.username, k.clientID).Slice()
	if err != nil {
		return userRecord{}, err
	}
	if len(v) < scriptHeader {
		return userRecord{}, fmt.Errorf("lookup script: %d replies", len(v))
	}
	var rec userRecord
	if rec.fields, err = pairs(v[0]); err != nil {
		return userRecord{}, err
	}
	rec.failUser, rec.failAddr, rec.knownAt = num(v[1]), num(v[2]), num(v[3])
	rec.banUser, _ = v[4].(string)
	rec.banClientID, _ = v[5].(string)
	for i := scriptHeader; i+1 < len(v); i += 2 {
		name, _ := v[i].(string)
		fields, err := pairs(v[i+1])
		if err != nil {
			return userRecord{}, err
		}
		if len(fields) > 0 {
			rec.roles = append(rec.roles, roleRecord{name: name, fields: fields})
		}
	}
	return rec, nil
}

// num reads a counter or a score from a script reply.
func num(v any) int64 {
	s, _ := v.(string)
	f, _ := strconv.ParseFloat(s, 64)
	return int64(f)
}

// lookupCluster reads the record on a Cluster, where a script may touch
// the keys of one slot only.
func (s *Store) lookupCluster(ctx context.Context, c *redis.ClusterClient, k lookupKeys) (userRecord, error) {
	var rec userRecord
	var user, def *redis.MapStringStringCmd
	var failUser, failAddr *redis.StringCmd
	var known *redis.FloatCmd
	var banUser, banClient *redis.StringCmd
	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		user = p.HGetAll(ctx, k.user)
		failUser, failAddr = p.Get(ctx, k.failUser), p.Get(ctx, k.failAddr)
		known = p.ZScore(ctx, k.known, k.addr)
		banUser, banClient = p.HGet(ctx, k.banUsers, k.username), p.HGet(ctx, k.banClientIDs, k.clientID)
		if !s.noTopics {
			def = p.HGetAll(ctx, s.RoleKey(DefaultRole))
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return rec, err
	}
	rec.fields = user.Val()
	rec.failUser, _ = failUser.Int64()
	rec.failAddr, _ = failAddr.Int64()
	rec.knownAt = int64(known.Val())
	rec.banUser, rec.banClientID = banUser.Val(), banClient.Val()
	if len(rec.fields) == 0 || s.noTopics {
		return rec, nil
	}
	if d := def.Val(); len(d) > 0 {
		rec.roles = append(rec.roles, roleRecord{name: DefaultRole, fields: d})
	}
	names := roleNames(rec.fields[FieldRoles])
	if len(names) == 0 {
		return rec, nil
	}
	cmds := make([]*redis.MapStringStringCmd, len(names))
	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, n := range names {
			cmds[i] = p.HGetAll(ctx, s.RoleKey(n))
		}
		return nil
	}); err != nil {
		return rec, err
	}
	for i, n := range names {
		if f := cmds[i].Val(); len(f) > 0 {
			rec.roles = append(rec.roles, roleRecord{name: n, fields: f})
		}
	}
	return rec, nil
}

// roleNames are the roles a roles field names, the default role aside (it
// is read for everyone), at most maxRoles.
func roleNames(field string) []string {
	var out []string
	for i, n := range strings.Fields(field) {
		if i == maxRoles {
			break
		}
		if n != DefaultRole {
			out = append(out, n)
		}
	}
	return out
}

// pairs turns a flat HGETALL reply from a script into a map.
func pairs(v any) (map[string]string, error) {
	flat, ok := v.([]any)
	if !ok || len(flat)%2 != 0 {
		return nil, fmt.Errorf("lookup script: unexpected reply %T", v)
	}
	m := make(map[string]string, len(flat)/2)
	for i := 0; i < len(flat); i += 2 {
		k, ok1 := flat[i].(string)
		val, ok2 := flat[i+1].(string)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("lookup script: unexpected field %T %T", flat[i], flat[i+1])
		}
		m[k] = val
	}
	return m, nil
}

// RoleKey is the Redis key of a role's hash.
func (s *Store) RoleKey(name string) string { return s.prefix + "role:" + name }
