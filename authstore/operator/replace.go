package operator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/passwords"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
)

// replaceScript replaces a hash whole, in one step no other write can
// come between: two operators writing the same user at once leave one of
// their writes, never a mix of both. It keeps the stored password fields
// when asked (a record without a password), refuses to create a hash when
// asked (a new user name with ':'), and publishes the name on the changes
// channel.
//
//	KEYS[1] the hash
//	ARGV[1] the channel, ARGV[2] the name published,
//	ARGV[3] "1": keep password, password_old, password_old_until,
//	ARGV[4] "1": the hash must exist already,
//	ARGV[5...] field, value, field, value...
//
// It returns 1 when the hash existed, 0 when it was created.
var replaceScript = redis.NewScript(`
local existed = redis.call('EXISTS', KEYS[1])
if existed == 0 and ARGV[4] == '1' then
  return redis.error_reply('AUTHPROXY_NEW_NAME')
end
local kept = {}
if ARGV[3] == '1' and existed == 1 then
  local names = {'password', 'password_old', 'password_old_until'}
  local v = redis.call('HMGET', KEYS[1], unpack(names))
  for i, name in ipairs(names) do
    if v[i] then
      table.insert(kept, name)
      table.insert(kept, v[i])
    end
  end
end
if #ARGV < 5 and #kept == 0 then
  return redis.error_reply('AUTHPROXY_EMPTY')
end
redis.call('DEL', KEYS[1])
if #ARGV >= 5 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 5))
end
if #kept > 0 then
  redis.call('HSET', KEYS[1], unpack(kept))
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return existed
`)

// ErrEmptyRecord is a record that would leave a hash without a field: a
// new user needs at least a password, a password_hash or certs.
var ErrEmptyRecord = errors.New("nothing to store: a user needs a password, a password_hash or other fields")

// ErrNoSuchRoles is a user record or change naming roles that do not
// exist.
var ErrNoSuchRoles = errors.New("no such role")

// Replace writes the record's hash whole (the admin API's PUT; import
// writes the same way, many at a time): a user's plain password is hashed
// with argon2id, the roles it names must exist, and a user record without
// a password keeps the stored one. It reports whether the user or role
// was created.
func (e *Editor) Replace(ctx context.Context, r Record) (created bool, err error) {
	if !r.Role {
		if err := e.CheckRolesExist(ctx, rules.RoleNames(r.Fields[rules.FieldRoles]), nil); err != nil {
			return false, err
		}
	}
	r = r.hashed()
	keys, args := e.replaceArgs(r)
	return replacedAnswer(r, replaceScript.Run(ctx, e.rdb, keys, args...))
}

// hashed is the record with its plain password hashed.
func (r Record) hashed() Record {
	if r.Plain == nil {
		return r
	}
	r.Fields = maps.Clone(r.Fields)
	r.Fields[rules.FieldPassword] = passwords.HashPassword(*r.Plain)
	r.Plain = nil
	return r
}

// replaceArgs are replaceScript's keys and arguments for r, whose
// password is hashed already.
func (e *Editor) replaceArgs(r Record) ([]string, []any) {
	key, channel := e.keys.UserKey(r.Name), e.keys.ChangesChannel()
	if r.Role {
		key, channel = e.keys.RoleKey(r.Name), e.keys.RoleChangesChannel()
	}
	args := make([]any, 0, 4+2*len(r.Fields))
	args = append(args, channel, r.Name, flag(r.KeepPassword), flag(!r.Role && strings.Contains(r.Name, ":")))
	for _, k := range slices.Sorted(maps.Keys(r.Fields)) {
		args = append(args, k, r.Fields[k])
	}
	return []string{key}, args
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// replacedAnswer reads a replacement's answer: whether it created the
// hash.
func replacedAnswer(r Record, cmd *redis.Cmd) (bool, error) {
	n, err := cmd.Int()
	switch {
	case err == nil:
		return n == 0, nil
	case strings.Contains(err.Error(), "AUTHPROXY_NEW_NAME"):
		return false, invalidf("user name %q: ':' is not allowed in a new user name (it separates a user name from a client id suffix, as in %%u:*)", r.Name)
	case strings.Contains(err.Error(), "AUTHPROXY_EMPTY"):
		return false, invalid(fmt.Errorf("%s %q: %w", kindName(r.Role), r.Name, ErrEmptyRecord))
	}
	return false, err
}

func kindName(role bool) string {
	if role {
		return "role"
	}
	return "user"
}

// CheckRolesExist refuses role names (other than the default role) that
// have no hash and are not in defined (the roles of the same import).
func (e *Editor) CheckRolesExist(ctx context.Context, names []string, defined map[string]bool) error {
	missing, err := e.missingRoles(ctx, names, defined)
	if err != nil || len(missing) == 0 {
		return err
	}
	return fmt.Errorf("%w: %s (create it first: role set NAME)", ErrNoSuchRoles, strings.Join(slices.Sorted(maps.Keys(missing)), ", "))
}

// missingRoles are the names (other than the default role, and those in
// defined) that no role's hash has, asked in one pipeline.
func (e *Editor) missingRoles(ctx context.Context, names []string, defined map[string]bool) (map[string]bool, error) {
	ask := map[string]*redis.IntCmd{}
	for _, n := range names {
		if n != rules.DefaultRole && !defined[n] {
			ask[n] = nil
		}
	}
	if len(ask) == 0 {
		return nil, nil
	}
	_, err := e.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for n := range ask {
			ask[n] = p.Exists(ctx, e.keys.RoleKey(n))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	missing := map[string]bool{}
	for n, c := range ask {
		if c.Val() == 0 {
			missing[n] = true
		}
	}
	return missing, nil
}
