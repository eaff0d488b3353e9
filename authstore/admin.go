package authstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// NewClient opens a go-redis client from a URL: redis:// or rediss:// (TLS)
// for one server; with ?master_name=NAME and addr=host:port parameters, a
// Sentinel failover client; with ?cluster=true (and addr=...), a Cluster
// client. Context deadlines apply to every command.
func NewClient(rawURL string) (redis.UniversalClient, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis URL: %w", redactError(rawURL, err))
	}
	q := u.Query()
	switch {
	case q.Has("master_name"):
		o, err := redis.ParseFailoverURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("redis sentinel URL: %w", redactError(rawURL, err))
		}
		o.ContextTimeoutEnabled = true
		return redis.NewFailoverClient(o), nil
	case q.Has("cluster"):
		cluster, err := strconv.ParseBool(q.Get("cluster"))
		if err != nil {
			return nil, fmt.Errorf("redis URL: cluster=%q is not a boolean", q.Get("cluster"))
		}
		q.Del("cluster")
		u.RawQuery = q.Encode()
		if cluster {
			o, err := redis.ParseClusterURL(u.String())
			if err != nil {
				return nil, fmt.Errorf("redis cluster URL: %w", redactError(rawURL, err))
			}
			o.ContextTimeoutEnabled = true
			return redis.NewClusterClient(o), nil
		}
	}
	o, err := redis.ParseURL(u.String())
	if err != nil {
		return nil, fmt.Errorf("redis URL: %w", redactError(rawURL, err))
	}
	o.ContextTimeoutEnabled = true
	return redis.NewClient(o), nil
}

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
}

// ErrNoSuchUser is returned by operator calls on a user that does not exist.
var ErrNoSuchUser = errors.New("no such user")

// ChangesChannel is the pub/sub channel the operator calls publish each
// changed username to.
func (s *Store) ChangesChannel() string { return s.prefix + "changes" }

// SetUser creates or updates a user. Every value is validated before
// anything is written; the write is one MULTI/EXEC.
func (s *Store) SetUser(ctx context.Context, name string, u Update) error {
	if err := s.checkNewName(ctx, name); err != nil {
		return err
	}
	set := map[string]any{}
	var del []string
	if u.Password != nil && u.PasswordHash != nil {
		return errors.New("give a password or a hash, not both")
	}
	if u.Password != nil {
		set[FieldPassword] = HashPassword(*u.Password)
	}
	if u.PasswordHash != nil {
		if err := CheckHashFormat(*u.PasswordHash); err != nil {
			return err
		}
		set[FieldPassword] = *u.PasswordHash
	}
	if u.Enabled != nil {
		set[FieldEnabled] = strconv.FormatBool(*u.Enabled)
	}
	list := func(field string, v *[]string, check func(string) error) error {
		if v == nil {
			return nil
		}
		if len(*v) == 0 {
			del = append(del, field)
			return nil
		}
		joined := strings.Join(*v, " ")
		if check != nil {
			if err := check(joined); err != nil {
				return err
			}
		}
		set[field] = joined
		return nil
	}
	if err := list(FieldClientIDs, u.ClientIDs, nil); err != nil {
		return err
	}
	if err := list(FieldCerts, u.Certs, func(v string) error { _, err := ParseCerts(v); return err }); err != nil {
		return err
	}
	if err := list(FieldCIDRs, u.CIDRs, func(v string) error { _, err := ParseCIDRs(v); return err }); err != nil {
		return err
	}
	for _, f := range []struct {
		field string
		v     *[]string
	}{{FieldPublish, u.Publish}, {FieldSubscribe, u.Subscribe}} {
		if err := list(f.field, f.v, checkPatterns); err != nil {
			return err
		}
	}
	if err := list(FieldRoles, u.Roles, checkRoleNames); err != nil {
		return err
	}
	if u.NotAfter != nil {
		if u.NotAfter.IsZero() {
			del = append(del, FieldNotAfter)
		} else {
			set[FieldNotAfter] = u.NotAfter.UTC().Format(time.RFC3339)
		}
	}
	key := s.UserKey(name)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if len(set) > 0 {
			p.HSet(ctx, key, set)
		}
		if len(del) > 0 {
			p.HDel(ctx, key, del...)
		}
		p.Publish(ctx, s.ChangesChannel(), name)
		return nil
	})
	return err
}

// checkNewName refuses a user name that is empty or holds white space,
// and a name with ':' for a user that does not exist yet: ':' separates a
// user name from a client id's suffix under the default client ids
// (%u:*), so a name with ':' could take another user's client ids. An
// existing user with ':' (made before this rule) can still be changed.
func (s *Store) checkNewName(ctx context.Context, name string) error {
	if name == "" || strings.ContainsAny(name, " \t\r\n") {
		return fmt.Errorf("user name %q: must be non-empty without white space", name)
	}
	if !strings.Contains(name, ":") {
		return nil
	}
	n, err := s.rdb.Exists(ctx, s.UserKey(name)).Result()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("user name %q: ':' is not allowed in a new user name (it separates a user name from a client id suffix, as in %%u:*)", name)
	}
	return nil
}

// DeleteUser removes a user; it returns ErrNoSuchUser if there was none.
func (s *Store) DeleteUser(ctx context.Context, name string) error {
	var n *redis.IntCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		n = p.Del(ctx, s.UserKey(name))
		p.Publish(ctx, s.ChangesChannel(), name)
		return nil
	})
	if err != nil {
		return err
	}
	if n.Val() == 0 {
		return fmt.Errorf("%w: %q", ErrNoSuchUser, name)
	}
	return nil
}

// SetEnabled enables or disables an existing user. It works whatever the
// user's other fields hold, malformed ones included: disabling must always
// be possible.
func (s *Store) SetEnabled(ctx context.Context, name string, enabled bool) error {
	n, err := s.rdb.Exists(ctx, s.UserKey(name)).Result()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: %q", ErrNoSuchUser, name)
	}
	return s.SetUser(ctx, name, Update{Enabled: &enabled})
}

// GetUser returns a user's rules without the password hash.
func (s *Store) GetUser(ctx context.Context, name string) (User, error) {
	h, err := s.rdb.HGetAll(ctx, s.UserKey(name)).Result()
	if err != nil {
		return User{}, err
	}
	if len(h) == 0 {
		return User{}, fmt.Errorf("%w: %q", ErrNoSuchUser, name)
	}
	u := User{Name: name, Enabled: true}
	r, perr := parseRules(h)
	for k, v := range h {
		switch k {
		case FieldPassword:
			u.HasPassword = v != ""
			u.HashFormat = hashFormat(v)
		case FieldEnabled:
			u.Enabled = r.enabled
		case FieldClientIDs:
			u.ClientIDs = strings.Fields(v)
		case FieldCerts:
			u.Certs = strings.Fields(v)
		case FieldCIDRs:
			u.CIDRs = strings.Fields(v)
		case FieldPublish:
			u.Publish = strings.Fields(v)
		case FieldSubscribe:
			u.Subscribe = strings.Fields(v)
		case FieldRoles:
			u.Roles = strings.Fields(v)
		case FieldNotAfter:
			if !r.notAfter.IsZero() {
				t := r.notAfter
				u.NotAfter = &t
			}
		default:
			u.Extra = append(u.Extra, k)
		}
	}
	slices.Sort(u.Extra)
	if perr != nil {
		return u, perr
	}
	return u, nil
}

func hashFormat(v string) string {
	switch {
	case strings.HasPrefix(v, "$argon2id$"):
		return "argon2id"
	case strings.HasPrefix(v, "$2"):
		return "bcrypt"
	case strings.HasPrefix(v, "PBKDF2$"):
		return "pbkdf2"
	case v == "":
		return ""
	}
	return "unknown"
}

// ListUsers returns the names of all users, sorted, using SCAN (never KEYS).
func (s *Store) ListUsers(ctx context.Context) ([]string, error) {
	return s.listKeys(ctx, s.UserKey(""))
}

// listKeys returns what follows prefix in the names of the keys that
// start with it, sorted, using SCAN (never KEYS), on every master of a
// Cluster.
func (s *Store) listKeys(ctx context.Context, prefix string) ([]string, error) {
	var names []string
	scan := func(ctx context.Context, c *redis.Client) error {
		it := c.Scan(ctx, 0, escapeGlob(prefix)+"*", 1000).Iterator()
		for it.Next(ctx) {
			names = append(names, strings.TrimPrefix(it.Val(), prefix))
		}
		return it.Err()
	}
	var err error
	switch c := s.rdb.(type) {
	case *redis.ClusterClient:
		var mu = make(chan struct{}, 1)
		err = c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			mu <- struct{}{}
			defer func() { <-mu }()
			return scan(ctx, n)
		})
	case *redis.Client:
		err = scan(ctx, c)
	default:
		return nil, fmt.Errorf("list %s*: unsupported client %T", prefix, s.rdb)
	}
	slices.Sort(names)
	return slices.Compact(names), err
}

// escapeGlob escapes Redis MATCH pattern characters in a literal prefix.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
