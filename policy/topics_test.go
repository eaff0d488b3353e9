package policy

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// bruteMatch is the spec's matching, written the obvious way on split
// levels, to check the fast matcher against.
func bruteMatch(filter, topic string) bool {
	f, t := strings.Split(filter, "/"), strings.Split(topic, "/")
	if strings.HasPrefix(topic, "$") && (f[0] == "+" || f[0] == "#") {
		return false
	}
	for i, l := range f {
		if l == "#" {
			return true
		}
		if i >= len(t) {
			return false
		}
		if l != "+" && l != t[i] {
			return false
		}
	}
	return len(f) == len(t)
}

func TestMatches(t *testing.T) {
	for _, c := range []struct {
		filter, topic string
		want          bool
	}{
		{"sport/tennis/player1/#", "sport/tennis/player1", true}, // [MQTT-4.7.1-2] the parent level
		{"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
		{"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
		{"sport/#", "sport", true},
		{"sport/tennis/+", "sport/tennis/player1", true},
		{"sport/tennis/+", "sport/tennis/player1/ranking", false},
		{"sport/+", "sport", false},
		{"sport/+", "sport/", true},
		{"+/+", "/finance", true},
		{"/+", "/finance", true},
		{"+", "/finance", false},
		{"#", "$SYS/uptime", false}, // [MQTT-4.7.2-1]
		{"+/monitor/Clients", "$SYS/monitor/Clients", false},
		{"$SYS/#", "$SYS/monitor/Clients", true},
		{"$SYS/monitor/+", "$SYS/monitor/Clients", true},
		{"a//b", "a//b", true},
		{"a/+/b", "a//b", true},
	} {
		if got := Matches(c.filter, c.topic); got != c.want {
			t.Errorf("Matches(%q, %q) = %v, want %v", c.filter, c.topic, got, c.want)
		}
		if got := bruteMatch(c.filter, c.topic); got != c.want {
			t.Errorf("the brute-force matcher disagrees on %q %q", c.filter, c.topic)
		}
	}
}

func TestCovers(t *testing.T) {
	for _, c := range []struct {
		granted, requested string
		want               bool
	}{
		{"sensors/alice/#", "sensors/alice/+", true},
		{"sensors/alice/#", "sensors/+/temp", false},
		{"sensors/alice/#", "sensors/alice", true},
		{"sensors/alice/#", "sensors/alice/#", true},
		{"sensors/alice/+", "sensors/alice/#", false},
		{"sensors/alice/+", "sensors/alice/t", true},
		{"#", "#", true},
		{"#", "$SYS/#", false}, // # covers no $-topic
		{"+/#", "$SYS/x", false},
		{"$SYS/#", "$SYS/x/+", true},
		{"+/+", "a/+", true},
		{"a/+", "+/+", false},
		{"+", "#", false},
		{"a/b", "a/b/#", false},
		{"a/b/#", "a/b/c/#", true},
	} {
		if got := Covers(c.granted, c.requested); got != c.want {
			t.Errorf("Covers(%q, %q) = %v, want %v", c.granted, c.requested, got, c.want)
		}
	}
}

// randomFilter makes a filter from a small alphabet of levels, so that
// overlaps are frequent; withWildcards false makes a topic name.
func randomFilter(r *rand.Rand, withWildcards bool) string {
	alphabet := []string{"a", "b", "$s", ""}
	n := 1 + r.IntN(4)
	levels := make([]string, n)
	for i := range levels {
		switch x := r.IntN(8); {
		case withWildcards && x == 0:
			levels[i] = "+"
		case withWildcards && x == 1 && i == n-1:
			levels[i] = "#"
		default:
			levels[i] = alphabet[r.IntN(len(alphabet))]
		}
	}
	return strings.Join(levels, "/")
}

// allTopics enumerates every topic name of up to 5 levels over the
// alphabet (plus one level outside it, "z"): enough to witness every
// difference between filters of up to 4 levels.
func allTopics() []string {
	alphabet := []string{"a", "b", "$s", "", "z"}
	out := []string{}
	var walk func(prefix []string)
	walk = func(prefix []string) {
		if len(prefix) > 0 {
			out = append(out, strings.Join(prefix, "/"))
		}
		if len(prefix) == 5 {
			return
		}
		for _, l := range alphabet {
			walk(append(prefix, l))
		}
	}
	walk(nil)
	return out
}

// TestCoversAgainstBruteForce is the property: Covers(g, f) holds exactly
// when every generated topic matching f matches g (within the generated
// topics, which include a witness for every difference of such short
// filters), and Matches agrees with the brute-force matcher.
func TestCoversAgainstBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	topics := allTopics()
	for range 3000 {
		g, f := randomFilter(r, true), randomFilter(r, true)
		brute := true
		for _, topic := range topics {
			mf, mg := Matches(f, topic), Matches(g, topic)
			if mf != bruteMatch(f, topic) || mg != bruteMatch(g, topic) {
				t.Fatalf("Matches disagrees with the brute-force matcher on %q / %q / %q", f, g, topic)
			}
			if mf && !mg {
				brute = false
				break
			}
		}
		if got := Covers(g, f); got != brute {
			t.Fatalf("Covers(%q, %q) = %v, but the generated topics say %v", g, f, got, brute)
		}
	}
}

// TestCanReceiveAgainstBruteForce: a delivered topic passes exactly when
// one subscribe grant matches it, and every topic a covered filter can
// match passes (what a device may subscribe to, it may receive).
func TestCanReceiveAgainstBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	topics := allTopics()
	for range 500 {
		var grants []Pattern
		for len(grants) < 3 {
			if g := randomFilter(r, true); CheckPattern(g) == nil {
				grants = append(grants, Pattern{Filter: g, Source: "user"})
			}
		}
		rules, err := CompileTopics(nil, grants, "u", "c")
		if err != nil {
			t.Fatal(err)
		}
		for _, topic := range topics {
			want := false
			for _, g := range grants {
				want = want || bruteMatch(g.Filter, topic)
			}
			if _, got := rules.CanReceive(topic); got != want {
				t.Fatalf("grants %v: CanReceive(%q) = %v, want %v", grants, topic, got, want)
			}
		}
		f := randomFilter(r, true)
		if _, ok := rules.CanSubscribe(f); ok {
			for _, topic := range topics {
				if _, recv := rules.CanReceive(topic); bruteMatch(f, topic) && !recv {
					t.Fatalf("grants %v allow subscribing to %q but not receiving %q", grants, f, topic)
				}
			}
		}
	}
}

func FuzzCovers(f *testing.F) {
	f.Add("sensors/alice/#", "sensors/+/temp", "sensors/alice/temp")
	f.Add("#", "$SYS/#", "$SYS/x")
	f.Fuzz(func(t *testing.T, g, fl, topic string) {
		if CheckPattern(g) != nil || CheckPattern(fl) != nil || strings.ContainsAny(topic, "+#") {
			return
		}
		if Covers(g, fl) && Matches(fl, topic) && !Matches(g, topic) {
			t.Fatalf("%q covers %q, but %q matches only the latter", g, fl, topic)
		}
		if Matches(g, topic) != bruteMatch(g, topic) {
			t.Fatalf("Matches(%q, %q) disagrees with the brute-force matcher", g, topic)
		}
	})
}

func TestCompileTopics(t *testing.T) {
	pub := []Pattern{{"devices/%u/#", "user"}, {"fleet/%c/status", "role ops"}, {"public/#", "role default"}}
	sub := []Pattern{{"devices/%u/#", "user"}, {"$share/g/jobs/#", "user"}}
	r, err := CompileTopics(pub, sub, "alice", "alice-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		topic string
		want  string // the source of the grant, "" for none
	}{
		{"devices/alice/cmd", "user"},
		{"devices/alice", "user"},
		{"devices/bob/cmd", ""},
		{"fleet/alice-1/status", "role ops"},
		{"fleet/alice-2/status", ""},
		{"public/x", "role default"},
		{"$SYS/x", ""},
	} {
		g, ok := r.CanPublish(c.topic)
		if ok != (c.want != "") || ok && g.Source != c.want {
			t.Errorf("CanPublish(%q) = %v %v, want %q", c.topic, g, ok, c.want)
		}
	}
	for _, c := range []struct {
		filter string
		want   bool
	}{
		{"devices/alice/+", true},
		{"devices/alice/#", true},
		{"#", false},
		{"devices/+/cmd", false},
		{"$share/grp/devices/alice/x", true},
		{"$share/grp/devices/bob/x", false},
		{"$share/g/jobs/#", false},          // judged by its filter jobs/#, not granted
		{"$share/+/devices/alice/x", false}, // no share name: judged as a whole, which no grant covers
	} {
		if _, ok := r.CanSubscribe(c.filter); ok != c.want {
			t.Errorf("CanSubscribe(%q) = %v, want %v", c.filter, ok, c.want)
		}
	}
	for topic, want := range map[string]bool{"devices/alice/secret": true, "devices/alice": true, "devices/bob/x": false,
		"jobs/1": false, "$SYS/x": false} {
		if _, ok := r.CanReceive(topic); ok != want {
			t.Errorf("CanReceive(%q) = %v, want %v", topic, ok, want)
		}
	}
}

// TestNamesNeverInjectWildcards: a user name or client id holding '+',
// '#' or '/' makes the patterns it fills match nothing; the rest stand.
func TestNamesNeverInjectWildcards(t *testing.T) {
	for _, name := range []string{"+", "#", "a/b", "x+", "#y", "a/+/#"} {
		r, err := CompileTopics([]Pattern{{"devices/%u/#", "user"}, {"public/#", "role default"}},
			[]Pattern{{"devices/%u/#", "user"}}, name, name)
		if err != nil {
			t.Fatal(err)
		}
		for _, topic := range []string{"devices/a/b", "devices/x/y", "devices/" + name, "devices/anything/at/all"} {
			if strings.ContainsAny(topic, "+#") {
				continue
			}
			if g, ok := r.CanPublish(topic); ok && g.Source == "user" {
				t.Errorf("user %q may publish to %q", name, topic)
			}
		}
		if _, ok := r.CanSubscribe("devices/#"); ok {
			t.Errorf("user %q may subscribe to devices/#", name)
		}
		if _, ok := r.CanPublish("public/x"); !ok {
			t.Errorf("user %q lost the default role's grant", name)
		}
		if len(r.Dropped) != 2 {
			t.Errorf("user %q: %d dropped patterns, want 2", name, len(r.Dropped))
		}
	}
	// An empty client id (assigned by the broker) fills %c with nothing.
	r, _ := CompileTopics([]Pattern{{"c/%c", "user"}}, nil, "u", "")
	if _, ok := r.CanPublish("c/"); ok {
		t.Errorf("an empty client id matches c/%s", "%c")
	}
}

func TestCheckPattern(t *testing.T) {
	for _, bad := range []string{"", "a/#/b", "a+/b", "a/b#", "dev-%u/x", "x/%c-1", "a\x00b", "\xff"} {
		if err := CheckPattern(bad); !errors.Is(err, ErrMalformedRule) {
			t.Errorf("CheckPattern(%q) = %v, want ErrMalformedRule", bad, err)
		}
	}
	for _, good := range []string{"#", "+", "a/+/#", "%u/#", "a/%c", "$SYS/#", "a//b"} {
		if err := CheckPattern(good); err != nil {
			t.Errorf("CheckPattern(%q) = %v", good, err)
		}
	}
	// A share name holds no wildcard, is not empty, and is followed by a
	// filter [MQTT-4.8.2]: packets' syntax, the same as a SUBSCRIBE's.
	for _, bad := range []string{"$share/+/x", "$share/#", "$share/a#/x", "$share//x", "$share/g", "$share/g/a+"} {
		if err := CheckFilter(bad); !errors.Is(err, ErrMalformedRule) {
			t.Errorf("CheckFilter(%q) = %v, want ErrMalformedRule", bad, err)
		}
	}
	if err := CheckPattern("$share/g/%u/#"); err != nil {
		t.Errorf("a shared pattern: %v", err)
	}
	if err := CheckPattern("a/#/b"); err == nil || err.Error() != `malformed rule: topic filter "a/#/b": # must be the last level` {
		t.Errorf("CheckPattern(a/#/b) = %v", err)
	}
	if _, err := CompileTopics([]Pattern{{"ok/#", "user"}, {"bad/#/x", "role r"}}, nil, "u", "c"); !errors.Is(err, ErrMalformedRule) ||
		!strings.Contains(err.Error(), "role r") {
		t.Errorf("a malformed pattern compiled: %v", err)
	}
}

// BenchmarkCanPublish: a decision per PUBLISH on the relay's path, with 20
// rules per user; it must not allocate.
func BenchmarkCanPublish(b *testing.B) {
	var pub []Pattern
	for i := range 19 {
		pub = append(pub, Pattern{Filter: "fleet/" + string(rune('a'+i)) + "/%u/+/data", Source: "role fleet"})
	}
	pub = append(pub, Pattern{Filter: "devices/%u/#", Source: "user"})
	r, _ := CompileTopics(pub, nil, "alice", "alice-1")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := r.CanPublish("devices/alice/telemetry/temperature"); !ok {
			b.Fatal("denied")
		}
	}
}

// TestIntersectAgainstBruteForce is the property: Intersect(a, b) matches
// exactly the generated topics both a and b match, and says there is none
// exactly when no generated topic matches both.
func TestIntersectAgainstBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	topics := allTopics()
	met := 0
	for range 3000 {
		a, b := randomFilter(r, true), randomFilter(r, true)
		x, ok := Intersect(a, b)
		if ok {
			met++
			if err := CheckFilter(x); err != nil {
				t.Fatalf("Intersect(%q, %q) = %q: %v", a, b, x, err)
			}
		}
		for _, topic := range topics {
			if topic == "" {
				continue // no topic name is empty [MQTT-4.7.3-1]
			}
			both := Matches(a, topic) && Matches(b, topic)
			if both && !ok {
				t.Fatalf("Intersect(%q, %q) says none, but %q matches both", a, b, topic)
			}
			if ok && Matches(x, topic) != both {
				t.Fatalf("Intersect(%q, %q) = %q, which matches %q: %v; both: %v", a, b, x, topic, !both, both)
			}
		}
	}
	if met < 200 {
		t.Fatalf("only %d of 3000 pairs met: the generator tests too little", met)
	}
	for _, c := range []struct{ a, b, want string }{
		{"a/#", "a", "a"}, {"a/#", "+/b/#", "a/b/#"}, {"#", "$SYS/x", ""}, {"+/x", "$s/x", ""}, {"$s/#", "$s/+", "$s/+"}, {"a/b", "a/c", ""},
	} {
		if got, ok := Intersect(c.a, c.b); got != c.want || ok != (c.want != "") {
			t.Errorf("Intersect(%q, %q) = %q %v, want %q", c.a, c.b, got, ok, c.want)
		}
	}
}

// TestCompileExpanded: patterns another schema's reader expanded are
// matched as they are (%u is text), an Exact one only as itself, and a
// malformed one is an error naming its source.
func TestCompileExpanded(t *testing.T) {
	e := func(filter, as string, exact bool) Expanded {
		return Expanded{Pattern: Pattern{Filter: filter, Source: "mqtt_acl:alice"}, As: as, Exact: exact}
	}
	r, err := CompileExpanded(
		[]Expanded{e("users/${username}/#", "users/alice/#", false), e("lit/%u", "lit/%u", false), e("eq t/+", "t/+", true), e("eq p/q", "p/q", true)},
		[]Expanded{e("eq exact/#", "exact/#", true), e("dev-${username}/+", "dev-alice/+", false)})
	if err != nil {
		t.Fatal(err)
	}
	for topic, want := range map[string]bool{"users/alice/x": true, "users/bob/x": false, "lit/%u": true, "lit/alice": false, "t/x": false, "p/q": true, "p/q/r": false} {
		if g, ok := r.CanPublish(topic); ok != want || ok && g.Source != "mqtt_acl:alice" {
			t.Errorf("CanPublish(%q) = %+v %v, want %v", topic, g, ok, want)
		}
	}
	for filter, want := range map[string]bool{"exact/#": true, "exact/x": false, "exact/+": false, "$share/g/exact/#": true, "dev-alice/x": true, "dev-alice/#": false} {
		if _, ok := r.CanSubscribe(filter); ok != want {
			t.Errorf("CanSubscribe(%q) = %v, want %v", filter, ok, want)
		}
	}
	if g, _ := r.CanPublish("users/alice/x"); g.Filter != "users/${username}/#" || g.String() != "users/alice/#" {
		t.Errorf("the grant is %q as written, %q as matched", g.Filter, g.String())
	}
	if _, err := CompileExpanded(nil, []Expanded{e("x", "a/#/b", false)}); !errors.Is(err, ErrMalformedRule) || !strings.Contains(err.Error(), "mqtt_acl:alice") {
		t.Errorf("a malformed expanded pattern: %v", err)
	}
	if CheckFilter("dev-%u/x") != nil || CheckPattern("dev-%u/x") == nil {
		t.Error("CheckFilter reads %u as text, CheckPattern as a placeholder")
	}
}
