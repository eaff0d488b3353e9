package schemas

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/logsafe"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// The mosquitto-go-auth schema reads the keys of that plugin's Redis
// backend: the password hash under the user name (GET), superuser when
// <username>:su is "true", and topic rules in sets: <username>:sacls
// (subscribe), :racls (read: receive), :wacls (write: publish), :rwacls
// (read and write, not subscribe), and common:sacls, :racls, :wacls,
// :rwacls for every user, where %u and %c stand for the user name and
// the client id (in the user's own sets they are text).
//
// Mosquitto asks for subscribe when a device subscribes and for read when
// a message is about to be delivered; the proxy judges the subscription
// only, so a subscription passes when a subscribe rule and a read rule
// both cover it (a grant of their intersection): nothing it lets through
// would have been held back at delivery.

// GoAuthOptions configure the mosquitto-go-auth schema with that plugin's
// options.
type GoAuthOptions struct {
	// DisableSuperuser: auth_opt_redis_disable_superuser (or the global
	// auth_opt_disable_superuser) true: <username>:su is not read.
	DisableSuperuser bool
	// SaltEncoding is auth_opt_hasher_salt_encoding: how a PBKDF2 hash
	// holds its salt, base64 (the default, empty) or utf-8 (as it is).
	SaltEncoding string
}

// goauthSchema is the mosquitto-go-auth Schema.
type goauthSchema struct {
	disableSuperuser bool
	utf8Salt         bool
}

// goauthKinds are the kinds of ACL sets, with what each allows.
var goauthKinds = []string{"sacls", "racls", "wacls", "rwacls"}

// goauthCommon is the user name of the sets every user holds.
const goauthCommon = "common"

// NewGoAuth returns the mosquitto-go-auth Schema. An option that
// cannot be used is an *OptionError.
func NewGoAuth(o GoAuthOptions) (Schema, error) {
	g := &goauthSchema{disableSuperuser: o.DisableSuperuser}
	switch o.SaltEncoding {
	case "", "base64":
	case "utf-8":
		g.utf8Salt = true
	default:
		return nil, &OptionError{Option: "SaltEncoding", Msg: fmt.Sprintf("%q is not base64 or utf-8", o.SaltEncoding)}
	}
	return g, nil
}

func (g *goauthSchema) Name() string { return "mosquitto-go-auth" }

// NotifyFlags: SET of a password or :su ($), SADD and SREM of the sets
// (s), DEL and EXPIRE (g), expiries (x).
func (g *goauthSchema) NotifyFlags() string { return "K$sgx" }

// Dummy is a hash of mosquitto-go-auth's default hasher: PBKDF2 with
// sha512, 100000 iterations, a 16-byte salt and a 32-byte key.
func (g *goauthSchema) Dummy() string {
	zero := base64.StdEncoding.EncodeToString
	return "PBKDF2$sha512$100000$" + zero(make([]byte, 16)) + "$" + zero(make([]byte, 32))
}

// goauthReads are the replies a decision's reads will get.
type goauthReads struct {
	req    policy.Request
	owners []string // the user's name, and common (once)
	topics bool
	pw     *redis.StringCmd
	su     *redis.StringCmd // nil: superuser checks off
	sets   map[string]*redis.StringSliceCmd
}

// Queue queues the reads of the user's password, and with topics its
// superuser flag and its own and the common ACL sets.
func (g *goauthSchema) Queue(ctx context.Context, p redis.Pipeliner, req policy.Request, topics bool) func() (User, error) {
	name := req.Username
	r := goauthReads{req: req, owners: []string{name, goauthCommon}, topics: topics, sets: map[string]*redis.StringSliceCmd{}}
	if name == goauthCommon {
		r.owners = r.owners[1:]
	}
	r.pw = p.Get(ctx, name)
	if topics {
		if !g.disableSuperuser {
			r.su = p.Get(ctx, name+":su")
		}
		for _, owner := range r.owners {
			for _, kind := range goauthKinds {
				r.sets[owner+":"+kind] = p.SMembers(ctx, owner+":"+kind)
			}
		}
	}
	return func() (User, error) { return g.read(r) }
}

// read turns the replies into the user.
func (g *goauthSchema) read(r goauthReads) (User, error) {
	name := r.req.Username
	u := User{Where: name, RulesFrom: name + ":*acls and common:*acls"}
	if err := replyErr(r.pw.Err()); err != nil {
		return u, err
	}
	if r.pw.Err() != nil {
		return u, nil // no such key, or not a string: no such user
	}
	u.Fields = map[string]string{rules.FieldPassword: g.nativeHash(r.pw.Val())}
	if !r.topics {
		return u, nil
	}
	switch su := r.su; {
	case su == nil:
		u.SuperuserWhy = "superuser checks are off"
	case replyErr(su.Err()) != nil:
		return u, su.Err()
	case su.Err() != nil:
		u.SuperuserWhy = "no " + logsafe.String(name) + ":su"
	default:
		u.Superuser = su.Val() == "true"
		u.SuperuserWhy = logsafe.String(name) + ":su is " + strconv.Quote(logsafe.String(su.Val()))
	}
	err := g.readACLs(&u, r)
	return u, err
}

// readACLs reads the ACL sets into the user's topic rules.
func (g *goauthSchema) readACLs(u *User, r goauthReads) error {
	acls := map[string][]policy.Expanded{}
	for key, cmd := range r.sets {
		if err := replyErr(cmd.Err()); err != nil {
			return err
		}
		if wrongType(cmd.Err()) {
			u.Skipped = append(u.Skipped, logsafe.String(key)+" is not a set")
			continue
		}
		members := cmd.Val()
		slices.Sort(members) // a set has no order
		acls[key] = g.expand(u, key, members, r.req, strings.HasPrefix(key, goauthCommon+":"))
	}
	of := func(kinds ...string) []policy.Expanded {
		var out []policy.Expanded
		for _, owner := range r.owners {
			for _, k := range kinds {
				out = append(out, acls[owner+":"+k]...)
			}
		}
		return out
	}
	u.Publish = of("wacls", "rwacls")
	u.Subscribe = subscribeAndRead(u, of("sacls"), of("racls", "rwacls"))
	return nil
}

// expand turns a set's members into patterns: the user's own as they
// are, the common ones with %c and %u filled in wherever they stand (a
// name that is empty or holds '+', '#' or '/' fills nothing: the rule is
// left out).
func (g *goauthSchema) expand(u *User, key string, members []string, req policy.Request, common bool) []policy.Expanded {
	var out []policy.Expanded
	for _, m := range members {
		as := m
		if common {
			var why string
			if as, why = fillPercent(m, req); why != "" {
				u.Skipped = append(u.Skipped, fmt.Sprintf("%s %s: %s", key, logsafe.String(m), why))
				continue
			}
		}
		if err := policy.CheckFilter(as); err != nil {
			u.Skipped = append(u.Skipped, fmt.Sprintf("%s %s: not a topic filter: %v", key, logsafe.String(m), err))
			continue
		}
		out = append(out, policy.Expanded{Pattern: policy.Pattern{Filter: m, Source: key}, As: as})
	}
	return out
}

// fillPercent fills %u and %c wherever they stand in a common rule.
func fillPercent(rule string, req policy.Request) (string, string) {
	var b strings.Builder
	for i := 0; i < len(rule); i++ {
		if rule[i] == '%' && i+1 < len(rule) && (rule[i+1] == 'u' || rule[i+1] == 'c') {
			v, what := req.Username, "the user name"
			if rule[i+1] == 'c' {
				v, what = req.ClientID, "the client id"
			}
			if !nameFills(v) {
				return "", fmt.Sprintf("%s is %s: it fills nothing", what, describeName(v))
			}
			b.WriteString(v)
			i++
			continue
		}
		b.WriteByte(rule[i])
	}
	return b.String(), ""
}

// subscribeAndRead grants a subscription where a subscribe rule and a
// read rule both allow: a subscribe rule a read rule covers as it is,
// else its intersection with each read rule it meets. A subscribe rule
// that no read rule meets grants nothing (mosquitto would deliver
// nothing on it).
func subscribeAndRead(u *User, subs, reads []policy.Expanded) []policy.Expanded {
	var out []policy.Expanded
	for _, s := range subs {
		if i := slices.IndexFunc(reads, func(r policy.Expanded) bool { return policy.Covers(r.As, s.As) }); i >= 0 {
			s.Source += " (read: " + reads[i].Source + " " + logsafe.String(reads[i].Filter) + ")"
			out = append(out, s)
			continue
		}
		met := false
		for _, r := range reads {
			if x, ok := policy.Intersect(s.As, r.As); ok {
				met = true
				out = append(out, policy.Expanded{Pattern: policy.Pattern{Filter: s.Filter,
					Source: fmt.Sprintf("%s, only %s (read: %s %s)", s.Source, logsafe.String(x), r.Source, logsafe.String(r.Filter))}, As: x})
			}
		}
		if !met {
			u.Skipped = append(u.Skipped, fmt.Sprintf("%s %s: no read rule (racls, rwacls) meets it, so mosquitto would deliver nothing on it",
				s.Source, logsafe.String(s.Filter)))
		}
	}
	return out
}

// nativeHash is a stored hash in the form the passwords package reads: PBKDF2 with
// a base64 salt (a utf-8 salt is encoded; mosquitto-go-auth's other form
// $pbkdf2-sha512$i=<iterations>,l=<length>$<salt>$<hash> is rewritten),
// argon2id and bcrypt as they are.
func (g *goauthSchema) nativeHash(v string) string {
	if rest, ok := strings.CutPrefix(strings.TrimPrefix(v, "$"), "pbkdf2-sha512$"); ok {
		if h, ok := g.pbkdf2PHC(rest); ok {
			return h
		}
		return v
	}
	if strings.HasPrefix(v, "$PBKDF2$") {
		v = v[1:] // mosquitto-go-auth splits on '$' and drops empty fields
	}
	if p := strings.Split(v, "$"); g.utf8Salt && len(p) == 5 && p[0] == "PBKDF2" {
		p[3] = base64.StdEncoding.EncodeToString([]byte(p[3]))
		return strings.Join(p, "$")
	}
	return v
}

// pbkdf2PHC rewrites i=<iterations>,l=<length>$<salt>$<hash> (unpadded
// base64) as PBKDF2$sha512$<iterations>$<salt>$<hash>.
func (g *goauthSchema) pbkdf2PHC(rest string) (string, bool) {
	p := strings.Split(rest, "$")
	if len(p) != 3 {
		return "", false
	}
	iter, keyLen := "", -1
	for _, kv := range strings.Split(p[0], ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "i":
			iter = v
		case "l":
			keyLen, _ = strconv.Atoi(v)
		default:
			return "", false
		}
	}
	salt := []byte(p[1])
	if !g.utf8Salt {
		var err error
		if salt, err = base64.RawStdEncoding.DecodeString(p[1]); err != nil {
			return "", false
		}
	}
	key, err := base64.RawStdEncoding.DecodeString(p[2])
	if err != nil || len(key) != keyLen {
		return "", false
	}
	b64 := base64.StdEncoding.EncodeToString
	return "PBKDF2$sha512$" + iter + "$" + b64(salt) + "$" + b64(key), true
}

// Watched: every key (a user's password is a key named as the user).
func (g *goauthSchema) Watched() []WatchedKey { return []WatchedKey{{Key: "", Prefix: true}} }

// Changes maps a written key to the user whose key it is: <name>:su and
// <name>:<kind>acls to name (and to a user named so, whose password key
// it would be), common:<kind>acls to every session, anything else to the
// user of that name.
func (g *goauthSchema) Changes(key string) []policy.Change {
	for _, suffix := range append([]string{"su"}, goauthKinds...) {
		name, ok := strings.CutSuffix(key, ":"+suffix)
		switch {
		case !ok:
			continue
		case name == goauthCommon && suffix != "su":
			return []policy.Change{EverySession}
		case name != "":
			return []policy.Change{{Username: name}, {Username: key}}
		}
	}
	return []policy.Change{{Username: key}}
}
