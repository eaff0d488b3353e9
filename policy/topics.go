package policy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// Topic rules: which topics a user may publish to and which filters it may
// subscribe to, compiled once per decision from the patterns of the user,
// its roles and the default role. Matching follows MQTT's topic semantics
// [MQTT-4.7]: '/' separates levels, '+' matches one whole level, '#' (last)
// matches the parent level and any number below it, and a filter that
// starts with a wildcard matches no topic that starts with '$'
// [MQTT-4.7.2-1]. Everything here is pure: topic in, verdict out.

// Access says what a topic rule grants.
type Access int

// Accesses.
const (
	Publish Access = iota
	Subscribe
)

func (a Access) String() string {
	if a == Publish {
		return "publish"
	}
	return "subscribe"
}

// Pattern is one topic filter as an operator wrote it, with where it came
// from ("user", "role ops", "role default"). %u and %c, each filling a
// whole level, stand for the user name and the client id.
type Pattern struct {
	Filter string
	Source string
}

// Expanded is a pattern whose placeholders a reader of another schema
// has filled in itself (EMQX's ${username}, mosquitto-go-auth's %u
// anywhere in a level), under the same rule as %u and %c: a name holding
// '+', '#' or '/' fills nothing (the reader leaves such a pattern out).
// Pattern.Filter is the rule as the operator wrote it.
type Expanded struct {
	Pattern
	// As is the filter to match; %u and %c in it are plain text.
	As string
	// Exact: the grant matches its own filter only, character for
	// character, wildcards taken literally (EMQX's "eq t/#" rules).
	Exact bool
	// Cond limits what the grant allows (EMQX's qos and retain
	// conditions); the zero Cond allows everything.
	Cond Condition
}

// Grant is a compiled pattern: its filter with %u and %c filled in.
type Grant struct {
	Pattern
	levels []string
	exact  string // the whole filter of an Exact grant, "" otherwise
	// Cond limits what the grant allows; the zero Cond allows everything.
	Cond Condition
}

// Filter is the grant's filter after substitution.
func (g Grant) String() string { return strings.Join(g.levels, "/") }

// TopicRules are a user's compiled publish and subscribe grants. The zero
// value grants nothing (deny by default).
type TopicRules struct {
	publish, subscribe []Grant
	// pub and recv index the grants a topic name is matched against:
	// the publish grants, and the subscribe grants for deliveries.
	pub, recv topicIndex
	// All grants everything (a superuser of another schema).
	All bool
	// conditional: some grant has a Condition (see conditions.go).
	conditional bool
	// Dropped are the patterns that match nothing for this session: %u or
	// %c filled with a name holding '+', '#' or '/' (a name never injects
	// a wildcard), or %c with an empty client id.
	Dropped []Pattern
}

// CheckPattern reports whether a pattern is a well-formed topic filter in
// which %u and %c fill whole levels.
func CheckPattern(filter string) error { return checkFilter(filter, true) }

// CheckFilter reports whether filter is a well-formed topic filter, %u and
// %c being plain text (an Expanded pattern's As).
func CheckFilter(filter string) error { return checkFilter(filter, false) }

// checkFilter checks a topic filter with packets' rules (the MQTT syntax,
// $share/<name>/<filter> included); with placeholders, %u and %c must also
// fill whole levels.
func checkFilter(filter string, placeholders bool) error {
	var pe *packets.Error // ValidateFilter's errors are all *packets.Error
	if err := packets.ValidateFilter(filter); errors.As(err, &pe) {
		return fmt.Errorf("%w: %s", ErrMalformedRule, pe.Msg)
	}
	if !placeholders {
		return nil
	}
	for _, l := range strings.Split(filter, "/") {
		if l != "%u" && l != "%c" && (strings.Contains(l, "%u") || strings.Contains(l, "%c")) {
			return fmt.Errorf("%w: topic filter %q: %%u and %%c must fill a whole level", ErrMalformedRule, filter)
		}
	}
	return nil
}

// CompileTopics fills %u and %c of the publish and subscribe patterns with
// username and clientID. A malformed pattern is an error wrapping
// ErrMalformedRule (it never allows); a pattern whose name would hold a
// wildcard or a level separator is dropped: it matches nothing.
func CompileTopics(publish, subscribe []Pattern, username, clientID string) (*TopicRules, error) {
	r := &TopicRules{}
	var err error
	if r.publish, err = r.compile(publish, username, clientID); err != nil {
		return nil, err
	}
	if r.subscribe, err = r.compile(subscribe, username, clientID); err != nil {
		return nil, err
	}
	r.index()
	return r, nil
}

// CompileExpanded compiles patterns another schema's reader has expanded;
// a malformed filter is an error wrapping ErrMalformedRule.
func CompileExpanded(publish, subscribe []Expanded) (*TopicRules, error) {
	r := &TopicRules{}
	var err error
	if r.publish, err = compileExpanded(publish); err != nil {
		return nil, err
	}
	if r.subscribe, err = compileExpanded(subscribe); err != nil {
		return nil, err
	}
	r.index()
	return r, nil
}

func compileExpanded(es []Expanded) ([]Grant, error) {
	out := make([]Grant, 0, len(es))
	for _, e := range es {
		if err := checkFilter(e.As, false); err != nil {
			return nil, fmt.Errorf("%s: %w", e.Source, err)
		}
		g := Grant{Pattern: e.Pattern, levels: strings.Split(e.As, "/"), Cond: e.Cond}
		if e.Exact {
			g.exact = e.As
		}
		out = append(out, g)
	}
	return out, nil
}

// index lists the grants a topic name is matched against by first level.
func (r *TopicRules) index() {
	r.conditional = hasConditions(r.publish) || hasConditions(r.subscribe)
	r.pub = newTopicIndex(r.publish, func(g *Grant) []string { return g.levels }, true)
	r.recv = newTopicIndex(r.subscribe, func(g *Grant) []string { return g.levels }, false)
}

// topicIndex matches topic names against grants' filters, trying only the
// grants whose first level can match the topic's, in the order the
// grants were given: the first that matches decides.
type topicIndex struct {
	grants []Grant
	levels [][]string       // each grant's filter, as matched
	exact  []bool           // matched character for character (publish to an exact grant)
	lit    map[string][]int // by first level
	wild   []int            // grants starting with a wildcard
}

func newTopicIndex(gs []Grant, levels func(*Grant) []string, exact bool) topicIndex {
	x := topicIndex{grants: gs, levels: make([][]string, len(gs)), exact: make([]bool, len(gs)), lit: map[string][]int{}}
	for i := range gs {
		x.levels[i] = levels(&gs[i])
		x.exact[i] = exact && gs[i].exact != ""
		if first := x.levels[i][0]; first == "+" || first == "#" {
			x.wild = append(x.wild, i)
		} else {
			x.lit[first] = append(x.lit[first], i)
		}
	}
	return x
}

// match returns the first grant that matches topic.
func (x *topicIndex) match(topic string) (Grant, bool) { return x.matchWhere(topic, nil) }

// matchWhere returns the first grant that matches topic and, when allows
// is set, that it allows.
func (x *topicIndex) matchWhere(topic string, allows func(*Grant) bool) (Grant, bool) {
	first, _, _ := strings.Cut(topic, "/")
	lit, wild := x.lit[first], x.wild
	for len(lit) > 0 || len(wild) > 0 {
		var i int
		if len(wild) == 0 || len(lit) > 0 && lit[0] < wild[0] {
			i, lit = lit[0], lit[1:]
		} else {
			i, wild = wild[0], wild[1:]
		}
		if (x.exact[i] && topic == x.grants[i].exact || !x.exact[i] && matchLevels(x.levels[i], topic)) &&
			(allows == nil || allows(&x.grants[i])) {
			return x.grants[i], true
		}
	}
	return Grant{}, false
}

func (r *TopicRules) compile(ps []Pattern, username, clientID string) ([]Grant, error) {
	out := make([]Grant, 0, len(ps))
next:
	for _, p := range ps {
		if err := CheckPattern(p.Filter); err != nil {
			return nil, fmt.Errorf("%s: %w", p.Source, err)
		}
		levels := strings.Split(p.Filter, "/")
		for i, l := range levels {
			name, ok := "", false
			switch l {
			case "%u":
				name, ok = username, true
			case "%c":
				name, ok = clientID, true
			}
			if !ok {
				continue
			}
			if name == "" || strings.ContainsAny(name, "+#/") {
				r.Dropped = append(r.Dropped, p)
				continue next
			}
			if i == 0 {
				levels = append([]string(nil), levels...)
			}
			levels[i] = name
		}
		out = append(out, Grant{Pattern: p, levels: levels})
	}
	return out, nil
}

// Grants returns the compiled grants for one access.
func (r *TopicRules) Grants(a Access) []Grant {
	if a == Publish {
		return r.publish
	}
	return r.subscribe
}

// CanPublish reports whether topic, a topic name, may be published to, and
// the grant that allows it.
func (r *TopicRules) CanPublish(topic string) (Grant, bool) {
	if r.All {
		return Grant{Pattern: Pattern{Filter: "#", Source: "superuser"}}, true
	}
	return r.pub.match(topic)
}

// CanReceive reports whether a PUBLISH the broker delivers on topic, a
// topic name, may reach the device, and the grant that allows it: one
// of the subscribe grants must match the topic (an exact grant by its
// filter as a filter, since subscribing to it delivers what it matches;
// a grant starting with $share, which covers no subscription, matches no
// delivery either). It judges a delivery whatever subscription brought
// it: one the broker restored from a persistent session, a shared one,
// one in flight while the rules changed. Whatever CanSubscribe allows,
// CanReceive lets through: a filter covered by a grant matches only
// topics the grant matches.
func (r *TopicRules) CanReceive(topic string) (Grant, bool) {
	if r.All {
		return Grant{Pattern: Pattern{Filter: "#", Source: "superuser"}}, true
	}
	return r.recv.match(topic)
}

// CanSubscribe reports whether filter may be subscribed to: one grant must
// cover it, matching every topic the filter can match. A shared
// subscription $share/<group>/<filter> (packets.SplitShared) is judged by
// its filter.
func (r *TopicRules) CanSubscribe(filter string) (Grant, bool) {
	if r.All {
		return Grant{Pattern: Pattern{Filter: "#", Source: "superuser"}}, true
	}
	if _, f, ok := packets.SplitShared(filter); ok {
		filter = f
	}
	levels := strings.Split(filter, "/")
	for _, g := range r.subscribe {
		if g.exact != "" && filter == g.exact || g.exact == "" && covers(g.levels, levels) {
			return g, true
		}
	}
	return Grant{}, false
}

// Matches reports whether topic, a topic name, matches filter [MQTT-4.7].
func Matches(filter, topic string) bool { return matchLevels(strings.Split(filter, "/"), topic) }

// matchLevels matches a topic name against a filter's levels without
// allocating.
func matchLevels(f []string, topic string) bool {
	if len(f) > 0 && (f[0] == "+" || f[0] == "#") && strings.HasPrefix(topic, "$") {
		return false // [MQTT-4.7.2-1]
	}
	rest, more := topic, true
	for _, l := range f {
		if l == "#" {
			return true // the parent level and anything below [MQTT-4.7.1-2]
		}
		if !more {
			return false // the topic has fewer levels
		}
		var level string
		level, rest, more = strings.Cut(rest, "/")
		if l != "+" && l != level {
			return false
		}
	}
	return !more
}

// Covers reports whether every topic filter f can match is matched by g.
func Covers(g, f string) bool { return covers(strings.Split(g, "/"), strings.Split(f, "/")) }

// covers: g covers f when every topic matching f matches g.
func covers(g, f []string) bool {
	// A filter starting with a wildcard matches no $-topic: g cannot cover
	// an f whose first level is a literal $-level.
	if len(g) > 0 && len(f) > 0 && (g[0] == "+" || g[0] == "#") && f[0] != "+" && f[0] != "#" && strings.HasPrefix(f[0], "$") {
		return false
	}
	i := 0
	for ; i < len(g); i++ {
		if g[i] == "#" {
			return true // any remainder of f, the parent level included
		}
		if i == len(f) || f[i] == "#" {
			return false // f matches topics that end here, or go deeper, where g cannot
		}
		if g[i] != "+" && (f[i] == "+" || f[i] != g[i]) {
			return false
		}
	}
	return i == len(f)
}

// Intersect returns the filter that matches exactly the topics both a and
// b match, when there is such a topic: where one has '#' the other's
// remainder, where one has '+' the other's level, equal levels as they
// are. A filter starting with a wildcard matches no '$'-topic
// [MQTT-4.7.2-1], so it meets nothing of a filter starting with a
// '$'-level; and no topic is empty [MQTT-4.7.3-1] ("+" and "/#" meet in
// none).
func Intersect(a, b string) (string, bool) {
	x, ok := intersect(a, b)
	return x, ok && x != ""
}

func intersect(a, b string) (string, bool) {
	fa, fb := strings.Split(a, "/"), strings.Split(b, "/")
	wild := func(l string) bool { return l == "+" || l == "#" }
	if wild(fa[0]) && !wild(fb[0]) && strings.HasPrefix(fb[0], "$") || wild(fb[0]) && !wild(fa[0]) && strings.HasPrefix(fa[0], "$") {
		return "", false
	}
	out := make([]string, 0, max(len(fa), len(fb)))
	for i := 0; ; i++ {
		switch {
		case i < len(fa) && fa[i] == "#":
			return strings.Join(append(out, fb[i:]...), "/"), true
		case i < len(fb) && fb[i] == "#":
			return strings.Join(append(out, fa[i:]...), "/"), true
		case i == len(fa) && i == len(fb):
			return strings.Join(out, "/"), true
		case i == len(fa) || i == len(fb):
			return "", false // one ends here, the other goes deeper
		case fa[i] == "+":
			out = append(out, fb[i])
		case fb[i] == "+" || fa[i] == fb[i]:
			out = append(out, fa[i])
		default:
			return "", false
		}
	}
}
