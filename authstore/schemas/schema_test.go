package schemas

import (
	"slices"
	"testing"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// TestSchemaChangesMapping: which change each written key means.
func TestSchemaChangesMapping(t *testing.T) {
	g, err := NewGoAuth(GoAuthOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string][]policy.Change{
		"alice":        {{Username: "alice"}},
		"alice:su":     {{Username: "alice"}, {Username: "alice:su"}},
		"alice:rwacls": {{Username: "alice"}, {Username: "alice:rwacls"}},
		"a:b:sacls":    {{Username: "a:b"}, {Username: "a:b:sacls"}},
		"common:wacls": {EverySession},
		"common:su":    {{Username: "common"}, {Username: "common:su"}},
	} {
		if got := g.Changes(key); !slices.Equal(got, want) {
			t.Errorf("mosquitto-go-auth %s: %+v, want %+v", key, got, want)
		}
	}
	e, err := NewEMQX(EMQXOptions{AuthnCmd: "HMGET users:${username}:auth password_hash", AuthzCmd: "HGETALL acl:${clientid}",
		PasswordHash: "sha256", SaltPosition: "prefix"})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string][]policy.Change{
		"users:alice:auth": {{Username: "alice"}},
		"users:alice":      nil,
		"users::auth":      nil,
		"acl:dev-1":        {EverySession},
		"other":            nil,
	} {
		if got := e.Changes(key); !slices.Equal(got, want) {
			t.Errorf("emqx %s: %+v, want %+v", key, got, want)
		}
	}
	if got := Distinct([]WatchedKey{{"a:", true}, {"a:b", false}, {"a:", true}, {"b", false}, {"b", false}, {"", false}}); !slices.Equal(got,
		[]WatchedKey{{"a:", true}, {"b", false}, {"", false}}) {
		t.Errorf("Distinct: %+v", got)
	}
}

// TestSplitArgs: commands split as redis-cli splits them.
func TestSplitArgs(t *testing.T) {
	for in, want := range map[string][]string{
		"HMGET  k f1\tf2 ":              {"HMGET", "k", "f1", "f2"},
		`HGET "a b" 'c d'`:              {"HGET", "a b", "c d"},
		`x "q\"\n\x41" 'it\'s'`:         {"x", "q\"\nA", "it's"},
		"":                              nil,
		`HMGET "mqtt_user:${username}"`: {"HMGET", "mqtt_user:${username}"},
	} {
		got, err := splitArgs(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("splitArgs(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{`"open`, `'open`, `"a"b`} {
		if _, err := splitArgs(bad); err == nil {
			t.Errorf("splitArgs(%q) accepted", bad)
		}
	}
}
