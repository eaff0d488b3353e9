package authstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

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

// OptionError is a schema option that cannot be used; Option is the
// name of its field in the options (EMQXOptions.AuthnCmd: "AuthnCmd").
type OptionError struct {
	Option string
	Msg    string
}

func (e *OptionError) Error() string { return e.Option + ": " + e.Msg }

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

// NewEMQXSchema returns the emqx Schema. Every option that cannot be used
// is an *OptionError, joined.
func NewEMQXSchema(o EMQXOptions) (Schema, error) {
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
		if h, ok := emqxDigests[o.PasswordHash]; ok {
			e.sample = strings.Repeat("0", 2*h().Size())
		}
	case "bcrypt":
		e.sample = "$2b$10$" + strings.Repeat(".", 53) // EMQX's default salt_rounds
	case "pbkdf2":
		mac := o.PBKDF2MacFun
		switch {
		case mac == "md4" || mac == "ripemd160":
			bad("PBKDF2MacFun", "%s has no equivalent here (sha, sha224, sha256, sha384, sha512 and md5 do)", mac)
		case emqxDigests[mac] == nil:
			bad("PBKDF2MacFun", "%q is not sha, sha224, sha256, sha384, sha512 or md5 (required with pbkdf2)", mac)
		}
		if o.PBKDF2Iterations < 1 || o.PBKDF2Iterations > maxPBKDF2Iter {
			bad("PBKDF2Iterations", "%d is out of range 1..%d (required with pbkdf2)", o.PBKDF2Iterations, maxPBKDF2Iter)
		}
		if o.PBKDF2DKLength < 0 || o.PBKDF2DKLength > maxDKLength {
			bad("PBKDF2DKLength", "%d is out of range 0..%d (0: the MAC's size)", o.PBKDF2DKLength, maxDKLength)
		}
		if h := emqxDigests[mac]; h != nil && o.PBKDF2DKLength >= 0 && o.PBKDF2DKLength <= maxDKLength {
			dk := o.PBKDF2DKLength
			if dk == 0 {
				dk = h().Size()
			}
			e.params, e.sample = fmt.Sprintf("%s,%d,%d", mac, o.PBKDF2Iterations, o.PBKDF2DKLength), strings.Repeat("0", 2*dk)
		}
	default:
		bad("PasswordHash", "%q is not plain, md5, sha, sha256, sha512, bcrypt or pbkdf2", o.PasswordHash)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return e, nil
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
func (e *emqxSchema) notifyFlags() string { return "Kghx" }

func (e *emqxSchema) dummy() string {
	return emqxHash(e.algorithm, e.params, strings.Repeat("0", 32), e.sample)
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

func (e *emqxSchema) queue(ctx context.Context, p redis.Pipeliner, req policy.Request, topics bool) func() (schemaUser, error) {
	value := func(name string) string { return emqxValue(req, name) }
	userKey := e.authnKey.render(value)
	user := p.HMGet(ctx, userKey, e.authnFields...)
	var acl *redis.MapStringStringCmd
	aclKey := e.authzKey.render(value)
	if topics {
		acl = p.HGetAll(ctx, aclKey)
	}
	return func() (schemaUser, error) {
		u := schemaUser{where: userKey, rulesFrom: aclKey}
		if err := replyErr(user.Err()); err != nil {
			return u, err
		}
		got := map[string]string{}
		if user.Err() == nil {
			for i, v := range user.Val() {
				if s, ok := v.(string); ok {
					got[e.authnFields[i]] = s
				}
			}
		}
		if len(got) == 0 {
			return u, nil // EMQX: no such user, the next authenticator (none)
		}
		u.fields = map[string]string{}
		for k, v := range got {
			u.fields["emqx:"+k] = v // not a native field: the user exists
		}
		hash, ok := got["password_hash"]
		if !ok {
			hash, ok = got["password"]
		}
		if ok {
			u.fields[FieldPassword] = emqxHash(e.algorithm, e.params, got["salt"], hash)
		}
		su, hasSu := got["is_superuser"]
		u.superuser = emqxBool(su)
		switch {
		case !slices.Contains(e.authnFields, "is_superuser"):
			u.superuserWhy = "the authentication command reads no is_superuser"
		case !hasSu:
			u.superuserWhy = "no is_superuser"
		default:
			u.superuserWhy = "is_superuser " + logsafe.String(su)
		}
		if acl == nil {
			return u, nil
		}
		if err := replyErr(acl.Err()); err != nil {
			return u, err
		}
		if wrongType(acl.Err()) {
			u.skipped = append(u.skipped, logsafe.String(aclKey)+" is not a hash")
			return u, nil
		}
		e.rules(&u, acl.Val(), req, aclKey)
		return u, nil
	}
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

// rules reads the authorizer's hash: each field a topic filter ("eq " and
// a filter: that filter only), each value the rule. A rule EMQX would not
// read, one whose qos or retain condition limits it, one whose
// placeholder has no value here grants nothing and is noted in skipped.
func (e *emqxSchema) rules(u *schemaUser, h map[string]string, req policy.Request, source string) {
	topics := make([]string, 0, len(h))
	for t := range h {
		topics = append(topics, t)
	}
	slices.Sort(topics) // HGETALL's order is the hash's: none
	skip := func(topic, value, why string) {
		u.skipped = append(u.skipped, fmt.Sprintf("%s %s: %s", logsafe.String(topic), logsafe.String(value), why))
	}
	for _, topic := range topics {
		value := h[topic]
		r, err := parseEMQXRule(value, e.v4)
		if err != nil {
			skip(topic, value, err.Error())
			continue
		}
		raw := topic
		if e.v4 {
			raw = strings.ReplaceAll(strings.ReplaceAll(raw, "%u", "${username}"), "%c", "${clientid}")
		}
		as, exact := strings.CutPrefix(raw, "eq ")
		if !exact {
			var why string
			if as, why = renderTopic(parseTemplate(as), req); why != "" {
				skip(topic, value, why)
				continue
			}
		}
		if err := policy.CheckFilter(as); err != nil {
			skip(topic, value, "not a topic filter: "+err.Error())
			continue
		}
		x := policy.Expanded{Pattern: policy.Pattern{Filter: topic, Source: source}, As: as, Exact: exact}
		if r.publish && r.pubCondition == "" {
			u.publish = append(u.publish, x)
		}
		if r.subscribe && r.subCondition == "" {
			u.subscribe = append(u.subscribe, x)
		}
		for _, c := range []string{r.pubCondition, r.subCondition} {
			if c != "" {
				skip(topic, value, c+": the proxy checks no qos or retain condition, so it grants nothing")
			}
		}
	}
}

// renderTopic fills a rule's placeholders for req; why says why the rule
// grants nothing when one cannot be filled: a name that is empty or
// holds '+', '#' or '/' (no name injects a wildcard), a placeholder with
// no equivalent. An unknown placeholder stays as it is written, as in
// EMQX.
func renderTopic(t template, req policy.Request) (topic, why string) {
	for _, v := range t.vars() {
		switch {
		case slices.Contains(emqxMapped, v):
			if val := emqxValue(req, v); !nameFills(val) {
				return "", fmt.Sprintf("${%s} is %s: it fills no topic level", v, describeName(val))
			}
		case slices.Contains(emqxNoEquivalent, v) || strings.HasPrefix(v, "client_attrs."):
			return "", fmt.Sprintf("${%s} has no equivalent here", v)
		}
	}
	return t.render(func(name string) string {
		if slices.Contains(emqxMapped, name) {
			return emqxValue(req, name)
		}
		return "${" + name + "}"
	}), ""
}

func describeName(v string) string {
	if v == "" {
		return "empty"
	}
	return logsafe.String(v) + ", which holds '+', '#' or '/'"
}

// emqxRule is a rule of the authorizer: what it allows, and the condition
// that limits each half ("" none).
type emqxRule struct {
	publish, subscribe         bool
	pubCondition, subCondition string
}

// parseEMQXRule reads a rule value as EMQX's Redis authorizer does:
// publish, subscribe, all (with v4 also 2, 1, 3), or a JSON object with
// action (pub, publish, sub, subscribe, all), qos (0, 1, 2, a list of them
// or "0,1"; absent: all) and retain (true, false, 0, 1, "all"; absent:
// all). Its rules allow only; a JSON rule that says "permission":"deny"
// (EMQX would ignore the word and allow) grants nothing here.
func parseEMQXRule(v string, v4 bool) (emqxRule, error) {
	switch {
	case v == "publish" || v4 && v == "2":
		return emqxRule{publish: true}, nil
	case v == "subscribe" || v4 && v == "1":
		return emqxRule{subscribe: true}, nil
	case v == "all" || v4 && v == "3":
		return emqxRule{publish: true, subscribe: true}, nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(v), &m); err != nil || m == nil {
		return emqxRule{}, fmt.Errorf("not publish, subscribe, all or a JSON rule")
	}
	var r emqxRule
	switch m["action"] {
	case "pub", "publish":
		r.publish = true
	case "sub", "subscribe":
		r.subscribe = true
	case "all":
		r.publish, r.subscribe = true, true
	default:
		return r, fmt.Errorf("action is not pub, publish, sub, subscribe or all")
	}
	if p, ok := m["permission"]; ok && p != "allow" {
		return r, fmt.Errorf("permission %v: the Redis authorizer's rules allow only", p)
	}
	qos, err := emqxQoS(m["qos"])
	if err != nil {
		return r, err
	}
	retain, err := emqxRetain(m["retain"])
	if err != nil {
		return r, err
	}
	if r.subscribe && qos != "" {
		r.subCondition = "subscribe only at qos " + qos
	}
	var pub []string
	if qos != "" {
		pub = append(pub, "qos "+qos)
	}
	if retain != "" {
		pub = append(pub, "retain "+retain)
	}
	if r.publish && len(pub) > 0 {
		r.pubCondition = "publish only with " + strings.Join(pub, " and ")
	}
	return r, nil
}

// emqxQoS reads a rule's qos: "" when it allows every level, else the
// levels it allows.
func emqxQoS(v any) (string, error) {
	var levels []int
	add := func(x any) bool {
		switch q := x.(type) {
		case float64:
			if q != math.Trunc(q) || q < 0 || q > 2 {
				return false
			}
			levels = append(levels, int(q))
		case string:
			if q != "0" && q != "1" && q != "2" {
				return false
			}
			levels = append(levels, int(q[0]-'0'))
		default:
			return false
		}
		return true
	}
	ok := true
	switch q := v.(type) {
	case nil:
		return "", nil
	case []any:
		for _, x := range q {
			ok = ok && add(x)
		}
	case string:
		for _, x := range strings.Split(q, ",") {
			ok = ok && add(x)
		}
	default:
		ok = add(q)
	}
	if !ok {
		return "", fmt.Errorf("qos %v is not 0, 1, 2 or a list of them", v)
	}
	slices.Sort(levels)
	levels = slices.Compact(levels)
	if len(levels) == 3 {
		return "", nil
	}
	s := make([]string, len(levels))
	for i, l := range levels {
		s[i] = strconv.Itoa(l)
	}
	return strings.Join(s, ","), nil
}

// emqxRetain reads a rule's retain: "" when it allows both, else the one
// it allows.
func emqxRetain(v any) (string, error) {
	switch v {
	case nil, "all":
		return "", nil
	case true, "true", "1", float64(1):
		return "true", nil
	case false, "false", "0", float64(0):
		return "false", nil
	}
	return "", fmt.Errorf("retain %v is not true, false or all", v)
}

func (e *emqxSchema) watched() []watchedKey {
	var out []watchedKey
	for _, t := range []template{e.authnKey, e.authzKey} {
		out = append(out, watchedKey{key: t.literalPrefix(), prefix: len(t.vars()) > 0})
	}
	return out
}

// changes maps a written key to the user its template names, or to every
// session when the template names no user (a shared key, a key by client
// id or address).
func (e *emqxSchema) changes(key string) []policy.Change {
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
			c = everySession
		default:
			continue
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// template is an EMQX template: text with ${name} placeholders (${$} is
// a '$').
type template struct{ parts []templatePart }

// templatePart is text, or with name a placeholder.
type templatePart struct{ text, name string }

func parseTemplate(s string) template {
	var t template
	for {
		i := strings.Index(s, "${")
		j := -1
		if i >= 0 {
			j = strings.IndexByte(s[i:], '}')
		}
		if i < 0 || j < 0 {
			if s != "" {
				t.parts = append(t.parts, templatePart{text: s})
			}
			return t
		}
		name := s[i+2 : i+j]
		if i > 0 {
			t.parts = append(t.parts, templatePart{text: s[:i]})
		}
		if name == "$" {
			t.parts = append(t.parts, templatePart{text: "$"})
		} else {
			t.parts = append(t.parts, templatePart{name: name})
		}
		s = s[i+j+1:]
	}
}

// vars are the template's placeholder names.
func (t template) vars() []string {
	var out []string
	for _, p := range t.parts {
		if p.name != "" {
			out = append(out, p.name)
		}
	}
	return out
}

// literalPrefix is the text before the first placeholder (all of it
// without one).
func (t template) literalPrefix() string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.name != "" {
			break
		}
		b.WriteString(p.text)
	}
	return b.String()
}

// only reports whether the template's one placeholder is name, and the
// text around it.
func (t template) only(name string) (prefix, suffix string, ok bool) {
	if v := t.vars(); len(v) != 1 || v[0] != name {
		return "", "", false
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.name != "" {
			prefix = b.String()
			b.Reset()
			continue
		}
		b.WriteString(p.text)
	}
	return prefix, b.String(), true
}

func (t template) render(value func(name string) string) string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.name != "" {
			b.WriteString(value(p.name))
		} else {
			b.WriteString(p.text)
		}
	}
	return b.String()
}

// splitArgs splits a command line as redis-cli (and EMQX) do: arguments
// separated by white space, "double quotes" with \" \\ \n \r \t \b \a and
// \xHH escapes, 'single quotes' with \'.
func splitArgs(line string) ([]string, error) {
	space := func(c byte) bool { return strings.IndexByte(" \n\r\t\b\v", c) >= 0 }
	var out []string
	for i := 0; ; {
		for i < len(line) && space(line[i]) {
			i++
		}
		if i == len(line) {
			return out, nil
		}
		var cur []byte
		var quote byte
	arg:
		for {
			if i == len(line) {
				if quote != 0 {
					return nil, fmt.Errorf("%q: unbalanced quotes", line)
				}
				break
			}
			c := line[i]
			switch {
			case quote == 0 && space(c):
				break arg
			case quote == 0 && (c == '"' || c == '\''):
				quote = c
				i++
			case quote == 0:
				cur = append(cur, c)
				i++
			case c == quote:
				if i+1 < len(line) && !space(line[i+1]) {
					return nil, fmt.Errorf("%q: a closing quote must be followed by a space", line)
				}
				i++
				break arg
			case c == '\\' && quote == '\'' && i+1 < len(line) && line[i+1] == '\'':
				cur = append(cur, '\'')
				i += 2
			case c == '\\' && quote == '"' && i+3 < len(line) && line[i+1] == 'x' && isHex(line[i+2:i+4], 2):
				n, _ := strconv.ParseUint(line[i+2:i+4], 16, 8)
				cur = append(cur, byte(n))
				i += 4
			case c == '\\' && quote == '"' && i+1 < len(line):
				cur = append(cur, unescape(line[i+1]))
				i += 2
			default:
				cur = append(cur, c)
				i++
			}
		}
		out = append(out, string(cur))
	}
}

// unescape is the character a backslash and c stand for in double quotes.
func unescape(c byte) byte {
	switch c {
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	case 'b':
		return '\b'
	case 'a':
		return '\a'
	}
	return c
}
