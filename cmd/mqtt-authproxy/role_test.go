package main

import (
	"context"
	"encoding/json"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
)

// cliRedis starts a real redis-server and returns the CLI's environment
// for it and a client to look at what the CLI wrote.
func cliRedis(t *testing.T) (map[string]string, *redis.Client) {
	t.Helper()
	rs := testenv.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return map[string]string{"AUTHPROXY_REDIS_URL": testenv.RedisURL(rs)}, rdb
}

// hash is a Redis hash as it is stored.
func hash(t *testing.T, rdb *redis.Client, key string) map[string]string {
	t.Helper()
	h, err := rdb.HGetAll(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// subscribed subscribes to channel and returns a function that awaits the
// next message on it.
func subscribed(t *testing.T, rdb *redis.Client, channel string) func() string {
	t.Helper()
	ps := rdb.Subscribe(context.Background(), channel)
	t.Cleanup(func() { ps.Close() })
	if _, err := ps.Receive(context.Background()); err != nil { // the subscription is confirmed
		t.Fatal(err)
	}
	return func() string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m, err := ps.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("no message on %s: %v", channel, err)
		}
		return m.Payload
	}
}

// showLine is the value of one "key: value" line of show's text output.
func showLine(t *testing.T, out, key string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + key + `:\s+(.*)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %s line in:\n%s", key, out)
	}
	return m[1]
}

// TestUserTopicRules: user set --publish/--subscribe/--roles store the
// fields as the proxy reads them (repeatable; filters split at white
// space only, roles at commas too), show prints them (text and JSON), an
// empty value removes one, and a malformed filter exits 2 naming the flag
// and the filter, with nothing written.
func TestUserTopicRules(t *testing.T) {
	env, rdb := cliRedis(t)
	changes := subscribed(t, rdb, "mqtt:changes")
	r := runBin(t, env, "pw\n", "user", "set", "sensor-1", "--publish", "devices/%u/#", "--publish", "up/a,b",
		"--subscribe", "devices/%u/# cmd/+/%c", "--roles", "fleet,ops", "--roles", "extra", "--json")
	if r.code != 0 || strings.TrimSpace(r.stdout) != `{"action":"created","user":"sensor-1"}` {
		t.Fatalf("user set: %+v", r)
	}
	if got := changes(); got != "sensor-1" {
		t.Errorf("change published for %q", got)
	}
	stored := hash(t, rdb, "mqtt:user:sensor-1")
	want := map[string]string{"publish": "devices/%u/# up/a,b", "subscribe": "devices/%u/# cmd/+/%c", "roles": "fleet ops extra"}
	for k, v := range want {
		if stored[k] != v {
			t.Errorf("stored %s = %q, want %q", k, stored[k], v)
		}
	}
	if !strings.HasPrefix(stored["password"], "$argon2id$") {
		t.Errorf("password not stored: %q", stored["password"])
	}

	r = runBin(t, env, "", "user", "show", "sensor-1", "--json")
	var u operator.User
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &u) != nil {
		t.Fatalf("show --json: %+v", r)
	}
	if !slices.Equal(u.Publish, []string{"devices/%u/#", "up/a,b"}) || !slices.Equal(u.Subscribe, []string{"devices/%u/#", "cmd/+/%c"}) ||
		!slices.Equal(u.Roles, []string{"fleet", "ops", "extra"}) || len(u.Extra) != 0 {
		t.Errorf("show --json: %+v", u)
	}
	r = runBin(t, env, "", "user", "show", "sensor-1")
	if r.code != 0 {
		t.Fatalf("show: %+v", r)
	}
	for k, v := range want {
		if got := showLine(t, r.stdout, k); got != v {
			t.Errorf("show %s: %q, want %q", k, got, v)
		}
	}

	// An empty value removes the field; the others stay.
	r = runBin(t, env, "", "user", "set", "sensor-1", "--publish", "", "--roles", "")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "user sensor-1 updated" {
		t.Fatalf("removal: %+v", r)
	}
	stored = hash(t, rdb, "mqtt:user:sensor-1")
	if _, ok := stored["publish"]; ok {
		t.Errorf("publish still stored: %q", stored["publish"])
	}
	if _, ok := stored["roles"]; ok {
		t.Errorf("roles still stored: %q", stored["roles"])
	}
	if stored["subscribe"] != want["subscribe"] {
		t.Errorf("subscribe changed to %q", stored["subscribe"])
	}
	r = runBin(t, env, "", "user", "show", "sensor-1")
	if showLine(t, r.stdout, "publish") != "none" || showLine(t, r.stdout, "roles") != "none" {
		t.Errorf("show after removal:\n%s", r.stdout)
	}
	r = runBin(t, env, "", "user", "show", "sensor-1", "--json")
	if strings.Contains(r.stdout, `"publish"`) || strings.Contains(r.stdout, `"roles"`) || !strings.Contains(r.stdout, `"subscribe"`) {
		t.Errorf("show --json after removal: %s", r.stdout)
	}

	// Malformed filters: exit 2 naming the flag and the filter, before a
	// password is read or anything is written, for an existing user and a
	// new one.
	before := hash(t, rdb, "mqtt:user:sensor-1")
	for _, c := range []struct {
		args         []string
		flag, filter string
	}{
		{[]string{"--publish", "a/#/b"}, "--publish", "a/#/b"},
		{[]string{"--subscribe", "dev-%u/x"}, "--subscribe", "dev-%u/x"},
		{[]string{"--publish", "ok/#", "--publish", "ok/+ a+/b"}, "--publish", "a+/b"},
		{[]string{"--publish", "fine/#", "--subscribe", "x/%c-1"}, "--subscribe", "x/%c-1"},
	} {
		for _, name := range []string{"sensor-1", "fresh"} {
			r := runBin(t, env, "pw\n", append([]string{"user", "set", name, "--roles", "fleet"}, c.args...)...)
			if r.code != 2 || !strings.Contains(r.stderr, "user set: "+c.flag+": ") || !strings.Contains(r.stderr, `"`+c.filter+`"`) || r.stdout != "" {
				t.Errorf("%s %v: %+v, want exit 2 naming %s and %q", name, c.args, r, c.flag, c.filter)
			}
		}
	}
	if after := hash(t, rdb, "mqtt:user:sensor-1"); !maps.Equal(before, after) {
		t.Errorf("a refused user set wrote: %v, was %v", after, before)
	}
	if n := rdb.Exists(context.Background(), "mqtt:user:fresh").Val(); n != 0 {
		t.Errorf("a refused user set created the user")
	}
}

// TestRoleCommands: role set/show/list/delete against a real Redis, with
// the stored hashes, the change notifications, the exit codes and the
// messages.
func TestRoleCommands(t *testing.T) {
	env, rdb := cliRedis(t)
	roleChanges := subscribed(t, rdb, "mqtt:role-changes")
	ctx := context.Background()

	if r := runBin(t, env, "", "role", "list", "--json"); r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("list of none: %+v", r)
	}
	if r := runBin(t, env, "", "role", "show", "fleet"); r.code != 1 || !strings.Contains(r.stderr, `no such role: "fleet"`) {
		t.Fatalf("show of a missing role: %+v", r)
	}

	r := runBin(t, env, "", "role", "set", "fleet", "--publish", "devices/%u/#", "--subscribe", "fleet/cmd/#", "--json")
	if r.code != 0 || strings.TrimSpace(r.stdout) != `{"action":"created","role":"fleet"}` {
		t.Fatalf("role set: %+v", r)
	}
	if got := roleChanges(); got != "fleet" {
		t.Errorf("role change published for %q, want fleet", got)
	}
	if h := hash(t, rdb, "mqtt:role:fleet"); !maps.Equal(h, map[string]string{"publish": "devices/%u/#", "subscribe": "fleet/cmd/#"}) {
		t.Fatalf("stored role: %v", h)
	}
	// A flag not given is left as it is; repeated values add up.
	r = runBin(t, env, "", "role", "set", "--subscribe", "fleet/cmd/#", "fleet", "--subscribe", "fleet/ota/+ fleet/a,b")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "role fleet updated" {
		t.Fatalf("role set again: %+v", r)
	}
	published := func(want string) {
		t.Helper()
		if got := roleChanges(); got != want {
			t.Errorf("role change published for %q, want %q", got, want)
		}
	}
	published("fleet")
	if h := hash(t, rdb, "mqtt:role:fleet"); !maps.Equal(h, map[string]string{"publish": "devices/%u/#", "subscribe": "fleet/cmd/# fleet/ota/+ fleet/a,b"}) {
		t.Fatalf("stored role after update: %v", h)
	}
	rdb.HSet(ctx, "mqtt:role:fleet", "note", "managed by ops")

	r = runBin(t, env, "", "role", "show", "fleet", "--json")
	var role operator.Role
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &role) != nil {
		t.Fatalf("show --json: %+v", r)
	}
	if role.Name != "fleet" || !slices.Equal(role.Publish, []string{"devices/%u/#"}) ||
		!slices.Equal(role.Subscribe, []string{"fleet/cmd/#", "fleet/ota/+", "fleet/a,b"}) || !slices.Equal(role.Extra, []string{"note"}) {
		t.Errorf("show --json: %+v", role)
	}
	r = runBin(t, env, "", "role", "show", "fleet")
	if r.code != 0 || showLine(t, r.stdout, "role") != "fleet" || showLine(t, r.stdout, "publish") != "devices/%u/#" ||
		showLine(t, r.stdout, "subscribe") != "fleet/cmd/# fleet/ota/+ fleet/a,b" || showLine(t, r.stdout, "other") != "note" {
		t.Errorf("show: %+v", r)
	}

	if r := runBin(t, env, "", "role", "set", "default", "--subscribe", "broadcast/#"); r.code != 0 || strings.TrimSpace(r.stdout) != "role default created" {
		t.Fatalf("default role: %+v", r)
	}
	published("default")
	r = runBin(t, env, "", "role", "show", "default")
	if showLine(t, r.stdout, "role") != "default (applies to every user)" || showLine(t, r.stdout, "publish") != "none" {
		t.Errorf("show default: %+v", r)
	}
	if r := runBin(t, env, "", "role", "list", "--json"); r.code != 0 || strings.TrimSpace(r.stdout) != `["default","fleet"]` {
		t.Errorf("list --json: %+v", r)
	}
	if r := runBin(t, env, "", "role", "list"); r.code != 0 || r.stdout != "default\nfleet\n" {
		t.Errorf("list: %+v", r)
	}

	// An empty value removes the field; a role left without any is gone.
	if r := runBin(t, env, "", "role", "set", "fleet", "--publish", ""); r.code != 0 || strings.TrimSpace(r.stdout) != "role fleet updated" {
		t.Fatalf("removal: %+v", r)
	}
	published("fleet")
	if h := hash(t, rdb, "mqtt:role:fleet"); !maps.Equal(h, map[string]string{"subscribe": "fleet/cmd/# fleet/ota/+ fleet/a,b", "note": "managed by ops"}) {
		t.Fatalf("stored role after removal: %v", h)
	}
	r = runBin(t, env, "", "role", "set", "default", "--subscribe", "", "--json")
	if r.code != 0 || strings.TrimSpace(r.stdout) != `{"action":"deleted","role":"default"}` {
		t.Fatalf("emptying the default role: %+v", r)
	}
	published("default")
	if n := rdb.Exists(ctx, "mqtt:role:default").Val(); n != 0 {
		t.Fatal("the emptied role still exists")
	}
	if r := runBin(t, env, "", "role", "set", "ghost", "--publish", ""); r.code != 1 || !strings.Contains(r.stderr, `no such role: "ghost"`) {
		t.Errorf("emptying a missing role: %+v", r)
	}

	// Bad usage: exit 2, nothing written.
	before := hash(t, rdb, "mqtt:role:fleet")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"fleet", "--publish", "a/#/b"}, `role set: --publish: malformed rule: topic filter "a/#/b": # must be the last level`},
		{[]string{"fleet", "--subscribe", "ok/# dev-%u/x"}, `role set: --subscribe: malformed rule: topic filter "dev-%u/x"`},
		{[]string{"newrole", "--publish", "dev-%c/x"}, `role set: --publish: malformed rule: topic filter "dev-%c/x"`},
		{[]string{"fleet"}, "role set: nothing to set"},
		{[]string{"two words", "--publish", "x"}, `role set: role name "two words"`},
		{[]string{"a,b", "--publish", "x"}, `role set: role name "a,b"`},
		{[]string{"", "--publish", "x"}, `role set: role name ""`},
		{nil, "role set: want one NAME, got 0"},
	} {
		r := runBin(t, env, "", append([]string{"role", "set"}, c.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) || r.stdout != "" {
			t.Errorf("role set %q: %+v, want exit 2 and %q", c.args, r, c.want)
		}
	}
	if after := hash(t, rdb, "mqtt:role:fleet"); !maps.Equal(before, after) {
		t.Errorf("a refused role set wrote: %v, was %v", after, before)
	}
	if keys := rdb.Keys(ctx, "mqtt:role:*").Val(); !slices.Equal(keys, []string{"mqtt:role:fleet"}) {
		t.Errorf("roles after refused sets: %v", keys)
	}
	for _, args := range [][]string{{"show"}, {"delete"}, {"delete", "a", "b"}, {"list", "x"}} {
		if r := runBin(t, env, "", append([]string{"role"}, args...)...); r.code != 2 {
			t.Errorf("role %v: %+v, want exit 2", args, r)
		}
	}

	// Delete: the role is gone and the change published (the refused
	// commands above published nothing: this is the next message); a
	// second delete fails clearly.
	if r := runBin(t, env, "", "role", "delete", "fleet"); r.code != 0 || strings.TrimSpace(r.stdout) != "role fleet deleted" {
		t.Fatalf("delete: %+v", r)
	}
	published("fleet")
	if n := rdb.Exists(ctx, "mqtt:role:fleet").Val(); n != 0 {
		t.Fatal("the deleted role still exists")
	}
	r = runBin(t, env, "", "role", "delete", "fleet", "--json")
	if r.code != 1 || !strings.Contains(r.stderr, `no such role: "fleet"`) || r.stdout != "" {
		t.Errorf("delete of a missing role: %+v", r)
	}
	if r := runBin(t, env, "", "role", "list"); r.code != 0 || r.stdout != "" {
		t.Errorf("list after delete: %+v", r)
	}
}

// TestRoleHelp: every role command, and user set, answers --help with
// exit 0 and its own usage line (not the group's), naming its flags.
func TestRoleHelp(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"role", "--help"}, []string{"set", "show", "delete", "list"}},
		{[]string{"role", "set", "--help"}, []string{"mqtt-authproxy role set NAME [flags]", "--publish", "--subscribe", "--json"}},
		{[]string{"role", "show", "--help"}, []string{"mqtt-authproxy role show NAME [flags]", "--json"}},
		{[]string{"role", "delete", "--help"}, []string{"mqtt-authproxy role delete NAME [flags]"}},
		{[]string{"role", "list", "--help"}, []string{"mqtt-authproxy role list [flags]", "--json"}},
		{[]string{"user", "set", "--help"}, []string{"mqtt-authproxy user set NAME [flags]", "--publish", "--subscribe", "--roles"}},
	} {
		r := runBin(t, nil, "", c.args...)
		if r.code != 0 || !strings.Contains(r.stderr, "Usage:") {
			t.Errorf("%v: exit %d, stderr %q", c.args, r.code, r.stderr)
		}
		for _, w := range c.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%v does not mention %s", c.args, w)
			}
		}
	}
}
