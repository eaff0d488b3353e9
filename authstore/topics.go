package authstore

import (
	"strconv"
	"strings"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// compileTopics compiles the topic rules of a user's record for req: the
// patterns of the user's hash, of the default role and of the roles it
// names. It returns the role names a change to which must decide the
// session again (the named ones, existing or not; the default role
// concerns everyone).
//
// Compiled rules are kept, keyed by everything they are made of (the
// rules' text with their sources, the user name, and the client id when a
// pattern uses %c), so a device connecting again, or the sessions of a
// user whose rules do not name the client id, share one compiled value
// (read-only once made) instead of compiling 2 x N patterns per CONNECT.
// A changed rule is another key: nothing is ever served stale.
func (s *Store) compileTopics(rec userRecord, req policy.Request) (*policy.TopicRules, []string, error) {
	roles := rules.RoleNames(rec.fields[rules.FieldRoles])
	key, ok := compiledKey(rec, req)
	if ok {
		if t, hit := s.compiled.Get(key); hit {
			return t, roles, nil
		}
	}
	var pub, sub []policy.Pattern
	add := func(dst []policy.Pattern, field, source string) []policy.Pattern {
		for _, f := range strings.Fields(field) {
			dst = append(dst, policy.Pattern{Filter: f, Source: source})
		}
		return dst
	}
	pub = add(pub, rec.fields[rules.FieldPublish], "user")
	sub = add(sub, rec.fields[rules.FieldSubscribe], "user")
	for _, r := range rec.roles {
		pub = add(pub, r.fields[rules.FieldPublish], "role "+r.name)
		sub = add(sub, r.fields[rules.FieldSubscribe], "role "+r.name)
	}
	t, err := policy.CompileTopics(pub, sub, req.Username, req.ClientID)
	if err != nil {
		return nil, nil, err
	}
	if ok {
		s.compiled.Add(key, t)
	}
	return t, roles, nil
}

// compiledRulesCacheSize bounds the compiled rules kept; maxCompiledKey
// the size of what one is keyed by (past it, rules are compiled each
// time).
const (
	compiledRulesCacheSize = 4096
	maxCompiledKey         = 8 << 10
)

// roleGuessCacheSize bounds the users whose last role names are kept, so
// that their next decision reads their roles in its first round trip.
const roleGuessCacheSize = 65536

// compiledKey is everything compiled rules depend on, each part
// length-prefixed so that no two inputs give the same key.
func compiledKey(rec userRecord, req policy.Request) (string, bool) {
	parts := []string{rec.fields[rules.FieldPublish], rec.fields[rules.FieldSubscribe]}
	for _, r := range rec.roles {
		parts = append(parts, r.name, r.fields[rules.FieldPublish], r.fields[rules.FieldSubscribe])
	}
	clientID, size := "", len(req.Username)
	for _, p := range parts {
		if strings.Contains(p, "%c") {
			clientID = "c" + req.ClientID
		}
		size += len(p) + 8
	}
	if size += len(clientID); size > maxCompiledKey {
		return "", false
	}
	b := make([]byte, 0, size+16)
	for _, p := range append([]string{req.Username, clientID}, parts...) {
		b = strconv.AppendInt(b, int64(len(p)), 10)
		b = append(b, ':')
		b = append(b, p...)
	}
	return string(b), true
}
