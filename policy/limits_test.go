package policy

import (
	"errors"
	"strings"
	"testing"
)

// TestMergeLimits: the user's own value wins, else the first of its roles
// that sets it (in roles order), else the default role; an empty field
// sets nothing; a field that does not parse, in any layer, is a malformed
// rule naming the field and where it was.
func TestMergeLimits(t *testing.T) {
	user := LimitLayer{Source: "user", Fields: map[string]string{"pub_rate": "20", "max_qos": " ", "password": "x"}}
	ops := LimitLayer{Source: "role ops", Fields: map[string]string{"pub_rate": "5", "max_qos": "1", "retain": "false"}}
	fleet := LimitLayer{Source: "role fleet", Fields: map[string]string{"max_qos": "0", "max_subs": "10"}}
	def := LimitLayer{Source: "role default", Fields: map[string]string{"max_subs": "100", "max_keepalive": "600", "max_sessions": "3"}}
	ls, err := MergeLimits(user, ops, fleet, def)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		l      Limit
		v      int64
		source string
	}{
		{PubRate, 20, "user"}, {MaxQoS, 1, "role ops"}, {Retain, 0, "role ops"}, {MaxSubs, 10, "role fleet"},
		{MaxKeepAlive, 600, "role default"}, {MaxSessions, 3, "role default"},
	} {
		if v, ok := ls.Get(c.l); !ok || v != c.v || ls.Source(c.l) != c.source {
			t.Errorf("%s = %d (%v) from %q, want %d from %q", c.l, v, ok, ls.Source(c.l), c.v, c.source)
		}
	}
	if _, ok := ls.Get(PubBytes); ok || ls.RetainAllowed() {
		t.Errorf("pub_bytes set or retain allowed: %s", ls)
	}
	if got := ls.String(); !strings.Contains(got, "pub_rate=20 (user)") || !strings.Contains(got, "retain=false (role ops)") {
		t.Errorf("String() = %q", got)
	}
	if ls, err := MergeLimits(LimitLayer{Source: "user", Fields: map[string]string{"publish": "#"}}); ls != nil || err != nil || !ls.Empty() || !ls.RetainAllowed() {
		t.Errorf("no limits: %v %v", ls, err)
	}
	_, err = MergeLimits(user, LimitLayer{Source: "role bad", Fields: map[string]string{"max_qos": "3", "pub_rate": "fast"}})
	if !errors.Is(err, ErrMalformedRule) || !strings.Contains(err.Error(), "role bad: malformed rule: max_qos \"3\"") || !strings.Contains(err.Error(), "pub_rate \"fast\"") {
		t.Errorf("malformed limits: %v", err)
	}
}

// TestParseLimit: each limit's range and form, and an error naming the
// field.
func TestParseLimit(t *testing.T) {
	for _, c := range []struct {
		l    Limit
		v    string
		want int64
		ok   bool
	}{
		{PubRate, "1", 1, true}, {PubRate, "0", 0, false}, {PubRate, "-1", 0, false}, {PubRate, "2.5", 0, false},
		{PubBytes, "1048576", 1048576, true}, {MaxPayload, "0", 0, true}, {MaxPayload, "268435456", 0, false},
		{MaxQoS, "2", 2, true}, {MaxQoS, "3", 0, false}, {Retain, "true", 1, true}, {Retain, "False", 0, true},
		{Retain, "no", 0, false}, {MaxSubs, "0", 0, true}, {MaxSessions, " 7 ", 7, true},
		{MaxKeepAlive, "0", 0, false}, {MaxKeepAlive, "65535", 65535, true}, {MaxKeepAlive, "65536", 0, false},
	} {
		v, err := ParseLimit(c.l, c.v)
		if (err == nil) != c.ok || c.ok && v != c.want {
			t.Errorf("ParseLimit(%s, %q) = %d, %v", c.l, c.v, v, err)
		}
		if err != nil && (!errors.Is(err, ErrMalformedRule) || !strings.Contains(err.Error(), c.l.String())) {
			t.Errorf("ParseLimit(%s, %q): %v does not name the field", c.l, c.v, err)
		}
	}
	if l, ok := LimitNamed("max_keepalive"); !ok || l != MaxKeepAlive {
		t.Error("LimitNamed(max_keepalive)")
	}
	if _, ok := LimitNamed("publish"); ok {
		t.Error("publish is a limit")
	}
}

// FuzzParseLimit: no value of a limit field panics, and one that parses
// writes back as itself (up to white space, case and retain's spellings).
func FuzzParseLimit(f *testing.F) {
	for _, s := range []string{"20", "0", "-1", "true", "FALSE", "1e3", "0x10", " 5 ", "99999999999999999999", "\x00"} {
		f.Add(uint8(0), s)
		f.Add(uint8(Retain), s)
	}
	f.Fuzz(func(t *testing.T, l uint8, v string) {
		lim := Limit(l % uint8(NumLimits))
		n, err := ParseLimit(lim, v)
		if err != nil {
			return
		}
		again, err := ParseLimit(lim, FormatLimit(lim, n))
		if err != nil || again != n {
			t.Fatalf("%s %q parsed as %d, written %q, read back %d %v", lim, v, n, FormatLimit(lim, n), again, err)
		}
	})
}

// TestConditions: a grant with a qos or retain condition lets through
// what it names; another grant of the same topic may let through the
// rest; rules without conditions judge as before.
func TestConditions(t *testing.T) {
	r, err := CompileExpanded([]Expanded{
		{Pattern: Pattern{Filter: "t/#"}, As: "t/#", Cond: Condition{QoS: 1 | 2, Retain: RetainNever}},
		{Pattern: Pattern{Filter: "t/r"}, As: "t/r", Cond: Condition{Retain: RetainOnly}},
	}, []Expanded{
		{Pattern: Pattern{Filter: "s/#"}, As: "s/#", Cond: Condition{QoS: 2}},
		{Pattern: Pattern{Filter: "s/any"}, As: "s/any"},
	})
	if err != nil || !r.Conditional() {
		t.Fatal(err)
	}
	for _, c := range []struct {
		topic  string
		qos    byte
		retain bool
		want   bool
	}{
		{"t/x", 0, false, true}, {"t/x", 1, false, true}, {"t/x", 2, false, false}, {"t/x", 0, true, false},
		{"t/r", 2, true, true}, {"t/r", 2, false, false}, {"u/x", 0, false, false},
	} {
		if _, ok := r.CanPublishAs(c.topic, c.qos, c.retain); ok != c.want {
			t.Errorf("publish %s qos %d retain %v: %v, want %v", c.topic, c.qos, c.retain, ok, c.want)
		}
	}
	for _, c := range []struct {
		filter string
		qos    byte
		want   bool
	}{{"s/x", 1, true}, {"s/x", 0, false}, {"s/x", 2, false}, {"s/any", 2, true}, {"$share/g/s/x", 1, true}, {"x", 1, false}} {
		if _, ok := r.CanSubscribeAs(c.filter, c.qos); ok != c.want {
			t.Errorf("subscribe %s qos %d: %v, want %v", c.filter, c.qos, ok, c.want)
		}
	}
	plain, _ := CompileTopics([]Pattern{{Filter: "a/#"}}, []Pattern{{Filter: "a/#"}}, "u", "c")
	if plain.Conditional() || second(plain.CanPublishAs("a/b", 2, true)) != true || second(plain.CanSubscribeAs("a/b", 2)) != true {
		t.Error("rules without conditions judge by topic alone")
	}
	if got := (Condition{QoS: 1 | 2, Retain: RetainNever}).String(); got != "qos 0,1 and retain false" {
		t.Errorf("Condition.String() = %q", got)
	}
}

func second[A, B any](_ A, b B) B { return b }
