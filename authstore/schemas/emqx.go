package schemas

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/passwords"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/logsafe"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// The emqx schema reads users as EMQX's Redis password authenticator
// does (a command, by default HMGET mqtt_user:${username} password_hash
// salt is_superuser, with EMQX's password_hash_algorithm) and topic rules
// as its Redis authorizer does (by default HGETALL mqtt_acl:${username}:
// field the topic filter, value publish, subscribe, all or a JSON rule).

// Defaults of the emqx schema, as EMQX's documentation configures them.
const (
	DefaultEMQXAuthnCmd = "HMGET mqtt_user:${username} password_hash salt is_superuser"
	DefaultEMQXAuthzCmd = "HGETALL mqtt_acl:${username}"
)

// EMQXOptions configure the emqx schema with the settings of EMQX's
// Redis authenticator and authorizer, under its names.
type EMQXOptions struct {
	// AuthnCmd is the authenticator's cmd: HGET or HMGET of a key
	// template with the fields password_hash (or password), salt and
	// is_superuser, in any order.
	AuthnCmd string
	// AuthzCmd is the authorizer's cmd: HGETALL of a key template.
	AuthzCmd string
	// PasswordHash is password_hash_algorithm's name: plain, md5, sha,
	// sha256, sha512 (with SaltPosition prefix, suffix or disable),
	// bcrypt, or pbkdf2 (with PBKDF2MacFun, PBKDF2Iterations and
	// PBKDF2DKLength, 0 for the MAC's size).
	PasswordHash string
	SaltPosition string
	// AllowPlain lets PasswordHash be plain: passwords stored as they are.
	AllowPlain       bool
	PBKDF2MacFun     string
	PBKDF2Iterations int
	PBKDF2DKLength   int
	// AuthzCompatibilityMode is the authorizer's compatibility_mode:
	// "disabled" (or empty), or "v4": rule values 1, 2, 3 and the
	// placeholders %u and %c are read as EMQX 4 wrote them.
	AuthzCompatibilityMode string
}

// emqxSchema is the emqx Schema.
type emqxSchema struct {
	authnKey    template
	authnFields []string // as the command names them, in its order
	authzKey    template
	v4          bool
	algorithm   string // password_hash_algorithm's name
	params      string // its parameters in the $emqx$ form
	sample      string // a stored password_hash of the configured shape
}

// The placeholders of EMQX's templates the proxy fills, and those it has
// nothing to fill with.
var (
	emqxMapped       = []string{"username", "clientid", "peerhost", "cert_common_name"}
	emqxNoEquivalent = []string{"password", "peerport", "cert_subject", "cert_pem", "zone", "listener"}
)

// NewEMQX returns the emqx Schema. Every option that cannot be used is an
// *OptionError, joined.
func NewEMQX(o EMQXOptions) (Schema, error) {
	e := &emqxSchema{}
	var errs []error
	bad := func(option, format string, args ...any) {
		errs = append(errs, &OptionError{Option: option, Msg: fmt.Sprintf(format, args...)})
	}
	if err := e.parseAuthn(o.AuthnCmd); err != nil {
		bad("AuthnCmd", "%v", err)
	}
	if err := e.parseAuthz(o.AuthzCmd); err != nil {
		bad("AuthzCmd", "%v", err)
	}
	switch o.AuthzCompatibilityMode {
	case "", "disabled":
	case "v4":
		e.v4 = true
	default:
		bad("AuthzCompatibilityMode", "%q is not disabled or v4", o.AuthzCompatibilityMode)
	}
	e.algorithm = o.PasswordHash
	switch o.PasswordHash {
	case "plain", "md5", "sha", "sha256", "sha512":
		e.setSalted(o, bad)
	case "bcrypt":
		e.sample = "$2b$10$" + strings.Repeat(".", 53) // EMQX's default salt_rounds
	case "pbkdf2":
		e.setPBKDF2(o, bad)
	default:
		bad("PasswordHash", "%q is not plain, md5, sha, sha256, sha512, bcrypt or pbkdf2", o.PasswordHash)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return e, nil
}

// setSalted reads the options of a simple password_hash_algorithm
// (plain, md5, sha, sha256, sha512), calling bad for each that cannot be
// used.
func (e *emqxSchema) setSalted(o EMQXOptions, bad func(option, format string, args ...any)) {
	switch o.SaltPosition {
	case "prefix", "suffix", "disable":
		e.params = o.SaltPosition
	default:
		bad("SaltPosition", "%q is not prefix, suffix or disable", o.SaltPosition)
	}
	if o.PasswordHash == "plain" && !o.AllowPlain {
		bad("PasswordHash", "plain stores passwords as they are: refused unless allowed explicitly")
	}
	e.sample = strings.Repeat("0", 16)
	if size, ok := passwords.EMQXDigestSize(o.PasswordHash); ok {
		e.sample = strings.Repeat("0", 2*size)
	}
}

// setPBKDF2 reads the pbkdf2 options, calling bad for each that cannot
// be used.
func (e *emqxSchema) setPBKDF2(o EMQXOptions, bad func(option, format string, args ...any)) {
	mac := o.PBKDF2MacFun
	size, known := passwords.EMQXDigestSize(mac)
	switch {
	case mac == "md4" || mac == "ripemd160":
		bad("PBKDF2MacFun", "%s has no equivalent here (sha, sha224, sha256, sha384, sha512 and md5 do)", mac)
	case !known:
		bad("PBKDF2MacFun", "%q is not sha, sha224, sha256, sha384, sha512 or md5 (required with pbkdf2)", mac)
	}
	if o.PBKDF2Iterations < 1 || o.PBKDF2Iterations > passwords.MaxPBKDF2Iterations {
		bad("PBKDF2Iterations", "%d is out of range 1..%d (required with pbkdf2)", o.PBKDF2Iterations, passwords.MaxPBKDF2Iterations)
	}
	if o.PBKDF2DKLength < 0 || o.PBKDF2DKLength > passwords.MaxDKLength {
		bad("PBKDF2DKLength", "%d is out of range 0..%d (0: the MAC's size)", o.PBKDF2DKLength, passwords.MaxDKLength)
	}
	if known && o.PBKDF2DKLength >= 0 && o.PBKDF2DKLength <= passwords.MaxDKLength {
		dk := o.PBKDF2DKLength
		if dk == 0 {
			dk = size
		}
		e.params, e.sample = fmt.Sprintf("%s,%d,%d", mac, o.PBKDF2Iterations, o.PBKDF2DKLength), strings.Repeat("0", 2*dk)
	}
}

// parseAuthn reads the authenticator's command.
func (e *emqxSchema) parseAuthn(cmd string) error {
	args, err := splitArgs(cmd)
	if err != nil {
		return err
	}
	switch name := strings.ToUpper(append(args, "")[0]); {
	case name != "HGET" && name != "HMGET":
		return fmt.Errorf("%q: the command is HGET or HMGET (EMQX's default: %s)", cmd, DefaultEMQXAuthnCmd)
	case len(args) < 3:
		return fmt.Errorf("%q: want %s <key> <fields> (EMQX's default: %s)", cmd, name, DefaultEMQXAuthnCmd)
	case name == "HGET" && len(args) != 3:
		return fmt.Errorf("%q: HGET reads one field (HMGET reads several)", cmd)
	}
	hasPassword := false
	for _, f := range args[2:] {
		switch f {
		case "password_hash", "password":
			hasPassword = true
		case "salt", "is_superuser":
		case "clientid_override":
			return fmt.Errorf("%q: clientid_override has no equivalent (the proxy does not change a device's client id); leave it out", cmd)
		default:
			return fmt.Errorf("%q: field %q is not password_hash, password, salt or is_superuser", cmd, f)
		}
	}
	if !hasPassword {
		return fmt.Errorf("%q: reads neither password_hash nor password", cmd)
	}
	if e.authnKey, err = parseKeyTemplate(args[1]); err != nil {
		return fmt.Errorf("%q: %w", cmd, err)
	}
	e.authnFields = args[2:]
	return nil
}

// parseAuthz reads the authorizer's command.
func (e *emqxSchema) parseAuthz(cmd string) error {
	args, err := splitArgs(cmd)
	if err != nil {
		return err
	}
	switch {
	case len(args) == 0:
		return fmt.Errorf("is empty: to relay without topic rules, set ACL=off")
	case strings.EqualFold(args[0], "HMGET"):
		return fmt.Errorf("%q: HMGET answers values without the topic filters they belong to; use HGETALL", cmd)
	case !strings.EqualFold(args[0], "HGETALL") || len(args) != 2:
		return fmt.Errorf("%q: want HGETALL <key> (EMQX's default: %s)", cmd, DefaultEMQXAuthzCmd)
	}
	if e.authzKey, err = parseKeyTemplate(args[1]); err != nil {
		return fmt.Errorf("%q: %w", cmd, err)
	}
	return nil
}

// parseKeyTemplate reads a key template whose placeholders the proxy
// fills.
func parseKeyTemplate(s string) (template, error) {
	t := parseTemplate(s)
	for _, v := range t.vars() {
		switch {
		case slices.Contains(emqxMapped, v):
		case slices.Contains(emqxNoEquivalent, v) || strings.HasPrefix(v, "client_attrs."):
			return t, fmt.Errorf("placeholder ${%s} has no equivalent here (%s do)", v, placeholderList(emqxMapped))
		default:
			return t, fmt.Errorf("unknown placeholder ${%s} (%s are known)", v, placeholderList(emqxMapped))
		}
	}
	return t, nil
}

func placeholderList(names []string) string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "${" + n + "}"
	}
	return strings.Join(out, ", ")
}

func (e *emqxSchema) Name() string        { return "emqx" }
func (e *emqxSchema) NotifyFlags() string { return "Kghx" }

func (e *emqxSchema) Dummy() string {
	return passwords.EMQXHash(e.algorithm, e.params, strings.Repeat("0", 32), e.sample)
}

// emqxValue is a placeholder's value for req: the user name, the client
// id, the source address, the client certificate's common name.
func emqxValue(req policy.Request, name string) string {
	switch name {
	case "username":
		return req.Username
	case "clientid":
		return req.ClientID
	case "peerhost":
		if req.RemoteAddr.IsValid() {
			return req.RemoteAddr.Unmap().String()
		}
	case "cert_common_name":
		if req.CertSHA256 != nil {
			return req.CertCN
		}
	}
	return ""
}

// Queue queues the authenticator's command for req's user, and with
// topics the authorizer's.
func (e *emqxSchema) Queue(ctx context.Context, p redis.Pipeliner, req policy.Request, topics bool) func() (User, error) {
	value := func(name string) string { return emqxValue(req, name) }
	userKey := e.authnKey.render(value)
	user := p.HMGet(ctx, userKey, e.authnFields...)
	var acl *redis.MapStringStringCmd
	aclKey := e.authzKey.render(value)
	if topics {
		acl = p.HGetAll(ctx, aclKey)
	}
	return func() (User, error) {
		u := User{Where: userKey, RulesFrom: aclKey}
		if err := replyErr(user.Err()); err != nil {
			return u, err
		}
		if !e.readUser(&u, user) {
			return u, nil // EMQX: no such user, the next authenticator (none)
		}
		if acl == nil {
			return u, nil
		}
		if err := replyErr(acl.Err()); err != nil {
			return u, err
		}
		if wrongType(acl.Err()) {
			u.Skipped = append(u.Skipped, logsafe.String(aclKey)+" is not a hash")
			return u, nil
		}
		e.readACL(&u, acl.Val(), req, aclKey)
		return u, nil
	}
}

// readUser reads the authenticator's reply into u: its fields, its
// password in the $emqx$ form, whether it is a superuser. It reports
// whether the user exists.
func (e *emqxSchema) readUser(u *User, user *redis.SliceCmd) bool {
	got := map[string]string{}
	if user.Err() == nil {
		for i, v := range user.Val() {
			if s, ok := v.(string); ok {
				got[e.authnFields[i]] = s
			}
		}
	}
	if len(got) == 0 {
		return false
	}
	u.Fields = map[string]string{}
	for k, v := range got {
		u.Fields["emqx:"+k] = v // not a native field: the user exists
	}
	hash, ok := got["password_hash"]
	if !ok {
		hash, ok = got["password"]
	}
	if ok {
		u.Fields[rules.FieldPassword] = passwords.EMQXHash(e.algorithm, e.params, got["salt"], hash)
	}
	su, hasSu := got["is_superuser"]
	u.Superuser = emqxBool(su)
	switch {
	case !slices.Contains(e.authnFields, "is_superuser"):
		u.SuperuserWhy = "the authentication command reads no is_superuser"
	case !hasSu:
		u.SuperuserWhy = "no is_superuser"
	default:
		u.SuperuserWhy = "is_superuser " + logsafe.String(su)
	}
	return true
}

// emqxBool reads is_superuser as EMQX does: true, or an integer of 1 or
// more (as text); anything else is false.
func emqxBool(v string) bool {
	if v == "true" {
		return true
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return err == nil && n >= 1 || errors.Is(err, strconv.ErrRange) && !strings.HasPrefix(v, "-")
}

// Watched are the keys the two commands read: a key template's text
// before its first placeholder, as a prefix when it has one.
func (e *emqxSchema) Watched() []WatchedKey {
	var out []WatchedKey
	for _, t := range []template{e.authnKey, e.authzKey} {
		out = append(out, WatchedKey{Key: t.literalPrefix(), Prefix: len(t.vars()) > 0})
	}
	return out
}

// Changes maps a written key to the user its template names, or to every
// session when the template names no user (a shared key, a key by client
// id or address).
func (e *emqxSchema) Changes(key string) []policy.Change {
	var out []policy.Change
	for _, t := range []template{e.authnKey, e.authzKey} {
		var c policy.Change
		switch prefix, suffix, ok := t.only("username"); {
		case ok:
			rest, hasPrefix := strings.CutPrefix(key, prefix)
			name, hasSuffix := strings.CutSuffix(rest, suffix)
			if !hasPrefix || !hasSuffix || name == "" {
				continue
			}
			c = policy.Change{Username: name}
		case len(t.vars()) == 0 && key == t.literalPrefix(), len(t.vars()) > 0 && strings.HasPrefix(key, t.literalPrefix()):
			c = EverySession
		default:
			continue
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}
