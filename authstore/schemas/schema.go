// Package schemas reads users and their topic rules laid out in Redis as
// other products keep them (AUTHPROXY_SCHEMA): EMQX's Redis authenticator
// and authorizer (NewEMQX) and mosquitto-go-auth's Redis backend
// (NewGoAuth), each behind the Schema interface, in the native
// vocabulary the decision (authstore) reads.
package schemas

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/logsafe"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Schema reads users and their topic rules laid out in Redis as another
// product keeps them (AUTHPROXY_SCHEMA), and hands a decision what it
// needs in the native vocabulary: the user's fields (a password hash the
// passwords package reads; enabled, certs and the rest absent), its topic
// rules as expanded patterns with their sources, and whether it is a
// superuser. Its reads are queued on the pipeline that also reads the
// native keys every decision needs (bans and failed-attempt counts under
// the key prefix), so a CONNECT stays one round trip: on a standalone
// Redis or behind Sentinel one pipeline; on a Cluster the pipeline is
// split by node and the parts are sent in parallel, one round trip of
// latency. Make one with NewEMQX or NewGoAuth; a nil Schema in the
// store's options is the native layout, read by its Lua script.
type Schema interface {
	// Name is the schema's AUTHPROXY_SCHEMA value.
	Name() string
	// Queue queues on p the reads of req's user (with topics, of its
	// topic rules too); read, called once p has run, turns their replies
	// into the user.
	Queue(ctx context.Context, p redis.Pipeliner, req policy.Request, topics bool) (read func() (User, error))
	// Watched are the keys whose writes may change a decision: each a
	// prefix of keys (the empty prefix: every key) or one key.
	Watched() []WatchedKey
	// Changes are what a write to key means for live sessions.
	Changes(key string) []policy.Change
	// NotifyFlags are the notify-keyspace-events classes its keys' writes
	// need (K and the classes of the commands that write them).
	NotifyFlags() string
	// Dummy is a stored hash of the layout's usual shape, for the
	// unknown-user path until the store has read a real one.
	Dummy() string
}

// WatchedKey is a key, or with Prefix every key that starts with it.
type WatchedKey struct {
	Key    string
	Prefix bool
}

// EverySession is what a write to a key every user's decision reads (a
// shared rule set, a key template that does not name the user) means:
// every live session is decided again, as for the default role.
var EverySession = policy.Change{Role: rules.DefaultRole}

// User is a user as another schema keeps it, in the native vocabulary.
type User struct {
	// Fields are the user's hash as the native schema has it: no entry at
	// all for a user that does not exist; rules.FieldPassword, when the
	// user has a password, in a form the passwords package reads.
	Fields map[string]string
	// Where names the user's keys, for explain ("mqtt_user:alice").
	Where string
	// Superuser passes every topic rule; SuperuserWhy says why it does or
	// does not, for explain.
	Superuser    bool
	SuperuserWhy string
	// Publish and Subscribe are the topic rules, their placeholders
	// filled in for the request.
	Publish, Subscribe []policy.Expanded
	// RulesFrom names the keys the rules were read from; Skipped are the
	// rules read that grant nothing, each with why.
	RulesFrom string
	Skipped   []string
}

// Topics compiles the user's topic rules; a superuser's pass everything.
// It reports them to an explanation.
func (u *User) Topics(e *policy.Explanation) (*policy.TopicRules, error) {
	t, err := policy.CompileExpanded(u.Publish, u.Subscribe)
	if err != nil {
		return nil, err
	}
	t.All = u.Superuser
	if u.Superuser {
		e.Add("superuser", policy.Pass, u.SuperuserWhy+": every topic rule passes")
	} else {
		e.Add("superuser", policy.NotApplied, u.SuperuserWhy)
	}
	if e != nil {
		detail := fmt.Sprintf("%d publish and %d subscribe rules from %s", len(u.Publish), len(u.Subscribe), u.RulesFrom)
		if c := u.conditions(); len(c) > 0 {
			detail += fmt.Sprintf("; %d with conditions: %s", len(c), strings.Join(c, "; "))
		}
		if len(u.Skipped) > 0 {
			detail += fmt.Sprintf("; %d granting nothing: %s", len(u.Skipped), strings.Join(u.Skipped, "; "))
		}
		e.Add("topic rules", policy.Pass, detail)
	}
	return t, nil
}

// conditions describe the rules whose grants carry a condition, for
// explain: "t/2 subscribe at most qos 1,2".
func (u *User) conditions() []string {
	var out []string
	for _, g := range []struct {
		what string
		xs   []policy.Expanded
	}{{"publish", u.Publish}, {"subscribe", u.Subscribe}} {
		for _, x := range g.xs {
			if !x.Cond.Unconditional() {
				out = append(out, fmt.Sprintf("%s %s only with %s", logsafe.String(x.Filter), g.what, x.Cond))
			}
		}
	}
	return out
}

// Distinct leaves out the watched keys another one's prefix already
// covers, so that no write is delivered twice.
func Distinct(ws []WatchedKey) []WatchedKey {
	var out []WatchedKey
	for i, w := range ws {
		covered := false
		for j, o := range ws {
			same := o.Key == w.Key && o.Prefix == w.Prefix
			if i != j && (same && j < i || !same && o.Prefix && strings.HasPrefix(w.Key, o.Key)) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, w)
		}
	}
	return out
}

// OptionError is a schema option that cannot be used; Option is the
// name of its field in the options (EMQXOptions.AuthnCmd: "AuthnCmd").
type OptionError struct {
	Option string
	Msg    string
}

func (e *OptionError) Error() string { return e.Option + ": " + e.Msg }

// replyErr is a reply's error that is a failure to read: not a missing
// key, not a key of another type (which the schemas read as absent).
func replyErr(err error) error {
	if err == nil || errors.Is(err, redis.Nil) || redis.HasErrorPrefix(err, "WRONGTYPE") {
		return nil
	}
	return err
}

// wrongType reports whether err is a key of another type than the
// command reads.
func wrongType(err error) bool { return err != nil && redis.HasErrorPrefix(err, "WRONGTYPE") }

// nameFills reports whether a name may fill a placeholder of a topic
// rule: not empty, no wildcard, no level separator (no name injects a
// wildcard).
func nameFills(v string) bool { return v != "" && !strings.ContainsAny(v, "+#/") }

// describeName says why a name fills no placeholder.
func describeName(v string) string {
	if v == "" {
		return "empty"
	}
	return logsafe.String(v) + ", which holds '+', '#' or '/'"
}
