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
		{"$share/g/jobs/#", false}, // judged by its filter jobs/#, not granted
	} {
		if _, ok := r.CanSubscribe(c.filter); ok != c.want {
			t.Errorf("CanSubscribe(%q) = %v, want %v", c.filter, ok, c.want)
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
