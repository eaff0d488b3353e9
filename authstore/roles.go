package authstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Role is a role's topic rules as the operator sees them.
type Role struct {
	Name      string   `json:"name"`
	Publish   []string `json:"publish,omitempty"`
	Subscribe []string `json:"subscribe,omitempty"`
	Extra     []string `json:"extra_fields,omitempty"` // other fields present in the hash
}

// RoleUpdate changes some of a role's fields; nil means "leave as is", an
// empty slice removes the field.
type RoleUpdate struct {
	Publish, Subscribe *[]string
}

// ErrNoSuchRole is returned by operator calls on a role that does not exist.
var ErrNoSuchRole = errors.New("no such role")

// RoleChangesChannel is the pub/sub channel the operator calls publish
// each changed role name to.
func (s *Store) RoleChangesChannel() string { return s.prefix + "role-changes" }

// SetRole creates or updates a role. The patterns are validated before
// anything is written; the write is one MULTI/EXEC that also tells every
// proxy, whose sessions holding the role are decided again.
func (s *Store) SetRole(ctx context.Context, name string, u RoleUpdate) error {
	if err := checkRoleNames(name); err != nil || strings.Contains(name, " ") {
		return fmt.Errorf("role name %q: must be non-empty without white space", name)
	}
	set := map[string]any{}
	var del []string
	for _, f := range []struct {
		field string
		v     *[]string
	}{{FieldPublish, u.Publish}, {FieldSubscribe, u.Subscribe}} {
		switch {
		case f.v == nil:
		case len(*f.v) == 0:
			del = append(del, f.field)
		default:
			joined := strings.Join(*f.v, " ")
			if err := checkPatterns(joined); err != nil {
				return err
			}
			set[f.field] = joined
		}
	}
	key := s.RoleKey(name)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if len(set) > 0 {
			p.HSet(ctx, key, set)
		}
		if len(del) > 0 {
			p.HDel(ctx, key, del...)
		}
		p.Publish(ctx, s.RoleChangesChannel(), name)
		return nil
	})
	return err
}

// GetRole returns a role's rules.
func (s *Store) GetRole(ctx context.Context, name string) (Role, error) {
	h, err := s.rdb.HGetAll(ctx, s.RoleKey(name)).Result()
	if err != nil {
		return Role{}, err
	}
	if len(h) == 0 {
		return Role{}, fmt.Errorf("%w: %q", ErrNoSuchRole, name)
	}
	r := Role{Name: name}
	for k, v := range h {
		switch k {
		case FieldPublish:
			r.Publish = strings.Fields(v)
		case FieldSubscribe:
			r.Subscribe = strings.Fields(v)
		default:
			r.Extra = append(r.Extra, k)
		}
	}
	return r, errors.Join(checkPatterns(h[FieldPublish]), checkPatterns(h[FieldSubscribe]))
}

// DeleteRole removes a role; it returns ErrNoSuchRole if there was none.
// Users that name it keep the name: it grants nothing until it exists.
func (s *Store) DeleteRole(ctx context.Context, name string) error {
	var n *redis.IntCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		n = p.Del(ctx, s.RoleKey(name))
		p.Publish(ctx, s.RoleChangesChannel(), name)
		return nil
	})
	if err != nil {
		return err
	}
	if n.Val() == 0 {
		return fmt.Errorf("%w: %q", ErrNoSuchRole, name)
	}
	return nil
}

// ListRoles returns the names of all roles, sorted, using SCAN.
func (s *Store) ListRoles(ctx context.Context) ([]string, error) {
	return s.listKeys(ctx, s.RoleKey(""))
}

// checkPatterns validates a space-separated list of topic patterns.
func checkPatterns(v string) error {
	var errs []error
	for _, f := range strings.Fields(v) {
		errs = append(errs, policy.CheckPattern(f))
	}
	return errors.Join(errs...)
}

// checkRoleNames validates a space-separated list of role names.
func checkRoleNames(v string) error {
	names := strings.Fields(v)
	if len(names) == 0 {
		return fmt.Errorf("%w: empty role name", policy.ErrMalformedRule)
	}
	if len(names) > maxRoles {
		return fmt.Errorf("%w: %d roles, at most %d", policy.ErrMalformedRule, len(names), maxRoles)
	}
	return nil
}
