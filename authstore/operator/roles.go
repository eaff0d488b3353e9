package operator

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
)

// Role is a role's topic rules as the operator sees them.
type Role struct {
	Name      string   `json:"name"`
	Publish   []string `json:"publish,omitempty"`
	Subscribe []string `json:"subscribe,omitempty"`
	Extra     []string `json:"extra_fields,omitempty"` // other fields present in the hash
	// Limits are the role's limit fields (pub_rate, max_qos, ...), as
	// stored.
	Limits map[string]string `json:"limits,omitempty"`
	// Backend and Mountpoint are where its users' sessions go
	// (brokers.go), as stored.
	Backend    string `json:"backend,omitempty"`
	Mountpoint string `json:"mountpoint,omitempty"`
}

// RoleUpdate changes some of a role's fields; nil means "leave as is", an
// empty slice removes the field.
type RoleUpdate struct {
	Publish, Subscribe *[]string
	// Limits sets limit fields (rules.LimitFields) to their values,
	// checked; "" removes one.
	Limits map[string]string
	// Backend and Mountpoint set where its users' sessions go
	// (brokers.go); "" removes one.
	Backend, Mountpoint *string
}

// ErrNoSuchRole is returned by operator calls on a role that does not exist.
var ErrNoSuchRole = errors.New("no such role")

// SetRole creates or updates a role. The patterns are validated before
// anything is written; the write is one MULTI/EXEC that also tells every
// proxy, whose sessions holding the role are decided again.
func (e *Editor) SetRole(ctx context.Context, name string, u RoleUpdate) error {
	if err := rules.CheckRoleNames(name); err != nil || strings.Contains(name, " ") {
		return fmt.Errorf("role name %q: must be non-empty without white space", name)
	}
	w := hashWrite{set: map[string]any{}}
	if err := w.list(rules.FieldPublish, u.Publish, rules.CheckPatterns); err != nil {
		return err
	}
	if err := w.list(rules.FieldSubscribe, u.Subscribe, rules.CheckPatterns); err != nil {
		return err
	}
	if err := w.limits(u.Limits); err != nil {
		return err
	}
	if err := w.route(u.Backend, u.Mountpoint); err != nil {
		return err
	}
	return e.write(ctx, e.keys.RoleKey(name), w, e.keys.RoleChangesChannel(), name)
}

// GetRole returns a role's rules; with a pattern that cannot be read, the
// role and the error.
func (e *Editor) GetRole(ctx context.Context, name string) (Role, error) {
	h, err := e.rdb.HGetAll(ctx, e.keys.RoleKey(name)).Result()
	if err != nil {
		return Role{}, err
	}
	if len(h) == 0 {
		return Role{}, fmt.Errorf("%w: %q", ErrNoSuchRole, name)
	}
	r := Role{Name: name}
	for k, v := range h {
		switch k {
		case rules.FieldPublish:
			r.Publish = strings.Fields(v)
		case rules.FieldSubscribe:
			r.Subscribe = strings.Fields(v)
		default:
			if !rules.IsLimitField(k) && !isRouteField(k) {
				r.Extra = append(r.Extra, k)
			}
		}
	}
	r.Limits = limitsOf(h)
	r.Backend, r.Mountpoint = h[rules.FieldBackend], h[rules.FieldMountpoint]
	return r, errors.Join(rules.CheckPatterns(h[rules.FieldPublish]), rules.CheckPatterns(h[rules.FieldSubscribe]), rules.CheckLimits(h), checkRoute(h))
}

// DeleteRole removes a role; it returns ErrNoSuchRole if there was none.
// Users that name it keep the name: it grants nothing until it exists.
func (e *Editor) DeleteRole(ctx context.Context, name string) error {
	existed, err := e.remove(ctx, e.keys.RoleKey(name), e.keys.RoleChangesChannel(), name)
	if err == nil && !existed {
		return fmt.Errorf("%w: %q", ErrNoSuchRole, name)
	}
	return err
}

// ListRoles returns the names of all roles, sorted, using SCAN.
func (e *Editor) ListRoles(ctx context.Context) ([]string, error) {
	return e.listKeys(ctx, e.keys.RoleKey(""))
}
