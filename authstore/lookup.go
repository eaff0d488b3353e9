package authstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// DefaultRole is the role every user holds, when its hash exists.
const DefaultRole = "default"

// maxRoles bounds the roles a user may name.
const maxRoles = 32

// userRecord is what one decision reads: the user's hash and the hashes of
// the roles it holds (the default role first, when it exists). A role that
// does not exist has no entry.
type userRecord struct {
	fields map[string]string
	roles  []roleRecord
}

type roleRecord struct {
	name   string
	fields map[string]string
}

// lookupScript reads a user's hash, the default role's and those of the
// roles the user names, in one round trip. It reads keys it is not given
// in KEYS (the role names are in the user's hash): that is fine on a
// standalone Redis and with Sentinel, not on a Cluster (see lookupCluster).
var lookupScript = redis.NewScript(`
local u = redis.call('HGETALL', KEYS[1])
if #u == 0 then return {} end
local out = {u, 'default', redis.call('HGETALL', ARGV[1] .. 'default')}
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

// lookup reads a user's record under the store timeout: one round trip
// (a script), or on a Cluster two (the user and the default role, then
// the named roles, each a parallel pipeline over the nodes that hold
// them). With topic rules off, only the user's hash is read.
func (s *Store) lookup(ctx context.Context, username string) (userRecord, error) {
	if username == "" {
		return userRecord{}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var rec userRecord
	var err error
	switch c := s.rdb.(type) {
	case *redis.ClusterClient:
		rec, err = s.lookupCluster(ctx, c, username)
	default:
		if s.noTopics {
			rec.fields, err = s.rdb.HGetAll(ctx, s.UserKey(username)).Result()
		} else {
			rec, err = s.lookupScripted(ctx, username)
		}
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return userRecord{}, fmt.Errorf("%w: %w", policy.ErrUnavailable, err)
	}
	return rec, nil
}

func (s *Store) lookupScripted(ctx context.Context, username string) (userRecord, error) {
	v, err := lookupScript.Run(ctx, s.rdb, []string{s.UserKey(username)}, s.RoleKey(""), maxRoles).Slice()
	if err != nil {
		return userRecord{}, err
	}
	var rec userRecord
	if len(v) == 0 {
		return rec, nil
	}
	if rec.fields, err = pairs(v[0]); err != nil {
		return userRecord{}, err
	}
	for i := 1; i+1 < len(v); i += 2 {
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

// lookupCluster reads the record on a Cluster, where a script may touch
// the keys of one slot only.
func (s *Store) lookupCluster(ctx context.Context, c *redis.ClusterClient, username string) (userRecord, error) {
	var rec userRecord
	var user, def *redis.MapStringStringCmd
	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		user = p.HGetAll(ctx, s.UserKey(username))
		if !s.noTopics {
			def = p.HGetAll(ctx, s.RoleKey(DefaultRole))
		}
		return nil
	}); err != nil {
		return rec, err
	}
	rec.fields = user.Val()
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
