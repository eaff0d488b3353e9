package operator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/passwords"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
)

// User is a user's rules as the operator sees them. The password hash is
// never returned, only whether there is one.
type User struct {
	Name        string     `json:"name"`
	HasPassword bool       `json:"has_password"`
	HashFormat  string     `json:"hash_format,omitempty"`
	Enabled     bool       `json:"enabled"`
	ClientIDs   []string   `json:"clientids,omitempty"`
	Certs       []string   `json:"certs,omitempty"`
	CIDRs       []string   `json:"cidrs,omitempty"`
	Publish     []string   `json:"publish,omitempty"`
	Subscribe   []string   `json:"subscribe,omitempty"`
	Roles       []string   `json:"roles,omitempty"`
	NotAfter    *time.Time `json:"not_after,omitempty"`
	Extra       []string   `json:"extra_fields,omitempty"` // other fields present in the hash
	// Limits are the user's own limit fields (pub_rate, max_qos, ...;
	// limits.go), as stored.
	Limits map[string]string `json:"limits,omitempty"`
	// PasswordOld is the previous password a rotation keeps working until
	// its Until; nil when there is none.
	PasswordOld *OldPassword `json:"password_old,omitempty"`
	// Backend (a broker pool) and Mountpoint are where its sessions go
	// (brokers.go), as stored; "" when the user has none of its own.
	Backend    string `json:"backend,omitempty"`
	Mountpoint string `json:"mountpoint,omitempty"`
}

// OldPassword is a rotation's previous password, as the operator sees
// it: never the hash.
type OldPassword struct {
	HashFormat string    `json:"hash_format"`
	Until      time.Time `json:"until"`
	// Problem says why the old password is not accepted although
	// present (a field that cannot be read); "" when it is, until Until.
	Problem string `json:"problem,omitempty"`
}

// Update changes some of a user's fields; nil means "leave as is". An empty
// slice or a zero NotAfter removes the field. Password is hashed with
// argon2id; PasswordHash stores a ready hash (checked for format).
type Update struct {
	Password     *string
	PasswordHash *string
	Enabled      *bool
	ClientIDs    *[]string
	Certs        *[]string
	CIDRs        *[]string
	NotAfter     *time.Time
	Publish      *[]string // topic filters; %u and %c fill whole levels
	Subscribe    *[]string
	Roles        *[]string
	// Limits sets limit fields (pub_rate, max_qos, ...; rules.LimitFields)
	// to their values, checked; "" removes one.
	Limits map[string]string
	// Backend and Mountpoint set where the sessions go (brokers.go); ""
	// removes one.
	Backend, Mountpoint *string
	// JWTKeys is the JWKS (JSON) of the keys the user's device signs its
	// tokens with; "" removes it.
	JWTKeys *string
}

// ErrNoSuchUser is returned by operator calls on a user that does not exist.
var ErrNoSuchUser = errors.New("no such user")

// SetUser creates or updates a user. Every value is validated before
// anything is written; the write is one MULTI/EXEC that also publishes
// the name on the changes channel.
func (e *Editor) SetUser(ctx context.Context, name string, u Update) error {
	if err := e.checkNewName(ctx, name); err != nil {
		return err
	}
	w, err := userWrite(u)
	if err != nil {
		return err
	}
	return e.write(ctx, e.keys.UserKey(name), w, e.keys.ChangesChannel(), name)
}

// userWrite is what u writes to a user's hash, every value validated.
func userWrite(u Update) (hashWrite, error) {
	w := hashWrite{set: map[string]any{}}
	if u.Password != nil && u.PasswordHash != nil {
		return w, errors.New("give a password or a hash, not both")
	}
	if u.Password != nil {
		w.set[rules.FieldPassword] = passwords.HashPassword(*u.Password)
	}
	if u.PasswordHash != nil {
		if err := passwords.CheckHashFormat(*u.PasswordHash); err != nil {
			return w, err
		}
		w.set[rules.FieldPassword] = *u.PasswordHash
	}
	if u.Password != nil || u.PasswordHash != nil {
		// A password set outright ends a rotation's overlap: the previous
		// password stops working with it.
		w.del = append(w.del, rules.FieldPasswordOld, rules.FieldPasswordOldUntil)
	}
	if u.Enabled != nil {
		w.set[rules.FieldEnabled] = strconv.FormatBool(*u.Enabled)
	}
	for _, f := range []struct {
		field string
		v     *[]string
		check func(string) error
	}{
		{rules.FieldClientIDs, u.ClientIDs, nil},
		{rules.FieldCerts, u.Certs, func(v string) error { _, err := rules.ParseCerts(v); return err }},
		{rules.FieldCIDRs, u.CIDRs, func(v string) error { _, err := rules.ParseCIDRs(v); return err }},
		{rules.FieldPublish, u.Publish, rules.CheckPatterns},
		{rules.FieldSubscribe, u.Subscribe, rules.CheckPatterns},
		{rules.FieldRoles, u.Roles, rules.CheckRoleNames},
	} {
		if err := w.list(f.field, f.v, f.check); err != nil {
			return w, err
		}
	}
	if err := w.limits(u.Limits); err != nil {
		return w, err
	}
	if err := w.route(u.Backend, u.Mountpoint); err != nil {
		return w, err
	}
	if err := w.field(rules.FieldJWTKeys, u.JWTKeys, rules.CheckJWTKeys); err != nil {
		return w, err
	}
	if u.NotAfter != nil {
		if u.NotAfter.IsZero() {
			w.del = append(w.del, rules.FieldNotAfter)
		} else {
			w.set[rules.FieldNotAfter] = u.NotAfter.UTC().Format(time.RFC3339)
		}
	}
	return w, nil
}

// checkNewName refuses a user name that is empty or holds white space,
// and a name with ':' for a user that does not exist yet: ':' separates a
// user name from a client id's suffix under the default client ids
// (%u:*), so a name with ':' could take another user's client ids. An
// existing user with ':' (made before this rule) can still be changed.
func (e *Editor) checkNewName(ctx context.Context, name string) error {
	if name == "" || strings.ContainsAny(name, " \t\r\n") {
		return fmt.Errorf("user name %q: must be non-empty without white space", name)
	}
	if !strings.Contains(name, ":") {
		return nil
	}
	n, err := e.rdb.Exists(ctx, e.keys.UserKey(name)).Result()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("user name %q: ':' is not allowed in a new user name (it separates a user name from a client id suffix, as in %%u:*)", name)
	}
	return nil
}

// DeleteUser removes a user; it returns ErrNoSuchUser if there was none.
func (e *Editor) DeleteUser(ctx context.Context, name string) error {
	existed, err := e.remove(ctx, e.keys.UserKey(name), e.keys.ChangesChannel(), name)
	if err == nil && !existed {
		return fmt.Errorf("%w: %q", ErrNoSuchUser, name)
	}
	return err
}

// SetEnabled enables or disables an existing user. It works whatever the
// user's other fields hold, malformed ones included: disabling must always
// be possible.
func (e *Editor) SetEnabled(ctx context.Context, name string, enabled bool) error {
	n, err := e.rdb.Exists(ctx, e.keys.UserKey(name)).Result()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: %q", ErrNoSuchUser, name)
	}
	return e.SetUser(ctx, name, Update{Enabled: &enabled})
}

// GetUser returns a user's rules without the password hash. With a field
// that cannot be read, it returns the user and the error.
func (e *Editor) GetUser(ctx context.Context, name string) (User, error) {
	h, err := e.rdb.HGetAll(ctx, e.keys.UserKey(name)).Result()
	if err != nil {
		return User{}, err
	}
	if len(h) == 0 {
		return User{}, fmt.Errorf("%w: %q", ErrNoSuchUser, name)
	}
	return userFromHash(name, h)
}

// userFromHash is the user a hash holds.
func userFromHash(name string, h map[string]string) (User, error) {
	u := User{Name: name, Enabled: true}
	r, perr := rules.Parse(h)
	lists := map[string]*[]string{rules.FieldClientIDs: &u.ClientIDs, rules.FieldCerts: &u.Certs, rules.FieldCIDRs: &u.CIDRs,
		rules.FieldPublish: &u.Publish, rules.FieldSubscribe: &u.Subscribe, rules.FieldRoles: &u.Roles}
	for k, v := range h {
		if l, ok := lists[k]; ok {
			*l = strings.Fields(v)
			continue
		}
		switch k {
		case rules.FieldPassword:
			u.HasPassword = v != ""
			u.HashFormat = passwords.Format(v)
		case rules.FieldEnabled:
			u.Enabled = r.Enabled
		case rules.FieldNotAfter:
			if !r.NotAfter.IsZero() {
				t := r.NotAfter
				u.NotAfter = &t
			}
		case rules.FieldPasswordOld, rules.FieldPasswordOldUntil:
			u.PasswordOld = oldPassword(r.Rotation)
		default:
			if !rules.IsLimitField(k) && !isRouteField(k) {
				u.Extra = append(u.Extra, k)
			}
		}
	}
	slices.Sort(u.Extra)
	u.Limits = limitsOf(h)
	u.Backend, u.Mountpoint = h[rules.FieldBackend], h[rules.FieldMountpoint]
	return u, errors.Join(perr, rules.CheckLimits(h), checkRoute(h))
}

// ListUsers returns the names of all users, sorted, using SCAN (never KEYS).
func (e *Editor) ListUsers(ctx context.Context) ([]string, error) {
	return e.listKeys(ctx, e.keys.UserKey(""))
}

// Kick asks every proxy sharing this Redis to close the user's live
// connections, without changing the rules. It returns how many proxies
// received the request.
func (e *Editor) Kick(ctx context.Context, name string) (int64, error) {
	return e.rdb.Publish(ctx, e.keys.KickChannel(), name).Result()
}

// oldPassword is a rotation's previous password as User shows it.
func oldPassword(r rules.Rotation) *OldPassword {
	o := &OldPassword{HashFormat: passwords.Format(r.Old), Until: r.Until}
	if r.Err != nil {
		o.Problem = r.Err.Error()
	}
	return o
}
